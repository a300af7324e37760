"""Activation checkpointing (memory saved vs time added) and a 2-stage pipeline vs data parallel at equal ranks."""

from __future__ import annotations

from benchmarks.context import Context, Section
from benchmarks.measure import fmt, mib, ratio
from benchmarks.throughput import dsdet_launcher, measured

ACTIVATION_CHECKPOINTING = ("train.activation_checkpointing=true",)
PIPELINE_STAGES = 2
# Two micro-batches per step fill the pipeline and keep the images per optimizer step of the data-parallel run.
PIPELINE = (
    f"deepspeed.pipeline={{stages: {PIPELINE_STAGES}, partition: parameters}}",
    f"train.grad_accum_steps={PIPELINE_STAGES}",
)


def pair_table(rows: list[dict], reference: dict) -> list[str]:
    """images/s and peak RSS of each run next to the reference run."""
    lines = [
        "| run | images/s (median) | time per image vs reference | peak RSS per rank (MiB) | peak RSS saved, max rank (MiB) |",
        "| --- | ---: | ---: | --- | ---: |",
    ]
    for row in rows:
        if not row["ok"]:
            lines.append(f"| {row['config']} | failed | | | |")
            continue
        peaks, reference_peaks = row["peak_rss_bytes"], reference["peak_rss_bytes"]
        saved = max(reference_peaks) - max(peaks) if peaks and reference_peaks else None
        slower = ratio(reference["images_per_s"], row["images_per_s"])
        lines.append(
            f"| {row['config']} | {fmt(row['images_per_s'])} | {fmt(slower)} "
            f"| {' / '.join(mib(p) for p in peaks) or 'n/a'} | {mib(saved)} |"
        )
    return lines


def run(ctx: Context) -> Section:
    """Activation checkpointing on/off under ZeRO-2, then pipeline vs data parallel under ZeRO-1."""
    case = ctx.budget.checkpointing_model
    if case is None:
        return Section(
            "Activation checkpointing and pipeline parallelism", [f"Not run in {ctx.budget.mode} mode."]
        )
    plain_ac, with_ac = measured(
        ctx,
        [
            dsdet_launcher(ctx, case, "ZeRO-2"),
            dsdet_launcher(ctx, case, "ZeRO-2", " + activation checkpointing", ACTIVATION_CHECKPOINTING),
        ],
    )
    data_parallel, pipeline = measured(
        ctx,
        [
            dsdet_launcher(ctx, case, "ZeRO-1"),
            dsdet_launcher(ctx, case, "ZeRO-1", f" + pipeline ({PIPELINE_STAGES} stages)", PIPELINE),
        ],
    )
    lines = [
        f"{case.describe()}, {ctx.budget.ranks} ranks, the same steps and measurement as the throughput runs.",
        "",
        "### Activation checkpointing (ZeRO-2; backbone blocks recomputed in backward)",
        "",
        *pair_table([plain_ac, with_ac], plain_ac),
        "",
        f"### Pipeline ({PIPELINE_STAGES} stages x 1 replica) vs data parallel (1 stage x {ctx.budget.ranks} "
        "replicas), ZeRO-1",
        "",
        f"Equal images per optimizer step: data parallel takes {case.batch_size} images per rank; the pipeline "
        f"takes {PIPELINE_STAGES} micro-batches of {case.batch_size} through both stages.",
        "",
    ]
    if not pipeline["ok"] or not pipeline["pipeline_layer_files"]:
        reason = pipeline["error"] or "the run saved no per-layer pipeline checkpoint files"
        lines.append(f"Pipeline: not yet measured ({reason}).")
    else:
        lines += pair_table([data_parallel, pipeline], data_parallel)
    errors = [row["error"] for row in (plain_ac, with_ac, data_parallel) if row["error"]]
    results = {"activation_checkpointing": [plain_ac, with_ac], "pipeline": [data_parallel, pipeline]}
    return Section("Activation checkpointing and pipeline parallelism", [*lines, "", *errors], [], results)
