"""Multi-node launch: hostfiles, ssh checks, `.deepspeed_env` and the `deepspeed` command (`dsdet launch`)."""

from dsdet.launcher.command import (
    LAUNCHERS,
    LaunchOptions,
    LaunchPlan,
    check_launcher_options,
    deepspeed_argv,
    default_ssh_args,
    is_local_address,
    launcher_environment,
    pick_master_addr,
    pick_master_port,
)
from dsdet.launcher.hostfile import check_host, parse_hostfile_text, read_hostfile, select_slots
from dsdet.launcher.job_env import (
    DEEPSPEED_ENV_FILE,
    job_environment,
    read_deepspeed_env,
    write_deepspeed_env,
)
from dsdet.launcher.prepare import PreparedLaunch, prepare_launch
from dsdet.launcher.ssh import check_ssh, ssh_options, unreachable_hosts

__all__ = [
    "DEEPSPEED_ENV_FILE",
    "LAUNCHERS",
    "LaunchOptions",
    "LaunchPlan",
    "PreparedLaunch",
    "check_host",
    "check_launcher_options",
    "check_ssh",
    "deepspeed_argv",
    "default_ssh_args",
    "is_local_address",
    "job_environment",
    "launcher_environment",
    "parse_hostfile_text",
    "pick_master_addr",
    "pick_master_port",
    "prepare_launch",
    "read_deepspeed_env",
    "read_hostfile",
    "select_slots",
    "ssh_options",
    "unreachable_hosts",
    "write_deepspeed_env",
]
