"""Everything `dsdet launch` does before it execs DeepSpeed, in order, stopping at the first user mistake."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dsdet.launcher.command import (
    SSH_LAUNCHERS,
    LaunchOptions,
    LaunchPlan,
    check_launcher_options,
    deepspeed_argv,
    default_ssh_args,
    launcher_environment,
    pick_master_addr,
    pick_master_port,
)
from dsdet.launcher.hostfile import read_hostfile, select_slots
from dsdet.launcher.job_env import job_environment, write_deepspeed_env
from dsdet.launcher.ssh import check_ssh, ssh_options


@dataclass(frozen=True)
class PreparedLaunch:
    """The command to run, the hosts it runs on and the `.deepspeed_env` written for it."""

    plan: LaunchPlan
    slots: dict[str, list[int]]
    master: str
    env_file: Path
    kept_env: list[str]


def prepare_launch(
    options: LaunchOptions,
    module: str,
    module_args: list[str],
    *,
    env_names: Iterable[str] = (),
    check_reachable: bool = True,
) -> PreparedLaunch:
    """Validate the hostfile and options, check ssh, write `.deepspeed_env` and build the deepspeed command."""
    slots = select_slots(read_hostfile(options.hostfile), options.include, options.exclude)
    check_launcher_options(options, slots)
    hosts = list(slots)
    master_addr = pick_master_addr(hosts, options.master_addr)
    master_port = pick_master_port(master_addr, options.master_port)
    ssh_args = default_ssh_args(options.launcher) if options.ssh_args is None else options.ssh_args
    options_for_ssh = ssh_options(ssh_args, options.ssh_port)
    argv = deepspeed_argv(options, slots, master_addr, master_port, module, module_args)
    values = job_environment(
        launcher=options.launcher,
        master_addr=master_addr,
        master_port=master_port,
        max_slots=max(len(ids) for ids in slots.values()),
        names=env_names,
    )
    if check_reachable and options.launcher in SSH_LAUNCHERS:
        check_ssh(hosts, options_for_ssh)
    env_file, kept = write_deepspeed_env(values)
    plan = LaunchPlan(argv, launcher_environment(options.launcher, options_for_ssh, ssh_args))
    return PreparedLaunch(plan, slots, f"{master_addr}:{master_port}", env_file, kept)
