"""Training images/s, peak RSS per rank and start-up times: dsdet's ZeRO configurations vs a plain DDP loop."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from benchmarks.context import Context, Section, failure_line
from benchmarks.launch import RunRecord
from benchmarks.measure import (
    checkpoint_free_windows,
    count_parameters,
    cpu_seconds_per_image,
    fmt,
    median_or_none,
    mib,
    ratio,
    read_jsonl,
    run_num_classes,
    steady_rates,
    zero_estimate,
)
from benchmarks.plots import grouped_bars
from benchmarks.settings import PLAIN_MALLOC_ENV, ZERO_CONFIGS, Budget, ModelCase

PLAIN = "plain DDP"
PLAIN_MALLOC = " + retained malloc"


def run_overrides(budget: Budget, case: ModelCase) -> list[str]:
    """A fixed number of logged steps with a checkpoint at the end of warm-up and every warm-up length after."""
    return [
        *case.overrides(),
        "train.epochs=1000",
        f"train.max_steps={budget.warmup_steps + budget.measured_steps}",
        "train.log_every_steps=1",
        f"train.checkpoint_every_steps={budget.warmup_steps}",
        "eval.every_epochs=0",
    ]


def summarize(config: str, record: RunRecord, out_dir: Path, budget: Budget, images_per_step: int) -> dict:
    """The numbers of one run, read from its files and its RunRecord."""
    rates = steady_rates(read_jsonl(out_dir / "train_log.jsonl"), budget.warmup_steps, budget.warmup_steps)
    windows = checkpoint_free_windows(budget.warmup_steps, budget.warmup_steps + budget.measured_steps)
    return {
        "config": config,
        "ok": record.ok,
        "images_per_s": median_or_none(rates) if record.ok else None,
        "rates": rates,
        "cpu_s_per_image": cpu_seconds_per_image(record.samples, windows, images_per_step)
        if record.ok
        else None,
        "peak_rss_bytes": record.peak_rss_bytes,
        "first_step_s": record.first_seen.get("first_step"),
        "first_checkpoint_s": record.first_seen.get("first_checkpoint"),
        "wall_s": record.wall_s,
        "pipeline_layer_files": len(list(out_dir.glob("checkpoints/*/layer_*-model_states.pt"))),
        "error": None if record.ok else failure_line(record),
    }


def images_per_step(ctx: Context, case: ModelCase) -> int:
    """Images of one optimizer step over all ranks (the pipeline run keeps it with gradient accumulation)."""
    return case.batch_size * ctx.budget.ranks


def repeat_label(label: str, rep: int) -> str:
    """The run folder's label of launch `rep` (0-based) of a run."""
    return label if rep == 0 else f"{label} #{rep + 1}"


def merge_launches(launches: list[dict]) -> dict:
    """One row from repeated launches of a run: the per-step rates pooled, the median of each launch's CPU time
    and start-up times, the highest peak RSS of each rank."""
    ok = all(launch["ok"] for launch in launches)
    rates = [rate for launch in launches for rate in launch["rates"]]

    def median_of(key: str) -> float | None:
        return median_or_none([launch[key] for launch in launches if launch[key] is not None])

    return {
        **launches[0],
        "ok": ok,
        "launches": len(launches),
        "rates": rates,
        "images_per_s": median_or_none(rates) if ok else None,
        "cpu_s_per_image": median_of("cpu_s_per_image") if ok else None,
        # per rank; a launch that failed early may have sampled fewer ranks
        "peak_rss_bytes": [
            max(peaks) for peaks in zip(*(launch["peak_rss_bytes"] for launch in launches), strict=False)
        ],
        "first_step_s": median_of("first_step_s"),
        "first_checkpoint_s": median_of("first_checkpoint_s"),
        "wall_s": sum(launch["wall_s"] for launch in launches),
        "error": next((launch["error"] for launch in launches if launch["error"]), None),
    }


Launcher = tuple[str, Callable[[int], dict]]


def plain_launcher(ctx: Context, case: ModelCase, variant: str = "", env: dict | None = None) -> Launcher:
    """The row label of the plain DDP loop on `case` (with `env` in its ranks' environment, named by `variant`)
    and a function launching it once."""
    label = f"{case.name} {PLAIN}{variant}"

    def launch_once(rep: int) -> dict:
        record, out_dir = ctx.plain_run(repeat_label(label, rep), run_overrides(ctx.budget, case), env=env)
        row = summarize(PLAIN + variant, record, out_dir, ctx.budget, images_per_step(ctx, case))
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)  # only their timing matters
        return row

    return label, launch_once


