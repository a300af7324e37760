"""Pick a TCP port for a rendezvous that nothing else on this machine will take before it listens."""

from __future__ import annotations

import random
import socket
from pathlib import Path

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LINUX_EPHEMERAL_START = 32768
LOWEST_CANDIDATE = 10000
ATTEMPTS = 64


def ephemeral_port_start() -> int:
    """First port the kernel hands out to outgoing connections (Linux's default when unreadable)."""
    try:
        return int(EPHEMERAL_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return LINUX_EPHEMERAL_START


def port_is_free(address: str, port: int) -> bool:
    """True when a listening socket could bind `address:port` right now."""
    family = socket.getaddrinfo(address, None)[0][0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((address, port))
        except OSError:
            return False
        return True


def free_port(address: str = "127.0.0.1") -> int:
    """A port free on `address`, below the ephemeral range.

    A port the kernel picked with bind(0) comes from the ephemeral range, where any outgoing
    connection started before the master listens may take it (EADDRINUSE at rendezvous). Ports below
    that range are only ever taken by an explicit bind.
    """
    chooser = random.SystemRandom()  # independent of the seeds training sets
    end = ephemeral_port_start()
    if end - LOWEST_CANDIDATE > ATTEMPTS:
        for port in chooser.sample(range(LOWEST_CANDIDATE, end), ATTEMPTS):
            if port_is_free(address, port):
                return port
    family = socket.getaddrinfo(address, None)[0][0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]
