"""Check, before launching, that every host answers passwordless ssh the way pdsh and mpirun will reach it."""

from __future__ import annotations

import shlex
import subprocess
from concurrent.futures import ThreadPoolExecutor

from dsdet.errors import DsdetError


def ssh_options(ssh_args: str, port: int | None = None) -> list[str]:
    """The job's ssh options as a list: `ssh_args` split like a shell would, then `-p PORT`."""
    try:
        options = shlex.split(ssh_args)
    except ValueError as exc:
        raise DsdetError(f"ssh arguments {ssh_args!r} cannot be split: {exc}") from None
    if port is not None and not 0 < port < 65536:
        raise DsdetError(f"--ssh-port {port} is not a TCP port (1..65535)")
    return options + (["-p", str(port)] if port is not None else [])


def ssh_check_command(host: str, options: list[str], timeout_s: int = 10) -> list[str]:
    """`ssh ... HOST true` that never prompts and gives up after `timeout_s` seconds."""
    return ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={timeout_s}", *options, host, "true"]


def _probe(host: str, options: list[str], timeout_s: int) -> str | None:
    """None when `host` runs `true` over ssh, else the reason (ssh's last message)."""
    try:
        proc = subprocess.run(
            ssh_check_command(host, options, timeout_s),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s + 5,
        )
    except subprocess.TimeoutExpired:
        return f"no answer within {timeout_s + 5} s"
    except FileNotFoundError:
        raise DsdetError("ssh is not installed on this machine (needed to reach the hosts)") from None
    if proc.returncode == 0:
        return None
    lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
    return lines[-1] if lines else f"ssh exited with {proc.returncode}"


def unreachable_hosts(hosts: list[str], options: list[str], timeout_s: int = 10) -> dict[str, str]:
    """Probe every host in parallel; return {host: reason} for those that failed, in `hosts` order."""
    with ThreadPoolExecutor(max_workers=min(32, max(1, len(hosts)))) as pool:
        reasons = list(pool.map(lambda host: _probe(host, options, timeout_s), hosts))
    return {host: reason for host, reason in zip(hosts, reasons, strict=True) if reason is not None}


def check_ssh(hosts: list[str], options: list[str], timeout_s: int = 10) -> None:
    """Raise one DsdetError naming every host that passwordless ssh cannot reach."""
    failed = unreachable_hosts(hosts, options, timeout_s)
    if failed:
        details = "; ".join(f"{host} ({reason})" for host, reason in failed.items())
        raise DsdetError(
            f"ssh cannot reach {len(failed)} of {len(hosts)} hosts: {details}; "
            "check the hostfile, --ssh-port and passwordless ssh (--ssh-args / PDSH_SSH_ARGS_APPEND)"
        )
