"""Background training jobs for the reliability tests: launch, watch files, find rank pids, signal, clean up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from tests.runners import deepspeed_command


class Job:
    """`deepspeed --num_gpus N --module dsdet.train ARGS` in its own session, output in `log`."""

    def __init__(self, args: list[str], log: Path, ranks: int = 2):
        cmd = deepspeed_command(ranks, "--module", "dsdet.train", *args)
        self.log = log
        with log.open("w") as out:
            self.proc = subprocess.Popen(
                [str(c) for c in cmd], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.started = [psutil.Process(self.proc.pid)]

    def __enter__(self) -> Job:
        return self

    def __exit__(self, *exc) -> None:
        self.kill()

    def processes(self) -> list[psutil.Process]:
        """The runner and everything it started that is still alive."""
        try:
            runner = psutil.Process(self.proc.pid)
            return [runner, *runner.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def ranks(self) -> dict[int, psutil.Process]:
        """The rank processes (the node launcher's children; their loader workers share the environment)."""
        found = {}
        for process in self.node_launcher().children():
            try:
                found[int(process.environ()["RANK"])] = process
            except (psutil.Error, KeyError):
                continue
        return found

    def node_launcher(self) -> psutil.Process:
        """DeepSpeed's per-node launcher (`deepspeed.launcher.launch`), which forwards signals to the ranks."""
        for process in self.processes():
            if "deepspeed.launcher.launch" in process.cmdline():
                return process
        raise AssertionError(f"no deepspeed.launcher.launch process\n{self.output()}")

    def wait_until(self, condition: Callable[[], bool], what: str, timeout: float = 300) -> None:
        """Poll `condition` until it holds; fail with the job's output if the job ends or time runs out."""
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"job never got to: {what} (exit {self.proc.poll()})\n{self.output()}")
            time.sleep(0.05)

    def wait(self, timeout: float = 600) -> int:
        """Wait for the runner to exit; return its exit code."""
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL the whole session (runner, launcher, ranks, loader workers)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def logged_steps(output_dir: Path) -> list[int]:
    """Optimizer steps in train_log.jsonl, in the order written (a resumed run repeats the replayed ones)."""
    path = Path(output_dir) / "train_log.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line)["step"] for line in path.read_text().splitlines() if line.strip()]


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those of `processes` still running (zombies count as gone)."""

    def running(process: psutil.Process) -> bool:
        try:
            return process.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    return [p for p in processes if running(p)]
