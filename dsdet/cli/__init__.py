"""The `dsdet` command: one sub-command module per job, each adding its parsers with `register`."""

from __future__ import annotations

import argparse
import importlib
import sys

from dsdet.cli.suggest import SuggestingParser
from dsdet.errors import DsdetError

# Each module defines `register(subparsers)`; its parsers set `func(args) -> int`.
COMMAND_MODULES = (
    "dsdet.cli.config_cmd",
    "dsdet.cli.data_cmd",
    "dsdet.cli.models_cmd",
    "dsdet.cli.train_cmd",
    "dsdet.cli.launch_cmd",
    "dsdet.cli.doctor_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the full `dsdet` argument parser."""
    parser = SuggestingParser(
        prog="dsdet",
        description="Train object detectors at scale with DeepSpeed.",
        epilog="New here? `dsdet doctor` checks this machine; docs/quickstart.md shows the first run.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run `dsdet`; user mistakes become one line on stderr and exit code 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except DsdetError as exc:
        print(f"dsdet: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
