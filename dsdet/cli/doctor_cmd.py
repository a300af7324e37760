"""`dsdet doctor [EXPERIMENT.yaml] [KEY=VALUE ...] [--json]`: check what a training run will meet here."""

from __future__ import annotations

import argparse


def _doctor(args: argparse.Namespace) -> int:
    from dsdet.config import load_experiment
    from dsdet.doctor import exit_code, render_json, render_text, run_checks
    from dsdet.train import split_args

    checks = run_checks(load_experiment(*split_args(args.args)))
    print(render_json(checks) if args.json else render_text(checks), end="" if not args.json else "\n")
    return exit_code(checks)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `dsdet doctor`."""
    parser = subparsers.add_parser(
        "doctor",
        help="check this machine for a run: versions, accelerator, DeepSpeed ops, launchers, disk, data",
        description="Report what a training run will meet on this machine, with advice for each problem: "
        "torch/torchvision/DeepSpeed versions, the accelerator and backend DeepSpeed picks, fp16/bf16 "
        "support, which DeepSpeed ops are prebuilt or will be JIT-built, pdsh/ssh/mpirun/sshd and mpi4py, "
        "free disk at train.output_dir and the dataset. Exits 1 when something a run needs is missing.",
    )
    parser.add_argument(
        "args",
        nargs="*",
        metavar="[EXPERIMENT.yaml] [KEY=VALUE ...]",
        help="the experiment to check for (default: the built-in default experiment), then dotted overrides",
    )
    parser.add_argument("--json", action="store_true", help="print the checks as JSON instead of a report")
    parser.set_defaults(func=_doctor)
