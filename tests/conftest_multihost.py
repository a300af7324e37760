"""The `ssh_cluster` fixture: a private sshd on 127.0.0.2 and 127.0.0.3 (see tests/multihost.py)."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.multihost import HOSTS, SshCluster, free_port, kill_tree

SSHD = "/usr/sbin/sshd"


def _write_sshd_config(root: Path, port: int) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", root / "host_key"], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", root / "client_key"], check=True)
    (root / "authorized_keys").write_text((root / "client_key.pub").read_text())
    config = root / "sshd_config"
    config.write_text(
        f"Port {port}\n"
        + "".join(f"ListenAddress {host}\n" for host in HOSTS)
        + f"HostKey {root / 'host_key'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\n"
        f"PidFile {root / 'sshd.pid'}\n"
        "PermitRootLogin prohibit-password\n"
        "PubkeyAuthentication yes\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "StrictModes no\n"
        "UsePAM no\n"
        "MaxStartups 64\n"
    )
    return config


def _wait_listening(proc: subprocess.Popen, port: int, log: Path, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    waiting = list(HOSTS)
    while waiting:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"sshd did not start on {waiting} port {port}: {log.read_text()[-2000:]}")
        try:
            socket.create_connection((waiting[0], port), timeout=1).close()
            waiting.pop(0)
        except OSError:
            time.sleep(0.1)


@pytest.fixture(scope="session")
def ssh_cluster(tmp_path_factory) -> Iterator[SshCluster]:
    """A private sshd on 127.0.0.2 and 127.0.0.3 (one free port), torn down with everything it started."""
    root = tmp_path_factory.mktemp("sshd")
    port = free_port()
    config = _write_sshd_config(root, port)
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation directory
    log = root / "sshd.log"
    sshd = subprocess.Popen([SSHD, "-D", "-f", str(config), "-E", str(log)], start_new_session=True)
    try:
        _wait_listening(sshd, port, log)
        yield SshCluster(root=root, port=port, key=root / "client_key", sshd=sshd)
    finally:
        kill_tree(psutil.Process(sshd.pid).children(recursive=True))
        sshd.terminate()
        sshd.wait(timeout=10)
