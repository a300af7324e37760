"""PNG bar charts for the report (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def grouped_bars(
    path: Path,
    title: str,
    ylabel: str,
    categories: list[str],
    series: dict[str, list[float | None]],
    reference: float | None = None,
    reference_label: str = "",
    log_scale: bool = False,
) -> Path:
    """One group of bars per category, one bar per series (missing values are left out); an optional
    horizontal reference line and logarithmic y axis. Returns `path`."""
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(categories) + 2), 3.6), dpi=110)
    for i, (name, values) in enumerate(series.items()):
        xs = [c + (i - (len(series) - 1) / 2) * width for c in range(len(categories))]
        kept = [(x, v) for x, v in zip(xs, values, strict=True) if v is not None]
        if kept:
            ax.bar([x for x, _ in kept], [v for _, v in kept], width, label=name)
    if reference is not None:
        ax.axhline(reference, color="black", linestyle="--", linewidth=1, label=reference_label or None)
    ax.set_xticks(range(len(categories)), categories, rotation=15, ha="right", fontsize=8)
    if log_scale:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if len(series) > 1 or reference_label:
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
