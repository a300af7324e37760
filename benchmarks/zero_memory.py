"""Model-state memory per rank under each ZeRO configuration, measured in the ranks, vs the ZeRO-paper estimate."""

from __future__ import annotations

import json

from benchmarks.context import Context, Section, failure_line
from benchmarks.launch import deepspeed_command, launch
from benchmarks.measure import fmt, mib, ratio
from benchmarks.plots import grouped_bars


def rank_total(result: dict, key: str) -> int:
    """All devices' bytes of one measurement."""
    return sum(result[key].values())


def table(ranks: list[list[dict]]) -> tuple[list[str], list[dict]]:
    """Markdown rows (the largest rank of each configuration) and their numbers."""
    lines = [
        "| configuration | measured per rank (MiB) | estimate per rank (MiB) | measured / estimate "
        "| estimate: params + grads + optimizer + offloaded (MiB) | left after `engine.destroy()` (MiB) |",
        "| --- | ---: | ---: | ---: | --- | ---: |",
    ]
    rows = []
    for per_rank in zip(*ranks, strict=True):
        worst = max(per_rank, key=lambda r: rank_total(r, "measured_bytes"))
        estimate = worst["estimate"]
        estimated = sum(estimate.values())
        measured = rank_total(worst, "measured_bytes")
        parts = " + ".join(
            mib(estimate[k]) for k in ("parameters", "gradients", "optimizer_states", "offloaded")
        )
        row = {
            "config": worst["config"],
            "num_parameters": worst["num_parameters"],
            "measured_bytes": measured,
            "estimate_bytes": estimated,
            "ratio": ratio(measured, estimated),
            "left_over_bytes": rank_total(worst, "left_over_bytes"),
        }
        rows.append(row)
        lines.append(
            f"| {row['config']} | {mib(measured)} | {mib(estimated)} | {fmt(row['ratio'])} | {parts} "
            f"| {mib(row['left_over_bytes'])} |"
        )
    return lines, rows


def run(ctx: Context) -> Section:
    """Launch benchmarks.zero_states once for every census configuration and tabulate it."""
    budget, case = ctx.budget, ctx.budget.census_model
    out_dir = ctx.fresh_dir(f"zero states {case.name}")
    out_json = out_dir / "zero_states.json"
    configs = [arg for config in budget.census_configs for arg in ("--config", config)]
    overrides = [*ctx.common_overrides(out_dir), *case.overrides()]
    record = launch(
        "ZeRO model states",
        deepspeed_command("benchmarks.zero_states", [str(out_json), *configs, *overrides], budget.ranks),
        module="benchmarks.zero_states",
        out_dir=out_dir,
        watch={},
        env=ctx.launch_env(),
        timeout_s=budget.timeout_s,
    )
    lines = [
        f"{case.describe()}, {budget.ranks} ranks, fp32, AdamW. `benchmarks/zero_states.py` runs inside the "
        "ranks: it builds the model, prepares it with dsdet's `DeepSpeedStrategy` and trains a few steps on "
        "real batches; after each backward pass it adds up the storage bytes of every live tensor (parameters, "
        "gradients, optimizer states, DeepSpeed's flat buffers and buckets) minus what was alive before the "
        "model was built. The estimate is `dsdet.config.estimate_for_config` (`dsdet config explain`). On CPU "
        "an allocated but untouched buffer counts here although it is not resident (see peak RSS above).",
        "",
    ]
    if not record.ok or not out_json.exists():
        return Section("ZeRO model-state memory vs estimate", [*lines, failure_line(record)], [], {})
    ranks = json.loads(out_json.read_text())["ranks"]
    table_lines, rows = table(ranks)
    plot = grouped_bars(
        ctx.images_dir / "bench_zero_states.png",
        f"{case.name}: model states per rank",
        "MiB",
        [row["config"] for row in rows],
        {
            "measured": [row["measured_bytes"] / 2**20 for row in rows],
            "estimate": [row["estimate_bytes"] / 2**20 for row in rows],
        },
        log_scale=True,
    )
    lines += [f"{rows[0]['num_parameters']:,} trainable parameters.", "", *table_lines]
    return Section("ZeRO model-state memory vs estimate", lines, [plot], {"rows": rows, "ranks": ranks})