def dsdet_launcher(
    ctx: Context,
    case: ModelCase,
    config: str,
    variant: str = "",
    extra: tuple[str, ...] = (),
    launcher: str = "deepspeed",
) -> Launcher:
    """The row label of dsdet under ZERO_CONFIGS[config] (+ `extra` overrides, named by `variant`) on `case`,
    and a function launching it once; a row carries the ZeRO estimate of its resolved config."""
    label = f"{case.name} {config}{variant}"

    def launch_once(rep: int) -> dict:
        overrides = [*run_overrides(ctx.budget, case), *ZERO_CONFIGS[config], *extra]
        record, out_dir = ctx.dsdet_run(repeat_label(label, rep), overrides, launcher)
        row = summarize(config + variant, record, out_dir, ctx.budget, images_per_step(ctx, case))
        num_classes = run_num_classes(out_dir)
        if record.ok and num_classes is not None:
            row["num_parameters"] = count_parameters(case.overrides(), num_classes)
            estimate = zero_estimate(out_dir, row["num_parameters"], ctx.budget.ranks)
            row["estimate_bytes"] = estimate.accelerator_total + estimate.offloaded
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
        return row

    return label, launch_once


def measured(ctx: Context, launchers: list[Launcher]) -> list[dict]:
    """A row for each launcher, launched budget.repeats times in turns (A B C A B C), so that a drift of the
    machine's load hits every run alike; a row measured earlier in this invocation is reused."""
    pending = [(label, launch_once) for label, launch_once in launchers if label not in ctx.runs]
    launches: dict[str, list[dict]] = {label: [] for label, _ in pending}
    for rep in range(ctx.budget.repeats):
        for label, launch_once in pending:
            launches[label].append(launch_once(rep))
    for label, _ in pending:
        ctx.runs[label] = merge_launches(launches[label])
    return [ctx.runs[label] for label, _ in launchers]


def measure_case(ctx: Context, case: ModelCase) -> list[dict]:
    """The plain loop, then each ZeRO configuration (and the budget's variants), on one model, launched in
    turns; ratios to the plain loop's images/s."""
    budget = ctx.budget
    launchers = [plain_launcher(ctx, case)]
    if budget.plain_malloc_variant:
        launchers.append(plain_launcher(ctx, case, PLAIN_MALLOC, PLAIN_MALLOC_ENV))
    launchers += [dsdet_launcher(ctx, case, config) for config in budget.zero_configs]
    first = case == budget.throughput_models[0]
    launchers += [
        dsdet_launcher(ctx, case, v.config, v.name, v.overrides, v.launcher)
        for v in budget.variants
        if v.applies_to(case, first)
    ]
    rows = measured(ctx, launchers)
    for row in rows:
        row["ratio_vs_plain"] = ratio(row["images_per_s"], rows[0]["images_per_s"])
        row["cpu_ratio_vs_plain"] = ratio(rows[0]["cpu_s_per_image"], row["cpu_s_per_image"])
    return rows


def speed_table(rows: list[dict]) -> list[str]:
    lines = [
        "| run | images/s (median) | steps | images/s ratio vs plain | CPU s per image | CPU efficiency vs plain "
        "| launch → first step (s) | launch → first checkpoint (s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row['config']} | {fmt(row['images_per_s'])} | {len(row['rates'])} | {fmt(row['ratio_vs_plain'])} "
            f"| {fmt(row['cpu_s_per_image'], 3)} | {fmt(row['cpu_ratio_vs_plain'])} "
            f"| {fmt(row['first_step_s'], 1)} | {fmt(row['first_checkpoint_s'], 1)} |"
        )
    return lines


