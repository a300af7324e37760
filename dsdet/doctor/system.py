"""Checks of the machine: multi-node tools, mpi4py, the model, disk and shared memory, the dataset."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from dsdet.config import ExperimentConfig
from dsdet.doctor.report import Check
from dsdet.engine.cpu.shared_memory import find_orphaned_segments
from dsdet.errors import DsdetError

INSTALL_TOOLS = "make system-deps (scripts/install-system-deps.sh) installs pdsh, OpenMPI and ssh"
# What each tool is for; none is needed on a single machine.
TOOLS = {
    "pdsh": "dsdet launch / deepspeed --hostfile with the default pdsh launcher",
    "ssh": "reaching the other hosts of a multi-node run",
    "mpirun": "--launcher openmpi and launch/openmpi.sh",
    "sshd": "this machine being a host that other machines launch ranks on",
}
# Per parameter in a checkpoint: fp32 weights 4 + Adam moments 8 + fp32 master copy under mixed precision 4.
CHECKPOINT_BYTES_PER_PARAMETER = 16
MIN_SHM_BYTES = 512 * 1024**2
GIB = 1024**3


def tool_checks() -> list[Check]:
    """Whether each multi-node tool is on PATH (sshd also in /usr/sbin)."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    checks = []
    for tool, purpose in TOOLS.items():
        found = shutil.which(tool, path=search)
        if found:
            checks.append(Check("launchers", tool, "ok", found))
        else:
            checks.append(Check("launchers", tool, "warn", f"not found: needed for {purpose}", INSTALL_TOOLS))
    return checks


def mpi4py_check() -> Check:
    """mpi4py and the MPI library it loads (mpirun-launched ranks read their rank through it)."""
    try:
        import mpi4py

        mpi4py.rc.initialize = False  # load the library without starting MPI
        mpi4py.rc.finalize = False
        from mpi4py import MPI

        library = MPI.Get_library_version().splitlines()[0].strip()
    except (ImportError, RuntimeError) as exc:
        return Check(
            "launchers",
            "mpi4py",
            "warn",
            f"cannot be imported: {exc}",
            "pip install 'dsdet[mpi]' (needs OpenMPI: make system-deps)",
        )
    return Check("launchers", "mpi4py", "ok", f"{mpi4py.__version__}, {library}")


def model_check(exp: ExperimentConfig) -> tuple[Check, int | None]:
    """Whether the experiment's model builds (on the meta device, so no memory), and its parameter count."""
    import torch

    from dsdet.models import build_model

    m = exp.model
    num_classes = m.num_classes if m.num_classes != "auto" else 91  # the head size barely changes the count
    try:
        with torch.device("meta"):
            model = build_model(m.name, num_classes, norm=m.norm, **m.kwargs)
    except DsdetError as exc:
        return Check("model", m.name, "fail", str(exc), "see `dsdet models` and examples/"), None
    count = sum(p.numel() for p in model.parameters())
    return Check("model", m.name, "ok", f"builds: {count / 1e6:.2f}M parameters"), count


def disk_check(exp: ExperimentConfig, num_parameters: int | None) -> Check:
    """Free space where train.output_dir is (or would be created) against what the checkpoints need."""
    out = Path(exp.train.output_dir).expanduser().absolute()
    existing = next(p for p in (out, *out.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if not os.access(existing, os.W_OK):
        return Check(
            "storage",
            "output_dir",
            "fail",
            f"{existing} is not writable (train.output_dir={exp.train.output_dir})",
            "set train.output_dir to a writable folder",
        )
    detail = f"{out}: {free / GIB:.1f} GiB free"
    if num_parameters is None:
        return Check("storage", "output_dir", "ok", detail)
    # keep_last checkpoints, one more while the next is written, and the exported fp32 model.
    need = num_parameters * (CHECKPOINT_BYTES_PER_PARAMETER * (exp.train.keep_last + 1) + 4)
    detail += f", checkpoints need about {need / GIB:.2f} GiB"
    if free < need:
        return Check(
            "storage",
            "output_dir",
            "fail",
            detail,
            "free space, lower train.keep_last or move train.output_dir",
        )
    if free < 2 * need:
        return Check(
            "storage",
            "output_dir",
            "warn",
            detail,
            "little room to spare: lower train.keep_last or move train.output_dir",
        )
    return Check("storage", "output_dir", "ok", detail)


def shm_check() -> Check:
    """/dev/shm, where data-loader workers pass batches to the training process."""
    try:
        size = shutil.disk_usage("/dev/shm").total
    except OSError:
        return Check(
            "storage", "/dev/shm", "info", "not present", "set data.num_workers=0 if data loading fails"
        )
    detail = f"{size / GIB:.1f} GiB"
    orphans = find_orphaned_segments()
    if orphans.paths:
        return Check(
            "storage",
            "/dev/shm",
            "warn",
            f"{detail}; {len(orphans.paths)} DeepSpeed all-reduce segments ({orphans.total_bytes / GIB:.1f} GiB of "
            "RAM) left by killed jobs",
            "the next dsdet training run on this node removes them",
        )
    if size < MIN_SHM_BYTES:
        return Check(
            "storage",
            "/dev/shm",
            "warn",
            detail + ": small for data-loader workers",
            "in docker run with --shm-size=2g, or set data.num_workers=0",
        )
    return Check("storage", "/dev/shm", "ok", detail)


def dataset_check(exp: ExperimentConfig) -> Check:
    """The default dataset prepared or not; for a dataset of your own, whether its paths exist."""
    from dsdet.data.default_dataset import is_prepared

    if exp.data.root is None:
        root = exp.data.root_dir()
        if is_prepared(root, seed=0):
            return Check("data", "dataset", "ok", f"the default dataset is prepared at {root}")
        return Check(
            "data",
            "dataset",
            "info",
            f"the default dataset is not prepared yet ({root})",
            "the first run prepares it (a few seconds), or run `dsdet data prepare` now",
        )
    missing = [str(p) for split in ("train", "val") for p in exp.data.split_paths(split) if not p.exists()]
    if missing:
        return Check(
            "data",
            "dataset",
            "fail",
            f"{exp.data.format} dataset at {exp.data.root}: missing {', '.join(missing)}",
            "fix data.root / data.train / data.val (docs/datasets.md)",
        )
    return Check(
        "data",
        "dataset",
        "ok",
        f"{exp.data.format} dataset at {exp.data.root}: paths exist",
        "`dsdet data check` reads every annotation",
    )
