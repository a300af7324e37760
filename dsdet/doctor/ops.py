"""Which DeepSpeed C++/CUDA ops a run uses, and whether each is prebuilt, already JIT-built or buildable."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import sys
from pathlib import Path

import torch
from torch.utils.cpp_extension import get_default_build_root, is_ninja_available

from dsdet.config import ExperimentConfig, for_device
from dsdet.doctor.report import Check

GROUP = "deepspeed ops"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def needed_ops(exp: ExperimentConfig, device: str) -> dict[str, str]:
    """Op name -> why the experiment's run loads it on this accelerator."""
    ds = exp.deepspeed
    offload = {ds.offload_device("offload_optimizer"), ds.offload_device("offload_param")} - {"none"}
    needed = {}
    kind = (ds.optimizer_type or "").lower()
    optimizer = for_device(ds.to_deepspeed_dict(allow_auto=True), device).get("optimizer") or {}
    offloaded = ds.offload_device("offload_optimizer") != "none"
    if not kind and exp.train.optimizer.name == "adamw" and offloaded and device != "cpu":
        needed["cpu_adam"] = (
            "train.optimizer adamw with the optimizer offloaded (dsdet builds DeepSpeedCPUAdam)"
        )
    elif kind in ("adam", "adamw") and not optimizer.get("params", {}).get("torch_adam", False):
        if offloaded:
            needed["cpu_adam"] = f"{ds.optimizer_type} with the optimizer offloaded"
        else:
            needed["fused_adam"] = f"{ds.optimizer_type} on {device}"
    elif kind == "lamb":
        needed["fused_lamb"] = "the Lamb optimizer"
    if "nvme" in offload:
        needed["async_io"] = "offload to NVMe"
    if device == "cpu":
        needed["deepspeed_shm_comm"] = (
            "shared-memory gradient collectives of CPU ranks on one node (train.cpu.collectives); optional, gloo otherwise"
        )
    return needed


def extensions_dir() -> Path:
    """The folder torch.utils.cpp_extension builds JIT ops into (same rule as torch)."""
    if os.environ.get("TORCH_EXTENSIONS_DIR"):
        return Path(os.environ["TORCH_EXTENSIONS_DIR"])
    if torch.version.hip is not None:
        accelerator = "rocm" + torch.version.hip.replace(".", "")
    elif torch.version.cuda is not None:
        accelerator = "cu" + torch.version.cuda.replace(".", "")
    else:
        accelerator = "cpu"
    python = f"py{sys.version_info.major}{sys.version_info.minor}{getattr(sys, 'abiflags', '')}"
    return Path(get_default_build_root()) / f"{python}_{accelerator}"


def _probe(builder) -> tuple[bool, str]:
    """(compatible, the first line of DeepSpeed's explanation when not) without letting the builder print."""
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        try:
            compatible = bool(builder.is_compatible(verbose=True))
        except Exception as exc:  # a probe can fail in any way (e.g. no CUDA toolkit)
            return False, f"its compatibility probe failed: {exc}"
    reasons = [
        _ANSI.sub("", line).replace("[WARNING]", "").strip() for line in output.getvalue().splitlines()
    ]
    return compatible, next((r for r in reasons if r), "")


def op_checks(exp: ExperimentConfig) -> list[Check]:
    """ninja, then one check per DeepSpeed op of this accelerator (what `ds_report` lists), needed ones first."""
    from deepspeed.accelerator import get_accelerator
    from deepspeed.git_version_info import accelerator_name, installed_ops
    from deepspeed.ops.op_builder.all_ops import ALL_OPS

    device = get_accelerator().device_name()
    needed = needed_ops(exp, device)
    ninja = is_ninja_available()
    checks = [
        Check(GROUP, "ninja", "ok", f"{shutil.which('ninja')} (JIT builds use the first ninja on PATH)")
        if ninja
        else Check(
            GROUP,
            "ninja",
            "warn",
            "not found: ops that are not prebuilt cannot be JIT-built",
            "pip install ninja",
        )
    ]
    build_dir = extensions_dir()
    for name in [*needed, *(n for n in ALL_OPS if n not in needed)]:
        builder = ALL_OPS.get(name)
        why = f" (used for {needed[name]})" if name in needed else ""
        if builder is None:
            status = "fail" if name in needed else "info"
            checks.append(
                Check(
                    GROUP,
                    name,
                    status,
                    f"not available on {device}{why}",
                    "use another optimizer or offload setting",
                )
            )
            continue
        if name == "deepspeed_not_implemented":
            continue
        if installed_ops.get(name) and accelerator_name == device:
            checks.append(Check(GROUP, name, "ok", f"prebuilt{why}"))
        elif (build_dir / builder.name / f"{builder.name}.so").is_file():
            checks.append(Check(GROUP, name, "ok", f"JIT-built in {build_dir / builder.name}{why}"))
        else:
            checks.append(_buildable(name, builder, why, name in needed, ninja))
    return checks


def _buildable(name: str, builder, why: str, needed: bool, ninja: bool) -> Check:
    """An op that is neither prebuilt nor built yet: JIT-built on first use, or why it cannot be."""
    compatible, reason = _probe(builder)
    if compatible and ninja:
        if not needed:
            return Check(GROUP, name, "ok", "compatible, JIT-built on first use")
        advice = "the first run builds it (a minute or two); keep PATH the same between runs so it is reused"
        return Check(GROUP, name, "info", f"compatible, JIT-built on first use{why}", advice)
    cause = reason or ("ninja is missing" if compatible else "not compatible with this system")
    optional = not needed or name == "deepspeed_shm_comm"  # DeepSpeed runs without the shm op
    status = "info" if optional else "fail"
    return Check(GROUP, name, status, f"cannot be built: {cause}{why}", _op_advice(name, reason))


def _op_advice(name: str, reason: str) -> str:
    if name == "async_io":
        return "apt-get install libaio-dev (only NVMe offload needs it)"
    if "ninja" in reason or not reason:
        return "pip install ninja; a C++ compiler (g++) must be installed"
    return "see `ds_report` for details"
