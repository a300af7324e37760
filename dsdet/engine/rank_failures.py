"""Name the rank that died: when a collective fails because a peer crashed or was killed, say which one.

The launcher stops the job when a rank exits non-zero, but the survivors only see a broken connection. Every
rank records each rank's host and pid up front; a survivor whose collective fails looks for the dead ones on its
own host and reports them on one line instead of a communication traceback. A rank waiting in DeepSpeed's
shared-memory kernel never sees a broken connection: a watchdog thread reports for it and ends it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import psutil

from dsdet.comm import all_gather_object
from dsdet.engine.cpu.collectives import in_kernel
from dsdet.engine.distributed import DistEnv
from dsdet.errors import DsdetError, error_line

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


def lost_ranks_message(dead: list[RankProcess], how: str) -> str:
    """One line naming the dead ranks; `how` says what this rank was doing when it noticed."""
    names = ", ".join(f"rank {p.rank} (pid {p.pid} on {p.host})" for p in dead)
    return f"{names} died during training (killed or crashed: see its own output); this rank stops too. {how}"


class KernelWatchdog:
    """Ends this rank, naming the dead peers, when it waits in a shared-memory collective for a rank that died.

    DeepSpeed's shared-memory kernel spins until every rank has written its part, so unlike gloo it never
    notices a dead peer, and the launcher's SIGTERM cannot interrupt it (Python runs signal handlers between
    bytecodes). The kernel releases the GIL, so this thread still runs and checks every `interval_s`."""

    def __init__(self, processes: list[RankProcess], interval_s: float = 0.5) -> None:
        self._processes = processes
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="dsdet-kernel-watchdog", daemon=True)

    def __enter__(self) -> KernelWatchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(self._interval_s):
            if in_kernel():
                dead = dead_ranks(self._processes, grace_s=0)
                if dead and in_kernel():
                    how = "It was waiting for them in a shared-memory collective."
                    print(error_line(lost_ranks_message(dead, how)), file=sys.stderr, flush=True)
                    for child in psutil.Process().children(recursive=True):  # data-loader workers
                        with contextlib.suppress(psutil.Error):
                            child.kill()
                    os._exit(2)  # the main thread cannot leave the kernel: nothing else would end this rank


@contextlib.contextmanager
def name_lost_ranks(env: DistEnv) -> Iterator[None]:
    """Turn a communication error caused by a dead peer into one DsdetError naming that rank; a rank stuck in a
    shared-memory collective with a dead peer prints the same line and exits."""
    if env.world_size == 1:
        yield
        return
    processes = rank_processes()
    try:
        with KernelWatchdog(processes):
            yield
    except RuntimeError as exc:  # gloo and NCCL failures are RuntimeErrors (DistBackendError among them)
        dead = dead_ranks(processes)
        if not dead:
            raise
        # Finish reporting: the launcher is about to terminate this rank as well.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DsdetError(lost_ranks_message(dead, f"Communication error: {first_line[:200]}")) from None
