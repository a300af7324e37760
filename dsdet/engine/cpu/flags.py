"""What this machine's CPU can do, read from /proc/cpuinfo."""

from __future__ import annotations

from pathlib import Path


def cpu_flags() -> set[str] | None:
    """The instruction-set flags of this machine's CPU from /proc/cpuinfo; None where it has none (not Linux)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    return next((set(line.split(":", 1)[1].split()) for line in lines if line.startswith("flags")), None)


def cpu_has_bf16_units() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX); without them torch emulates bf16
    convolutions and matrix products, much slower than fp32. True where the flags cannot be read."""
    flags = cpu_flags()
    return flags is None or bool({"avx512_bf16", "amx_bf16"} & flags)
