"""`dsdet launch --hostfile H [...] -- train EXPERIMENT.yaml [KEY=VALUE ...]`: validate, check ssh, exec deepspeed."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from dsdet.errors import DsdetError

JOBS = {"train": "dsdet.train"}


def _job(words: list[str]) -> tuple[str, list[str]]:
    """The module to run on every rank and its arguments, from the words after `--`."""
    from dsdet.train import split_args

    words = words[1:] if words[:1] == ["--"] else words
    if not words or words[0] not in JOBS:
        given = repr(words[0]) if words else "nothing"
        raise DsdetError(
            f"expected '-- train [EXPERIMENT.yaml] [KEY=VALUE ...]' after the options, got {given}"
        )
    experiment, _ = split_args(words[1:])
    if experiment is not None and not experiment.startswith("-") and not Path(experiment).is_file():
        raise DsdetError(f"experiment file {experiment} does not exist")
    return JOBS[words[0]], words[1:]


def _launch(args: argparse.Namespace) -> int:
    from dsdet.launcher import DEEPSPEED_ENV_FILE, LaunchOptions, prepare_launch

    module, module_args = _job(args.job)
    options = LaunchOptions(
        hostfile=Path(args.hostfile),
        include=args.include,
        exclude=args.exclude,
        launcher=args.launcher,
        ssh_port=args.ssh_port,
        ssh_args=args.ssh_args,
        master_addr=args.master_addr,
        master_port=args.master_port,
        launcher_args=args.launcher_args,
    )
    prepared = prepare_launch(
        options, module, module_args, env_names=args.env, check_reachable=not args.no_ssh_check
    )
    hosts = ", ".join(f"{host} ({len(ids)} slots)" for host, ids in prepared.slots.items())
    print(f"hosts: {hosts}; master {prepared.master}")
    kept = f" (kept yours: {', '.join(prepared.kept_env)})" if prepared.kept_env else ""
    print(f"wrote {prepared.env_file}{kept}")
    home_env = Path.home() / DEEPSPEED_ENV_FILE
    if home_env.is_file() and home_env.resolve() != prepared.env_file.resolve():
        print(f"note: DeepSpeed also applies {home_env} (before {DEEPSPEED_ENV_FILE})")
    print(prepared.plan.shell_line(), flush=True)
    if args.dry_run:
        return 0
    sys.stderr.flush()
    try:
        os.execvpe(prepared.plan.argv[0], prepared.plan.argv, {**os.environ, **prepared.plan.env})
    except OSError as exc:
        raise DsdetError(f"cannot run {prepared.plan.argv[0]}: {exc.strerror}") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `dsdet launch`."""
    from dsdet.launcher import LAUNCHERS

    parser = subparsers.add_parser(
        "launch",
        help="train on the hosts of a DeepSpeed hostfile (checks ssh, writes .deepspeed_env, runs deepspeed)",
        description="Validate a hostfile, check every host over ssh, write .deepspeed_env, print the exact "
        "deepspeed command and run it.",
        epilog="example: dsdet launch --hostfile hostfile -- train experiment.yaml train.epochs=3",
    )
    parser.add_argument("--hostfile", required=True, help="DeepSpeed hostfile: one 'HOST slots=N' per line")
    parser.add_argument(
        "--include", default="", metavar="SPEC", help="hosts/slots to use, e.g. 'node1@node2:0,2'"
    )
    parser.add_argument(
        "--exclude", default="", metavar="SPEC", help="hosts/slots to leave out, e.g. 'node2:1'"
    )
    parser.add_argument("--launcher", default="pdsh", choices=LAUNCHERS, help="DeepSpeed multi-node backend")
    parser.add_argument("--launcher-args", default="", metavar="ARGS", help="passed to the backend (quoted)")
    parser.add_argument("--ssh-port", type=int, metavar="PORT", help="ssh port of every host")
    parser.add_argument(
        "--ssh-args",
        metavar="ARGS",
        help="extra ssh options, e.g. '-i ~/.ssh/cluster' (default: $PDSH_SSH_ARGS_APPEND, or "
        "$OMPI_MCA_plm_rsh_args for openmpi)",
    )
    parser.add_argument("--master-addr", metavar="ADDR", help="address of rank 0 (default: the first host)")
    parser.add_argument(
        "--master-port", type=int, metavar="PORT", help="rendezvous port (default: a free one)"
    )
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME", help="also export this variable to every rank"
    )
    parser.add_argument("--no-ssh-check", action="store_true", help="skip the ssh reachability check")
    parser.add_argument("--dry-run", action="store_true", help="do everything but run the printed command")
    parser.add_argument("job", nargs=argparse.REMAINDER, help="-- train [EXPERIMENT.yaml] [KEY=VALUE ...]")
    parser.set_defaults(func=_launch)
