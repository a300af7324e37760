"""Checks of the Python packages: dsdet's requirements, the torch/torchvision pair, DeepSpeed, accelerator."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys

import torch
import torchvision
from packaging.requirements import Requirement
from packaging.version import Version

from dsdet.doctor.report import Check

GROUP = "software"
# torchvision 0.N pairs with torch 2.(N - 15): 0.19 <-> 2.4, ..., 0.29 <-> 2.14.
TORCHVISION_MINOR_OFFSET = 15


def python_check() -> Check:
    """The interpreter, against dsdet's requires-python."""
    wanted = importlib.metadata.metadata("dsdet").get("Requires-Python") or ""
    version = platform.python_version()
    ok = Requirement(f"python{wanted}").specifier.contains(version)
    return Check(
        GROUP,
        "python",
        "ok" if ok else "fail",
        f"{version} at {sys.executable}",
        "" if ok else f"dsdet needs Python {wanted}",
    )


def requirement_checks() -> list[Check]:
    """One check per dsdet dependency that is missing or too old, else one summary line."""
    problems, count = [], 0
    for text in importlib.metadata.requires("dsdet") or []:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue  # an extra (mpi, dev), not needed to train
        count += 1
        try:
            installed = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(
                Check(GROUP, requirement.name, "fail", "not installed", f"pip install '{requirement}'")
            )
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            problems.append(
                Check(
                    GROUP,
                    requirement.name,
                    "fail",
                    f"{installed} installed, dsdet needs {requirement}",
                    f"pip install '{requirement}'",
                )
            )
    return problems or [
        Check(GROUP, "requirements", "ok", f"all {count} dependencies of dsdet are installed")
    ]


def torch_checks() -> list[Check]:
    """torch's build, and whether torchvision was built for this torch (versions and C++ ops)."""
    if torch.version.cuda:
        build = f"CUDA {torch.version.cuda}"
    else:
        build = f"ROCm {torch.version.hip}" if torch.version.hip else "CPU only"
    checks = [Check(GROUP, "torch", "ok", f"{torch.__version__} ({build} build)")]
    torch_minor = Version(torch.__version__).release[1]
    tv_minor = Version(torchvision.__version__).release[1]
    expected_minor = torch_minor + TORCHVISION_MINOR_OFFSET
    if tv_minor != expected_minor:
        checks.append(
            Check(
                GROUP,
                "torchvision",
                "fail",
                f"{torchvision.__version__} is built for torch 2.{tv_minor - TORCHVISION_MINOR_OFFSET}, "
                f"not {torch.__version__}",
                f"pip install 'torchvision==0.{expected_minor}.*' from the index torch came from",
            )
        )
    else:
        checks.append(
            Check(GROUP, "torchvision", "ok", f"{torchvision.__version__} (matches torch 2.{torch_minor})")
        )
    try:
        torchvision.ops.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)
    except Exception as exc:  # a mismatched build fails in many ways
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        checks.append(
            Check(
                GROUP,
                "torchvision ops",
                "fail",
                f"its C++ ops do not load: {first}",
                "reinstall torchvision built for this torch",
            )
        )
    return checks


def deepspeed_checks() -> list[Check]:
    """DeepSpeed's version and the torch its prebuilt ops (if any) were compiled for."""
    import deepspeed
    from deepspeed.git_version_info import torch_info

    compiled = torch_info.get("version", "0.0")
    if compiled in ("0.0", None):
        return [Check(GROUP, "deepspeed", "ok", f"{deepspeed.__version__} (ops are built just in time)")]
    same = Version(compiled).release[:2] == Version(torch.__version__).release[:2]
    detail = f"{deepspeed.__version__}, prebuilt ops for torch {compiled}"
    advice = (
        ""
        if same
        else "reinstall deepspeed for this torch (pip install --force-reinstall --no-cache-dir deepspeed)"
    )
    return [Check(GROUP, "deepspeed", "ok" if same else "warn", detail, advice)]


def accelerator_checks(precision: str) -> list[Check]:
    """The accelerator and backend DeepSpeed picks, and which precisions run on it."""
    from deepspeed.accelerator import get_accelerator

    accelerator = get_accelerator()
    name = accelerator.device_name()
    chosen = f" (DS_ACCELERATOR={os.environ['DS_ACCELERATOR']})" if os.environ.get("DS_ACCELERATOR") else ""
    detail = f"{name}{chosen}: {accelerator.device_count()} device(s), backend {accelerator.communication_backend_name()}"
    if name == "cpu" and torch.cuda.is_available():
        checks = [
            Check(
                "accelerator",
                "accelerator",
                "warn",
                detail + ", although torch sees a CUDA GPU",
                "unset DS_ACCELERATOR, or check that the GPU is visible (CUDA_VISIBLE_DEVICES)",
            )
        ]
    elif name == "cpu":
        checks = [
            Check(
                "accelerator",
                "accelerator",
                "info",
                detail,
                "no GPU found: training runs on CPU (fine to try dsdet, slow for real work)",
            )
        ]
    else:
        device = f", {torch.cuda.get_device_name(0)}" if name == "cuda" else ""
        checks = [Check("accelerator", "accelerator", "ok", detail + device)]
    supported = {
        "fp32": True,
        "bf16": bool(accelerator.is_bf16_supported()),
        "fp16": bool(accelerator.is_fp16_supported()),
    }
    for kind, ok in supported.items():
        if ok:
            checks.append(Check("accelerator", kind, "ok", f"supported on {name}"))
        elif kind == precision:
            checks.append(
                Check(
                    "accelerator",
                    kind,
                    "fail",
                    f"not supported on {name}, and train.precision is {kind}",
                    "set train.precision=fp32" + (" or bf16" if supported["bf16"] else ""),
                )
            )
        else:
            checks.append(
                Check(
                    "accelerator", kind, "info", f"not supported on {name} (train.precision is {precision})"
                )
            )
    return checks
