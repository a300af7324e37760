"""Launch a multi-rank command and watch it from outside: each rank's peak RSS, and when its files appear."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
POLL_S = 0.25
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class RunRecord:
    """What one launch did, seen from outside (times in seconds after the launch)."""

    label: str
    command: list[str]
    returncode: int
    wall_s: float
    peak_rss_bytes: list[int]  # VmHWM of each rank process, rank processes in start order
    first_seen: dict[str, float] = field(default_factory=dict)
    log_path: str = ""
    # (seconds after launch, lines in the progress file, CPU seconds used so far by the whole process tree)
    samples: list[tuple[float, int, float]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the command's combined output."""
        text = Path(self.log_path).read_text(errors="replace") if self.log_path else ""
        return text[-chars:]


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def deepspeed_command(module: str, args: list[str], ranks: int) -> list[str]:
    """`deepspeed --num_gpus N --module MODULE ARGS` on a fresh port, as users launch dsdet."""
    port = str(free_port())
    return [
        str(BIN / "deepspeed"),
        "--num_gpus",
        str(ranks),
        "--master_port",
        port,
        "--module",
        module,
        *args,
    ]


def torchrun_command(module: str, args: list[str], ranks: int) -> list[str]:
    """`torchrun --nproc-per-node N -m MODULE ARGS` on a fresh port."""
    port = str(free_port())
    return [str(BIN / "torchrun"), "--nproc-per-node", str(ranks), "--master-port", port, "-m", module, *args]


def process_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds of the process and its reaped children) for every process in /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            ticks = sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime
            table[int(entry)] = (int(fields[1]), ticks / CLOCK_TICKS)
    return table


def descendants(root: int, table: dict[int, tuple[int, float]]) -> list[int]:
    """Every process below `root` in the process tree."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found, stack = [], [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def runs_module(pid: int, module: str) -> bool:
    """Whether `pid` is a Python interpreter started as `python [-u] -m MODULE`."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    head = argv[1:4]
    return "-m" in head and head.index("-m") + 1 < len(head) and head[head.index("-m") + 1] == module


def peak_rss(pid: int) -> int | None:
    """VmHWM (peak resident set size) of `pid` in bytes; None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def count_lines(path: Path) -> int:
    """Lines in `path` so far (0 when it does not exist yet)."""
    try:
        return path.read_bytes().count(b"\n")
    except OSError:
        return 0


def first_write_time(folder: Path, pattern: str) -> float | None:
    """Earliest mtime of the non-empty files matching `pattern` under `folder`."""
    times = [p.stat().st_mtime for p in folder.glob(pattern) if p.is_file() and p.stat().st_size > 0]
    return min(times) if times else None


def launch(
    label: str,
    command: list[str],
    *,
    module: str,
    out_dir: Path,
    watch: dict[str, str],
    env: dict[str, str],
    timeout_s: float,
    progress_file: str | None = None,
) -> RunRecord:
    """Run `command` to completion, sampling the ranks (processes running `module`, not their loader
    workers), the CPU time of the whole process tree against the lines of `progress_file`, and noting when
    each `watch` glob under `out_dir` first matches a non-empty file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir.parent / f"{out_dir.name}.log"
    peaks: dict[int, int] = {}
    first_seen: dict[str, float] = {}
    samples: list[tuple[float, int, float]] = []
    start = time.time()
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            command,
            cwd=REPO,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        while proc.poll() is None:
            if time.time() - start > timeout_s:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                break
            table = process_table()
            tree = [proc.pid, *descendants(proc.pid, table)]
            for pid in tree[1:]:
                if runs_module(pid, module) and not runs_module(table[pid][0], module):
                    rss = peak_rss(pid)
                    if rss is not None:
                        peaks[pid] = max(peaks.get(pid, 0), rss)
            if progress_file is not None:
                lines = count_lines(out_dir / progress_file)
                samples.append(
                    (time.time() - start, lines, sum(table[pid][1] for pid in tree if pid in table))
                )
            for name, pattern in watch.items():
                if name not in first_seen and (written := first_write_time(out_dir, pattern)) is not None:
                    first_seen[name] = written - start
            time.sleep(POLL_S)
    for name, pattern in watch.items():  # files written in the last poll interval
        if name not in first_seen and (written := first_write_time(out_dir, pattern)) is not None:
            first_seen[name] = written - start
    return RunRecord(
        label,
        command,
        proc.returncode,
        time.time() - start,
        [peaks[pid] for pid in sorted(peaks)],
        first_seen,
        str(log_path),
        samples,
    )
