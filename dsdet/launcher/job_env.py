"""The variables every rank needs, written to `.deepspeed_env`, which DeepSpeed exports on each host.

DeepSpeed reads `~/.deepspeed_env` and then `./.deepspeed_env` (one `NAME=value` per line, no comments,
no blank lines) and exports each variable through pdsh, `mpirun -x` or `srun --export`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from dsdet.errors import DsdetError
from dsdet.launcher.shell_safety import check_export_value

DEEPSPEED_ENV_FILE = ".deepspeed_env"
FORWARDED_IF_SET = ("DSDET_DATA_DIR", "NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME")


def _prepend(first: str, rest: str) -> str:
    parts = [first] + [p for p in rest.split(os.pathsep) if p and p != first]
    return os.pathsep.join(parts)


def rank_path(local_path: str) -> str:
    """This shell's PATH, with this Python's bin folder added at the end when it is missing.

    The order is kept so ranks find the same tools as local runs: two ninja versions, for example,
    disagree on torch's JIT extension cache and rebuild DeepSpeed ops (about 80 s) every time they alternate.
    """
    parts = [p for p in local_path.split(os.pathsep) if p]
    venv_bin = str(Path(sys.executable).parent)
    return os.pathsep.join(parts if venv_bin in parts else [*parts, venv_bin])


def job_environment(
    *,
    launcher: str,
    master_addr: str,
    master_port: int,
    max_slots: int,
    names: Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> dict[str, str]:
    """The variables the ranks need: PATH (with the venv), PYTHONPATH, threads, master, the `names` asked for."""
    environ = os.environ if environ is None else environ
    cwd = Path.cwd() if cwd is None else cwd
    threads = environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // max(1, max_slots)))
    values = {
        "PATH": rank_path(environ.get("PATH", "/usr/bin:/bin")),
        "PYTHONPATH": _prepend(str(cwd), environ.get("PYTHONPATH", "")),
        "OMP_NUM_THREADS": threads,
        "MASTER_ADDR": master_addr,
        "MASTER_PORT": str(master_port),
    }
    values.update({name: environ[name] for name in FORWARDED_IF_SET if environ.get(name)})
    for name in names:
        if name not in environ:
            raise DsdetError(f"--env {name}: {name} is not set in this shell")
        values[name] = environ[name]
    return {name: check_export_value(name, value, launcher) for name, value in values.items()}


def read_deepspeed_env(path: Path) -> dict[str, str]:
    """Read a `.deepspeed_env` file as DeepSpeed will, refusing lines it would choke on."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise DsdetError(
                f"{path}:{number}: expected NAME=value, got {line!r} (DeepSpeed would stop here)"
            )
        values[name.strip()] = value.strip()
    return values


def write_deepspeed_env(values: Mapping[str, str], directory: Path | None = None) -> tuple[Path, list[str]]:
    """Write `values` into DIRECTORY/.deepspeed_env, keeping variables already there that `values` lacks.

    Returns the file and the names it kept.
    """
    path = (Path.cwd() if directory is None else directory) / DEEPSPEED_ENV_FILE
    existing = read_deepspeed_env(path) if path.is_file() else {}
    kept = [name for name in existing if name not in values]
    merged = {**{name: existing[name] for name in kept}, **values}
    path.write_text("".join(f"{name}={value}\n" for name, value in merged.items()))
    return path, kept
