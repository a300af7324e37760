"""Training entry point for every launcher.

    python -m dsdet.train [EXPERIMENT.yaml] [dotted.key=value ...]
    deepspeed --num_gpus 2 --module dsdet.train EXPERIMENT.yaml train.epochs=3
    torchrun --nproc-per-node 2 -m dsdet.train EXPERIMENT.yaml
    mpirun -np 2 python -m dsdet.train EXPERIMENT.yaml

With no experiment file it trains the default experiment on the embedded default dataset.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dsdet.errors import DsdetError, error_line


def build_parser(prog: str = "python -m dsdet.train") -> argparse.ArgumentParser:
    """Arguments of the training entry point (shared with `dsdet train`)."""
    parser = argparse.ArgumentParser(prog=prog, description="Train a detector with DeepSpeed.")
    add_train_arguments(parser)
    return parser


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the experiment file, dotted overrides and the launcher-injected options to `parser`."""
    parser.add_argument(
        "args",
        nargs="*",
        metavar="[EXPERIMENT.yaml] [KEY=VALUE ...]",
        help="experiment file (default: the built-in default experiment), then dotted overrides "
        "such as train.epochs=3 deepspeed.zero_optimization.stage=3",
    )
    parser.add_argument(
        "--deepspeed_config",
        "--deepspeed-config",
        metavar="JSON",
        help="a DeepSpeed JSON config laid over the experiment's deepspeed section ('auto' values allowed)",
    )
    parser.add_argument(
        "--local_rank", "--local-rank", type=int, help=argparse.SUPPRESS
    )  # set by the deepspeed launcher
    parser.add_argument(
        "--deepspeed", action="store_true", help=argparse.SUPPRESS
    )  # accepted for scripts written for DeepSpeed


def split_args(args: list[str]) -> tuple[str | None, list[str]]:
    """Separate the optional experiment file from the KEY=VALUE overrides."""
    if args and "=" not in args[0]:
        return args[0], args[1:]
    return None, list(args)


def run(namespace: argparse.Namespace) -> int:
    """Load the experiment and train; returns the exit code."""
    from dsdet.config import load_deepspeed_config, load_experiment
    from dsdet.engine.run import train

    experiment, overrides = split_args(namespace.args)
    if namespace.deepspeed_config:
        ds = load_deepspeed_config(namespace.deepspeed_config).to_deepspeed_dict(allow_auto=True)
        overrides = [f"deepspeed={json.dumps(ds)}", *overrides]
    exp = load_experiment(experiment, overrides)
    summary = train(exp)
    if "checkpoint" in summary:  # rank 0
        print("\nTraining finished.")
        for key in ("checkpoint", "exported_model", "tensorboard", "metrics_file"):
            if summary.get(key) and Path(summary[key]).exists():
                print(f"  {key:15s} {summary[key]}")
        if summary.get("metrics"):
            from dsdet.eval import format_metrics

            print(f"  {'final metrics':15s} {format_metrics(summary['metrics'])}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: user mistakes become one line naming the rank, exit code 2."""
    namespace = build_parser().parse_args(argv)
    try:
        return run(namespace)
    except DsdetError as exc:
        print(error_line(exc), file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