def memory_table(rows: list[dict]) -> list[str]:
    zero0 = next((r for r in rows if r["config"] == "ZeRO-0" and r["peak_rss_bytes"]), None)
    lines = [
        "| run | peak RSS per rank (MiB) | Δ vs ZeRO-0, max rank (MiB) | ZeRO estimate, model states per rank (MiB) | estimated Δ vs ZeRO-0 (MiB) |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for row in rows:
        peaks = row["peak_rss_bytes"]
        delta = max(peaks) - max(zero0["peak_rss_bytes"]) if zero0 and peaks else None
        estimate = row.get("estimate_bytes")
        est_delta = (
            estimate - zero0["estimate_bytes"] if zero0 and estimate and "estimate_bytes" in zero0 else None
        )
        lines.append(
            f"| {row['config']} | {' / '.join(mib(p) for p in peaks) or 'n/a'} | {mib(delta)} "
            f"| {mib(estimate)} | {mib(est_delta)} |"
        )
    return lines


def run(ctx: Context) -> Section:
    """Measure every model of the budget and write tables and plots."""
    budget = ctx.budget
    lines = [
        f"{budget.ranks} ranks. Each run was launched {budget.repeats} time(s) in this invocation, in turns "
        "(plain, ZeRO-0, ..., plain, ZeRO-0, ...), so that a change of the machine's load hits every run alike; "
        "steps counts the measured steps of all its launches. dsdet: `deepspeed --num_gpus "
        f"{budget.ranks} --module dsdet.train`; plain: `torchrun --nproc-per-node {budget.ranks} -m "
        "benchmarks.plain_ddp` (DistributedDataParallel, AdamW, the same dsdet model, dataset, augmentations, "
        "loader and batch size, fp32, torchvision's defaults: NCHW convolutions, torchvision's RoIAlign). dsdet "
        "runs with its CPU defaults: channels-last convolutions (`model.channels_last`), ZeRO-0/1/2 gradient "
        "all-reduces and ZeRO-1/2 parameter all-gathers through DeepSpeed's shared-memory kernel "
        "(`train.cpu.collectives`), freed memory kept in glibc's heap (`train.cpu.malloc`) and, for models that "
        "pool RoIs, RoIAlign trained as a sparse matrix product (`train.cpu.roi_align`). Each `ZeRO-2 + ...` row "
        "changes one thing: `+ gloo collectives`, `+ system malloc` and `+ torchvision RoIAlign` switch one of "
        "those defaults back to the plain loop's, `+ bf16` trains with `train.precision=bf16`, `via torchrun` "
        "launches with torchrun. `plain DDP + retained malloc` is the plain loop with "
        f"{' '.join(f'`{k}={v}`' for k, v in PLAIN_MALLOC_ENV.items())} in its ranks' environment, the glibc "
        "setting `train.cpu.malloc` makes, to show what that part is worth without dsdet. images/s is the "
        "median of the per-step values in `train_log.jsonl` after "
        f"{budget.warmup_steps} warm-up steps, leaving out the steps that follow a checkpoint save "
        f"(both sides save every {budget.warmup_steps} steps). Peak RSS is VmHWM of each rank process "
        "(loader workers excluded); the estimate is `dsdet.config.estimate_for_config` on the run's resolved "
        "DeepSpeed config (the `dsdet config explain` numbers), model states only. CPU s per image is the CPU "
        "time of the whole process tree (launcher, ranks, loader workers) per training image over the same "
        "checkpoint-free steps; on a shared machine it moves far less with other load than images/s does. "
        "CPU efficiency vs plain is plain's CPU s per image over the run's (above 1: less CPU per image).",
        "",
    ]
    plots, results = [], {}
    for case in budget.throughput_models:
        rows = measure_case(ctx, case)
        results[case.name] = rows
        lines += [f"### {case.describe()}", "", *speed_table(rows), "", *memory_table(rows), ""]
        lines += [row["error"] for row in rows if row["error"]]
        labels = [row["config"] for row in rows]
        plots.append(
            grouped_bars(
                ctx.images_dir / f"bench_throughput_{case.name}.png",
                f"{case.name}: training images/s ({budget.ranks} ranks)",
                "images/s",
                labels,
                {"images/s": [row["images_per_s"] for row in rows]},
                reference=rows[0]["images_per_s"],
                reference_label=PLAIN,
            )
        )
        plots.append(
            grouped_bars(
                ctx.images_dir / f"bench_memory_{case.name}.png",
                f"{case.name}: peak RSS per rank vs ZeRO estimate",
                "MiB",
                labels,
                {
                    "peak RSS, max rank": [
                        max(r["peak_rss_bytes"]) / 2**20 if r["peak_rss_bytes"] else None for r in rows
                    ],
                    "estimate (model states)": [
                        r["estimate_bytes"] / 2**20 if r.get("estimate_bytes") else None for r in rows
                    ],
                },
            )
        )
    return Section("Training throughput, memory and start-up", lines, plots, results)
