"""An ArgumentParser that answers a misspelt sub-command with the closest one (`dsdet trian` -> train)."""

from __future__ import annotations

import argparse
import re
from typing import NoReturn

from dsdet.config.problems import did_you_mean

_INVALID_CHOICE = re.compile(r"invalid choice: '([^']*)'")


class SuggestingParser(argparse.ArgumentParser):
    """Its sub-parsers are of the same class, so every level of `dsdet` suggests its own commands."""

    def add_subparsers(self, **kwargs):
        self._commands = super().add_subparsers(**kwargs)
        return self._commands

    def error(self, message: str) -> NoReturn:
        """argparse's one-line usage error, with "did you mean" when a sub-command is misspelt."""
        match = _INVALID_CHOICE.search(message)
        commands = getattr(self, "_commands", None)
        if match and commands is not None and match.group(1) not in commands.choices:
            message += did_you_mean(match.group(1), list(commands.choices))
        super().error(message)
