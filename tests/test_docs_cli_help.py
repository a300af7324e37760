"""`dsdet --help` and every sub-command's help describe every option, and a misspelt command is answered
with the right one."""

from __future__ import annotations

import argparse

import pytest

from dsdet.cli import build_parser
from tests.runners import dsdet


def _parsers(parser: argparse.ArgumentParser, name: str = "dsdet"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helped = {choice.dest for choice in action._choices_actions if choice.help}
            assert helped == set(action.choices), (
                f"{name}: sub-commands without help: {set(action.choices) - helped}"
            )
            for child_name, child in action.choices.items():
                yield from _parsers(child, f"{name} {child_name}")


def test_every_option_and_command_has_help():
    undescribed = [
        f"{name}: {action.option_strings or action.dest}"
        for name, parser in _parsers(build_parser())
        for action in parser._actions
        if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))
        and action.help != argparse.SUPPRESS
        and not (action.help or "").strip()
    ]
    assert not undescribed


@pytest.mark.parametrize(
    ("typed", "meant"), [(["trian"], "train"), (["config", "genrate"], "generate"), (["doctr"], "doctor")]
)
def test_misspelt_command_suggests_the_right_one(typed, meant):
    proc = dsdet(*typed, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].endswith(f"did you mean '{meant}'?")
