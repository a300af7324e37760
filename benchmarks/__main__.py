"""`python -m benchmarks [--smoke] [--only NAME ...]`: run the benchmarks and write docs/BENCHMARKS.md."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.context import Context, Section
from benchmarks.launch import REPO
from benchmarks.report import command_line, load_average, with_previous, write_report
from benchmarks.settings import FULL, SMOKE
from dsdet.errors import DsdetError

# name -> module with `run(ctx) -> Section`, in the order they run and appear in the report.
BENCHMARKS = {
    "throughput": "benchmarks.throughput",
    "zero_memory": "benchmarks.zero_memory",
    "eval_time": "benchmarks.eval_time",
    "checkpointing": "benchmarks.checkpointing",
    "checkpoint_save": "benchmarks.checkpoint_save",
    "accuracy": "benchmarks.accuracy",
}


def build_parser() -> argparse.ArgumentParser:
    """Options of the suite."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split(":", 1)[1].strip()
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny budget that only checks the suite runs (CI)"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=list(BENCHMARKS),
        metavar="NAME",
        help=f"run only this benchmark; repeat for several ({', '.join(BENCHMARKS)})",
    )
    parser.add_argument(
        "--report", type=Path, default=REPO / "docs" / "BENCHMARKS.md", help="markdown to write"
    )
    parser.add_argument(
        "--images-dir", type=Path, help="where the PNG plots go (default: <report dir>/images)"
    )
    parser.add_argument(
        "--work-dir", type=Path, default=REPO / "runs" / "benchmarks", help="scratch run folders"
    )
    parser.add_argument(
        "--data-root", type=Path, help="COCO dataset root (default: the embedded default dataset)"
    )
    return parser


def prepare(ctx: Context) -> list[str]:
    """Things no benchmark should time: the default dataset and DeepSpeed's JIT-built CPU Adam (offload)."""
    from dsdet.data import prepare_default_dataset

    notes = []
    if ctx.data_root is None:
        prepare_default_dataset()
    else:
        for split in ("train", "val"):
            for needed in (ctx.data_root / "images" / split, ctx.data_root / "annotations" / f"{split}.json"):
                if not needed.exists():
                    raise DsdetError(
                        f"--data-root {ctx.data_root}: {needed} not found (a COCO root as in docs/CONTRACTS.md)"
                    )
    if "ZeRO-2 + offload" in ctx.budget.zero_configs:
        from deepspeed.accelerator import get_accelerator

        start = time.perf_counter()
        get_accelerator().create_op_builder("CPUAdamBuilder").load(verbose=False)
        notes.append(
            f"DeepSpeed's CPU Adam op (ZeRO-Offload) was loaded before timing: {time.perf_counter() - start:.0f} s "
            "(a first JIT build takes about 1.5 min on this machine; later runs use the cached build)."
        )
    return notes


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks in order and write the report."""
    args = build_parser().parse_args(argv)
    budget = SMOKE if args.smoke else FULL
    report = args.report.resolve()
    ctx = Context(
        budget=budget,
        work_dir=args.work_dir.resolve(),
        images_dir=(args.images_dir or report.parent / "images").resolve(),
        data_root=args.data_root.resolve() if args.data_root else None,
    )
    started, load_at_start = datetime.now(timezone.utc), load_average()
    try:
        notes = prepare(ctx)
    except DsdetError as exc:
        print(f"benchmarks: error: {exc}", file=sys.stderr)
        return 2
    sections = (
        [Section("Setup", [f"- {note}" for note in notes] or ["- nothing to prepare"])] if notes else []
    )
    for name in [name for name in BENCHMARKS if not args.only or name in args.only]:
        print(f"[benchmarks] {name} ...", flush=True)
        section = importlib.import_module(BENCHMARKS[name]).run(ctx)
        sections.append(section)
        print(f"[benchmarks] {name} done", flush=True)
    if args.only:  # the benchmarks not re-run keep their sections of the previous report
        sections = with_previous(report, sections)
    write_report(report, budget.mode, sections, started, load_at_start, command_line())
    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    raw = {section.title: section.results for section in sections}
    (ctx.work_dir / "results.json").write_text(json.dumps(raw, indent=1, default=str))
    print(f"[benchmarks] wrote {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
