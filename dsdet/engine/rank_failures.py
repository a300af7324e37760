"""Name the rank that died: when a collective fails because a peer crashed or was killed, say which one.

The launcher stops the job when a rank exits non-zero, but the survivors only see a broken connection. Every
rank records each rank's host and pid up front; a survivor whose collective fails looks for the dead ones on its
own host and reports them on one line instead of a communication traceback.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import psutil

from dsdet.engine.distributed import DistEnv, all_gather_object
from dsdet.errors import DsdetError

_DEATH_GRACE_S = 3.0  # a rank's sockets can close a moment before its process is gone


@dataclass(frozen=True)
class RankProcess:
    """Where one rank runs."""

    rank: int
    host: str
    pid: int


def rank_processes() -> list[RankProcess]:
    """Every rank's host and pid (a collective: call on all ranks)."""
    gathered = all_gather_object((socket.gethostname(), os.getpid()))
    return [RankProcess(rank, host, pid) for rank, (host, pid) in enumerate(gathered)]


def _is_dead(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def dead_ranks(processes: list[RankProcess], grace_s: float = _DEATH_GRACE_S) -> list[RankProcess]:
    """The ranks on this host whose process has exited, waiting up to `grace_s` for one to show up."""
    host = socket.gethostname()
    local = [p for p in processes if p.host == host and p.pid != os.getpid()]
    deadline = time.monotonic() + grace_s
    while True:
        dead = [p for p in local if _is_dead(p.pid)]
        if dead or time.monotonic() >= deadline:
            return dead
        time.sleep(0.1)


@contextlib.contextmanager
def name_lost_ranks(env: DistEnv) -> Iterator[None]:
    """Turn a communication error caused by a dead peer into one DsdetError naming that rank."""
    if env.world_size == 1:
        yield
        return
    processes = rank_processes()
    try:
        yield
    except RuntimeError as exc:  # gloo and NCCL failures are RuntimeErrors (DistBackendError among them)
        dead = dead_ranks(processes)
        if not dead:
            raise
        # Finish reporting: the launcher is about to terminate this rank as well.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        names = ", ".join(f"rank {p.rank} (pid {p.pid} on {p.host})" for p in dead)
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DsdetError(
            f"{names} died during training (killed or crashed: see its own output); "
            f"this rank stops too. Communication error: {first_line[:200]}"
        ) from None
