"""Real multi-host jobs on one machine: a private sshd answering on 127.0.0.2 and 127.0.0.3.

The `ssh_cluster` fixture lives in tests/conftest_multihost.py; a test module enables it with
`pytest_plugins = ["tests.conftest_multihost"]`:

    def test_two_hosts(ssh_cluster, tmp_path):
        job = ssh_cluster.dsdet_launch(["train", "experiment.yaml", "train.max_steps=2"], cwd=tmp_path)
        assert job.returncode == 0, job.tail()

The sshd, its keys and its log live in a temp dir; it and every process started through it are killed
when the fixture ends, and every job's processes (its own process group plus whatever our sshd started)
are killed when the job ends.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from dsdet import ports

BIN = Path(sys.executable).parent
HOSTS = ("127.0.0.2", "127.0.0.3")


def free_port(address: str = HOSTS[0]) -> int:
    """A TCP port free on `address` (default: the first host), below the ephemeral range."""
    return ports.free_port(address)


@dataclass
class Job:
    """A finished job: exit code, combined output and how long it took."""

    returncode: int
    output: str
    seconds: float

    def tail(self, chars: int = 6000) -> str:
        """The end of the output, for assertion messages."""
        return f"exit {self.returncode} after {self.seconds:.0f} s\n{self.output[-chars:]}"


@dataclass
class SshCluster:
    """Two loopback "hosts" behind one sshd of our own, and ways to run jobs on them."""

    root: Path
    port: int
    key: Path
    sshd: subprocess.Popen
    hosts: tuple[str, ...] = HOSTS

    @property
    def ssh_args(self) -> str:
        """Client options that reach our sshd without prompts or known_hosts entries (port not included)."""
        return (
            f"-F /dev/null -i {self.key} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no "
            "-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
        )

    def hostfile(self, directory: Path, hosts: tuple[str, ...] | None = None, slots: int = 1) -> Path:
        """Write a DeepSpeed hostfile for `hosts` (default: both) into `directory`."""
        path = directory / "hostfile"
        path.write_text("".join(f"{host} slots={slots}\n" for host in hosts or self.hosts))
        return path

    def launcher_env(self, launcher: str) -> dict[str, str]:
        """What `deepspeed --launcher LAUNCHER` needs in its environment to ssh to our hosts."""
        if launcher == "pdsh":
            return {"PDSH_SSH_ARGS_APPEND": self.ssh_args}
        return {
            "OMPI_MCA_plm_rsh_agent": "ssh",
            "OMPI_MCA_plm_rsh_args": f"-p {self.port} {self.ssh_args}",
            "OMPI_ALLOW_RUN_AS_ROOT": "1",
            "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
        }

    def deepspeed_argv(
        self, hostfile: Path, target: list[str], *, launcher: str = "pdsh", master_port: int | None = None
    ) -> list[str]:
        """`deepspeed --hostfile ... TARGET` on our hosts, rank 0 on the first (default: a fresh master port)."""
        argv = [str(BIN / "deepspeed"), "--hostfile", str(hostfile), "--launcher", launcher, "--no_ssh_check"]
        argv += ["--master_addr", self.hosts[0], "--master_port", str(master_port or free_port())]
        if launcher == "pdsh":
            argv += ["--ssh_port", str(self.port)]
        return argv + target

    def dsdet_launch_argv(
        self, job: list[str], *, hostfile: Path, launcher: str = "pdsh", extra=()
    ) -> list[str]:
        """`python -m dsdet launch` on our hosts (`extra` options before `--`, then the job words)."""
        return [
            sys.executable, "-m", "dsdet", "launch", "--hostfile", str(hostfile), "--launcher", launcher,
            "--ssh-port", str(self.port), "--ssh-args", self.ssh_args, *extra, "--", *job,
        ]  # fmt: skip

    def dsdet_launch(
        self, job: list[str], *, cwd: Path, launcher: str = "pdsh", extra=(), timeout: float = 120
    ) -> Job:
        """Run `dsdet launch` on both hosts from `cwd` (hostfile written there) and wait for the job."""
        argv = self.dsdet_launch_argv(job, hostfile=self.hostfile(cwd), launcher=launcher, extra=extra)
        return self.run(argv, cwd=cwd, timeout=timeout)

    def start(self, argv: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start `argv` in its own session, output to cwd/job.log."""
        with open(cwd / "job.log", "w") as log:
            return subprocess.Popen(
                argv, cwd=cwd, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip

    def finish(self, proc: subprocess.Popen, *, cwd: Path, timeout: float, started: float) -> Job:
        """Wait up to `timeout` s for `proc`, then kill what is left of the job and collect its log."""
        try:
            returncode = proc.wait(timeout=max(0.0, timeout - (time.monotonic() - started)))
        except subprocess.TimeoutExpired:
            returncode = -9
        seconds = time.monotonic() - started
        self.kill_job(proc)
        return Job(returncode, (cwd / "job.log").read_text(errors="replace"), seconds)

    def run(
        self, argv: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
    ) -> Job:
        """Run `argv` to completion (or `timeout`) and clean up every process it started."""
        started = time.monotonic()
        return self.finish(self.start(argv, cwd=cwd, env=env), cwd=cwd, timeout=timeout, started=started)

    def kill_job(self, proc: subprocess.Popen) -> None:
        """Kill the job's process group and every session our sshd is still serving."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        kill_tree(psutil.Process(self.sshd.pid).children(recursive=True))


def kill_tree(processes: list[psutil.Process]) -> None:
    """SIGKILL `processes` (all started by us) and reap them."""
    for child in processes:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(processes, timeout=10)


def printed_command(output: str) -> tuple[list[str], dict[str, str]]:
    """The deepspeed argv and environment from the command line `dsdet launch` printed."""
    line = next(line for line in output.splitlines() if "deepspeed --hostfile" in line)
    words = shlex.split(line)
    start = next(i for i, word in enumerate(words) if word.endswith("/deepspeed"))
    env = dict(word.split("=", 1) for word in words[:start])
    return words[start:], env
