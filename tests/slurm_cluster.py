"""A real one-node Slurm cluster of the test's own: munged, slurmctld and slurmd on free ports in a temp dir."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.runners import free_port

DAEMONS = ("/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd")


def _slurm_conf(root: Path, host: str, cpus: int) -> str:
    ctld, slurmd = free_port(), free_port()
    return f"""ClusterName=dsdettest
SlurmctldHost={host}
SlurmctldPort={ctld}
SlurmdPort={slurmd}
AuthType=auth/munge
AuthInfo=socket={root}/munge.socket
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SlurmUser=root
SlurmdUser=root
MpiDefault=none
NodeName={host} CPUs={cpus} State=UNKNOWN
PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
"""


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """Environment variables under which `srun` reaches the test's own cluster."""
    missing = [d for d in DAEMONS if not Path(d).exists()]
    assert not missing, f"{missing} missing: run scripts/install-system-deps.sh"
    root = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool"):
        (root / sub).mkdir()
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    conf = root / "slurm.conf"
    conf.write_text(_slurm_conf(root, socket.gethostname(), os.cpu_count() or 2))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    started = [
        subprocess.Popen(
            [
                "/usr/sbin/munged",
                "-F",
                "--force",
                f"--socket={root}/munge.socket",
                f"--key-file={key}",
                f"--pid-file={root}/munged.pid",
                f"--log-file={root}/munged.log",
                f"--seed-file={root}/munged.seed",
            ],
            start_new_session=True,
        )
    ]
    try:
        for daemon in ("/usr/sbin/slurmctld", "/usr/sbin/slurmd"):
            started.append(subprocess.Popen([daemon, "-D", "-f", str(conf)], env=env, start_new_session=True))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True)
            if state.stdout.strip() == "idle":
                break
            time.sleep(0.5)
        else:
            logs = "\n".join(p.read_text()[-1500:] for p in root.glob("*.log"))
            raise AssertionError(f"the test's Slurm cluster did not come up:\n{logs}")
        yield {"SLURM_CONF": str(conf)}
    finally:
        for proc in reversed(started):
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in started:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(root / "state", ignore_errors=True)
