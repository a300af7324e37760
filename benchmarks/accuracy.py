"""mAP on the val split after the same budget of images: dsdet's default experiment vs the plain DDP loop
with torchvision's reference recipe."""

from __future__ import annotations

from benchmarks.context import Context, Section, failure_line
from benchmarks.measure import fmt, ratio, read_jsonl
from benchmarks.plain_ddp import REFERENCE_LR_PER_16_IMAGES
from benchmarks.plots import grouped_bars
from dsdet.config import load_experiment

METRICS = ("AP", "AP50", "AP75")


def final_metrics(rows: list[dict]) -> dict[str, float]:
    """The last evaluation of a metrics.jsonl."""
    return {key: rows[-1][key] for key in METRICS} if rows else {}


def run(ctx: Context) -> Section:
    """Train both sides for budget.accuracy_epochs epochs of the default experiment and compare COCO AP."""
    epochs = ctx.budget.accuracy_epochs
    if epochs is None:
        return Section("Accuracy at a fixed budget", [f"Not run in {ctx.budget.mode} mode."])
    overrides = [f"train.epochs={epochs}", f"eval.every_epochs={epochs}"]
    exp = load_experiment(None, overrides)
    global_batch = exp.train.batch_size * ctx.budget.ranks
    reference_lr = REFERENCE_LR_PER_16_IMAGES * global_batch / 16
    runs = {
        "dsdet default experiment": ctx.dsdet_run("accuracy dsdet", overrides),
        "plain DDP, torchvision reference recipe": ctx.plain_run(
            "accuracy plain", overrides, recipe="reference"
        ),
    }
    lines = [
        f"Model `{exp.model.name}` (the default experiment's), {epochs} epochs of the train split, batch "
        f"{exp.train.batch_size} per rank on {ctx.budget.ranks} ranks, augmentations "
        f"{[item.name for item in exp.data.augment]}, seed {exp.train.seed}; AP on the val split by "
        "`dsdet.eval.CocoEvaluator` on both sides.",
        f"- dsdet: the default experiment ({exp.train.optimizer.name} lr {exp.train.lr}, weight decay "
        f"{exp.train.weight_decay} (none on norms and biases), linear warm-up over {exp.train.warmup_ratio:.0%} "
        f"of the steps, then {exp.train.schedule.name}, ZeRO-2).",
        f"- plain DDP: torchvision's detection reference recipe: SGD momentum 0.9, lr 0.02 x {global_batch}/16 = "
        f"{reference_lr:g}, weight decay 1e-4, linear warm-up from 0.001x over the first epoch.",
        "",
        "| run | images seen | AP | AP50 | AP75 | AP ratio vs plain | wall time (s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    results, errors = {}, []
    for label, (record, out_dir) in runs.items():
        evaluations = read_jsonl(out_dir / "metrics.jsonl") if record.ok else []
        results[label] = {
            "ok": record.ok,
            "metrics": final_metrics(evaluations),
            "images": evaluations[-1]["step"] * global_batch if evaluations else None,
            "wall_s": record.wall_s,
        }
        if not record.ok:
            errors.append(failure_line(record))
    plain_ap = results["plain DDP, torchvision reference recipe"]["metrics"].get("AP")
    for label, result in results.items():
        m = result["metrics"]
        lines.append(
            f"| {label} | {fmt(result['images'], 0)} | {fmt(m.get('AP'), 4)} | {fmt(m.get('AP50'), 4)} | {fmt(m.get('AP75'), 4)} "
            f"| {fmt(ratio(m.get('AP'), plain_ap))} | {fmt(result['wall_s'], 0)} |"
        )
    plot = grouped_bars(
        ctx.images_dir / "bench_accuracy.png",
        f"{exp.model.name}: val AP after {epochs} epochs",
        "COCO metric",
        list(METRICS),
        {label: [r["metrics"].get(k) for k in METRICS] for label, r in results.items()},
    )
    return Section("Accuracy at a fixed budget", [*lines, "", *errors], [plot], results)
