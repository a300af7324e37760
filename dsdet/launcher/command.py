"""Turn a validated hostfile and options into the exact `deepspeed` argv and launcher environment."""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

from dsdet.errors import DsdetError
from dsdet.launcher.hostfile import check_host
from dsdet.launcher.shell_safety import check_pdsh_directory, quote_for_pdsh
from dsdet.ports import free_port, port_is_free

LAUNCHERS = ("pdsh", "openmpi", "slurm", "mvapich")
SSH_LAUNCHERS = ("pdsh", "openmpi", "mvapich")
DEFAULT_MASTER_PORT = 29500  # DeepSpeed's and torch's default
SSH_ARGS_VARIABLE = {"pdsh": "PDSH_SSH_ARGS_APPEND", "openmpi": "OMPI_MCA_plm_rsh_args"}


@dataclass(frozen=True)
class LaunchOptions:
    """What the user asked for on the command line."""

    hostfile: Path
    include: str = ""
    exclude: str = ""
    launcher: str = "pdsh"
    ssh_port: int | None = None
    # None: the launcher's own variable (PDSH_SSH_ARGS_APPEND, OMPI_MCA_plm_rsh_args)
    ssh_args: str | None = None
    master_addr: str | None = None
    master_port: int | None = None
    launcher_args: str = ""


@dataclass(frozen=True)
class LaunchPlan:
    """The command to exec and the variables to add to its environment."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)

    def shell_line(self) -> str:
        """The plan as one copy-pasteable shell command."""
        assignments = [f"{name}={shlex.quote(value)}" for name, value in self.env.items()]
        return " ".join([*assignments, shlex.join(self.argv)])


def default_ssh_args(launcher: str) -> str:
    """The ssh arguments `launcher` already uses, from its own environment variable."""
    return os.environ.get(SSH_ARGS_VARIABLE.get(launcher, "PDSH_SSH_ARGS_APPEND"), "")


def is_local_address(host: str) -> bool:
    """True when `host` resolves to an address of this machine (one we can bind to)."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror:
        return False
    for family, _, _, _, address in infos:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((address[0], 0))
            except OSError:
                continue
            return True
    return False


def pick_master_addr(hosts: list[str], explicit: str | None) -> str:
    """`--master-addr` when given, else the first host of the job."""
    return check_host(explicit, "--master-addr") if explicit else hosts[0]


def pick_master_port(master_addr: str, explicit: int | None) -> int:
    """`--master-port` (checked free when the master is this machine), else a free port or DeepSpeed's default."""
    if explicit is not None and not 0 < explicit < 65536:
        raise DsdetError(f"--master-port {explicit} is not a TCP port (1..65535)")
    if not is_local_address(master_addr):
        return explicit or DEFAULT_MASTER_PORT
    if explicit is None:
        return free_port(master_addr)
    if not port_is_free(master_addr, explicit):
        raise DsdetError(f"--master-port {explicit} is already in use on {master_addr}")
    return explicit


def check_launcher_options(options: LaunchOptions, slots: dict[str, list[int]]) -> None:
    """Refuse what DeepSpeed's chosen launcher backend cannot express (host filters, ssh port)."""
    launcher = options.launcher
    if launcher not in LAUNCHERS:
        raise DsdetError(f"--launcher {launcher!r} is not one of {', '.join(LAUNCHERS)}")
    if launcher == "mvapich" and options.ssh_port is not None:
        raise DsdetError("--ssh-port cannot be passed to mvapich's mpirun: set the port in ~/.ssh/config")
    if launcher in ("openmpi", "mvapich") and (options.include or options.exclude):
        raise DsdetError(
            f"--launcher {launcher} runs every host of the hostfile: write a smaller hostfile "
            "instead of --include/--exclude"
        )
    if launcher == "slurm":
        counts = {len(ids) for ids in slots.values()}
        if len(counts) > 1 or any(ids != list(range(len(ids))) for ids in slots.values()):
            raise DsdetError("--launcher slurm needs the same slots 0..N-1 on every selected host")


def launcher_environment(launcher: str, ssh_options: list[str], ssh_args: str) -> dict[str, str]:
    """Variables that make `launcher` itself reach the hosts with the checked ssh options."""
    if launcher == "pdsh":
        return {"PDSH_SSH_ARGS_APPEND": ssh_args} if ssh_args else {}
    if launcher == "openmpi":
        env = {"OMPI_MCA_plm_rsh_agent": "ssh"}
        if ssh_options:
            env["OMPI_MCA_plm_rsh_args"] = shlex.join(ssh_options)
        if os.geteuid() == 0:
            env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
        return env
    return {}


def deepspeed_executable() -> str:
    """The `deepspeed` launcher next to this Python, else the one on PATH."""
    beside = Path(sys.executable).parent / "deepspeed"
    found = str(beside) if beside.is_file() else shutil.which("deepspeed")
    if not found:
        raise DsdetError(
            "the 'deepspeed' launcher is not installed in this environment (pip install deepspeed)"
        )
    return found


def deepspeed_argv(
    options: LaunchOptions,
    slots: dict[str, list[int]],
    master_addr: str,
    master_port: int,
    module: str,
    module_args: list[str],
) -> list[str]:
    """`deepspeed --hostfile ... --module MODULE ARGS`, arguments quoted for the launcher's remote shell."""
    argv = [deepspeed_executable(), "--hostfile", str(options.hostfile.resolve())]
    if options.include:
        argv += ["--include", options.include]
    if options.exclude:
        argv += ["--exclude", options.exclude]
    argv += ["--launcher", options.launcher, "--master_addr", master_addr, "--master_port", str(master_port)]
    if options.ssh_port is not None and options.launcher == "pdsh":
        argv += ["--ssh_port", str(options.ssh_port)]
    if options.launcher_args:
        argv += ["--launcher_args", options.launcher_args]
    argv.append("--no_ssh_check")  # dsdet checked every host already, with the job's own ssh options
    if len(slots) == 1 and not is_local_address(next(iter(slots))):
        argv.append("--force_multi")  # else DeepSpeed would run the single remote host's ranks here
    if options.launcher == "pdsh":
        check_pdsh_directory(os.getcwd())
        module_args = [quote_for_pdsh(arg) for arg in module_args]
    return [*argv, "--module", module, *module_args]
