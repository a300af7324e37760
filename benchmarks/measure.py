"""Numbers from a finished run's files: steady images/s, parameter count and the ZeRO memory estimate."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from dsdet.config import estimate_for_config, load_deepspeed_config, load_experiment
from dsdet.config.memory import MemoryEstimate

MIB = 2**20


def read_jsonl(path: Path) -> list[dict]:
    """The JSON lines of `path` ([] when it does not exist)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def steady_rates(rows: list[dict], warmup_steps: int, checkpoint_every: int | None) -> list[float]:
    """images/s of the steps logged after warm-up, leaving out each step whose interval holds a checkpoint save
    (saves run after the step they follow is logged, so they land in the next step's interval)."""
    return [
        row["images_per_s"]
        for row in rows
        if row["step"] > warmup_steps and not (checkpoint_every and (row["step"] - 1) % checkpoint_every == 0)
    ]


def checkpoint_free_windows(warmup_steps: int, total_steps: int) -> list[tuple[int, int]]:
    """(a, b) step pairs after warm-up whose steps a+1..b hold no checkpoint save (one is saved every
    `warmup_steps` steps, after the step is logged)."""
    return [
        (start + 1, start + warmup_steps)
        for start in range(warmup_steps, total_steps - warmup_steps + 1, warmup_steps)
    ]


def cpu_seconds_per_image(
    samples: list[tuple[float, int, float]], windows: list[tuple[int, int]], images_per_step: int
) -> float | None:
    """CPU seconds the whole process tree spent per training image over the step `windows`, from samples of
    (time, steps logged, CPU seconds); None when a window was not sampled."""
    cpu, images = 0.0, 0
    for first, last in windows:
        at_first = next((c for _, steps, c in samples if steps >= first), None)
        at_last = next((c for _, steps, c in samples if steps >= last), None)
        if at_first is None or at_last is None:
            return None
        cpu += at_last - at_first
        images += (last - first) * images_per_step
    return cpu / images if images else None


def median_or_none(values: list[float]) -> float | None:
    """The median, or None for no values."""
    return statistics.median(values) if values else None


def ratio(value: float | None, reference: float | None) -> float | None:
    """value / reference, None when either is missing."""
    return value / reference if value is not None and reference else None


def count_parameters(overrides: list[str], num_classes: int) -> int:
    """Trainable parameters of the experiment's model (built on the meta device by dsdet's own counter)."""
    from dsdet.engine.run import count_parameters as counter
    from dsdet.engine.run import model_spec

    return counter(model_spec(load_experiment(None, overrides), num_classes))


def run_num_classes(out_dir: Path) -> int | None:
    """num_classes recorded in a dsdet run's checkpoint run_info.json."""
    for info in sorted(out_dir.glob("checkpoints/*/run_info.json")):
        return int(json.loads(info.read_text())["model"]["num_classes"])
    return None


def zero_estimate(out_dir: Path, num_parameters: int, world_size: int) -> MemoryEstimate:
    """The ZeRO-paper estimate for the run's resolved DeepSpeed config (what `dsdet config explain` prints)."""
    config = load_deepspeed_config(out_dir / "deepspeed_config.json")
    return estimate_for_config(config, num_parameters, world_size)


def mib(value: float | None) -> str:
    """Bytes as MiB for a table cell."""
    return "n/a" if value is None else f"{value / MIB:.0f}"


def fmt(value: float | None, digits: int = 2) -> str:
    """A number for a table cell."""
    return "n/a" if value is None else f"{value:.{digits}f}"
