"""Run dsdet the way users do: real subprocesses under the deepspeed launcher or plain python."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from dsdet.ports import free_port

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]


def run(
    cmd: list[str],
    *,
    cwd: Path | None = None,
    env: dict | None = None,
    timeout: float = 600,
    check: bool = True,
):
    """Run `cmd`, capturing output; on an unexpected exit code show its tail."""
    proc = subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, cmd))} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


def deepspeed_command(ranks: int, *target) -> list:
    """`deepspeed --num_gpus N --master_port <a free port> TARGET...` (one node, CPU ranks)."""
    return [BIN / "deepspeed", "--num_gpus", str(ranks), "--master_port", str(free_port()), *target]


def torchrun_command(ranks: int, *target) -> list:
    """`torchrun --nproc-per-node N --master-port <a free port> TARGET...` (one node, CPU ranks)."""
    return [BIN / "torchrun", "--nproc-per-node", str(ranks), "--master-port", str(free_port()), *target]


def deepspeed_train(
    args: list[str], *, ranks: int = 2, cwd: Path | None = None, check: bool = True, timeout: float = 600
):
    """`deepspeed --num_gpus N --module dsdet.train ARGS` on a fresh master port."""
    cmd = deepspeed_command(ranks, "--module", "dsdet.train", *args)
    return run(cmd, cwd=cwd, check=check, timeout=timeout)


def dsdet(*args: str, check: bool = True, timeout: float = 600, cwd: Path | None = None):
    """`python -m dsdet ARGS`."""
    return run([sys.executable, "-m", "dsdet", *args], check=check, timeout=timeout, cwd=cwd)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
