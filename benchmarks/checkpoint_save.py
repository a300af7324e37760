"""Checkpoint save and verify time: dsdet's Checkpointer (every rank hashes a share of the files) against the
previous scheme (rank 0 hashes every file while the other ranks wait), on the largest model of the zoo.

Report side: `run(ctx)` launches this module on the ranks. Rank side (`main`): the model is built and prepared
with dsdet's strategy and optimizer and takes one step (so the optimizer states exist); then, in turns, each
scheme saves the same state `repeats` times and verifies it once. The previous scheme is the same layout calls
the Checkpointer makes, with every digest computed by rank 0 (`mark_complete` without digests, `problem` over all
files), as dsdet did before the Checkpointer.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from benchmarks.context import Context, Section, failure_line
from benchmarks.launch import deepspeed_command, launch
from benchmarks.measure import fmt, ratio
from dsdet.comm import all_gather_object, barrier
from dsdet.config import load_experiment, resolve_deepspeed_config
from dsdet.engine.checkpoint import Checkpointer, CheckpointRef, Storage, list_tags, problem
from dsdet.engine.checkpoint.layout import (
    RUN_INFO,
    begin_save,
    mark_complete,
    point_latest_at,
    prune,
    tag_for_step,
)
from dsdet.engine.data import build_data
from dsdet.engine.distributed import init_distributed
from dsdet.engine.run import build_optimizer, count_parameters, model_spec
from dsdet.engine.strategy import DeepSpeedStrategy

TITLE = "Checkpoint save and verify time"


def save_rank0_hashes(
    strategy: DeepSpeedStrategy, root: Path, client_state: dict, run_info: dict
) -> CheckpointRef:
    """The previous scheme: DeepSpeed saves on every rank; rank 0 alone hashes every file and marks it."""
    ref = CheckpointRef(root, tag_for_step(strategy.global_step))
    if strategy.is_main:
        begin_save(ref)
    barrier()
    strategy.save(ref, client_state)
    barrier()
    if strategy.is_main:
        (ref.path / RUN_INFO).write_text(json.dumps(run_info))
        mark_complete(ref, {"global_step": strategy.global_step})
        point_latest_at(ref)
        prune(root, 1, set())
    barrier()
    return ref


def timed(fn) -> float:
    """Seconds `fn` takes on the slowest rank (every rank waits for the save to end)."""
    barrier()
    start = time.perf_counter()
    fn()
    return max(all_gather_object(time.perf_counter() - start))


def main(argv: list[str] | None = None) -> int:
    """Time both schemes on this rank; rank 0 writes the seconds to OUT."""
    parser = argparse.ArgumentParser(prog="deepspeed --module benchmarks.checkpoint_save")
    parser.add_argument("out", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--local_rank", type=int, help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args(argv)
    env = init_distributed()
    exp = load_experiment(None, args.overrides)
    data = build_data(exp, env.world_size, env.rank)
    spec = model_spec(exp, data.num_classes)
    ds_config = resolve_deepspeed_config(
        exp,
        world_size=env.world_size,
        steps_per_epoch=len(data.train_loader),
        num_parameters=count_parameters(spec),
    )
    strategy = DeepSpeedStrategy(ds_config)
    strategy.prepare(strategy.build(spec), build_optimizer(exp, strategy.ds_config, len(data.train_loader)))
    strategy.train_step([next(iter(data.train_loader))], stop=False)
    run_info = {"model": exp.model.name}
    client = {"epoch": 0}
    work = Path(exp.train.output_dir)
    checkpointer = Checkpointer(work / "checkpointer", Storage.of(env, False), keep_last=1, run_info=run_info)
    seconds: dict[str, list[float]] = {"rank 0 hashes every file": [], "Checkpointer (each rank a share)": []}
    for _ in range(args.repeats):  # in turns, so that a change of the machine's load hits both alike
        seconds["rank 0 hashes every file"].append(
            timed(lambda: save_rank0_hashes(strategy, work / "rank0", {"trainer": client}, run_info))
        )
        seconds["Checkpointer (each rank a share)"].append(
            timed(lambda: checkpointer.save(strategy, client, {"rank": env.rank}, protect=set()))
        )
    old = CheckpointRef(work / "rank0", list_tags(work / "rank0")[-1])
    new = CheckpointRef(checkpointer.root, list_tags(checkpointer.root)[-1])
    verify = {
        "rank 0 hashes every file": timed(lambda: problem(old) if env.is_main else None),
        "Checkpointer (each rank a share)": timed(lambda: checkpointer.verify(new)),
    }
    size = sum(p.stat().st_size for p in new.path.rglob("*") if p.is_file())
    if env.is_main:
        parameters = sum(p.numel() for p in strategy.module.parameters())
        result = {"seconds": seconds, "verify": verify, "bytes": size, "parameters": parameters}
        args.out.write_text(json.dumps({"world_size": env.world_size, **result}, indent=1))
    torch.distributed.barrier()
    return 0


def run(ctx: Context) -> Section:
    """Launch the rank side on the budget's checkpoint model and tabulate both schemes."""
    budget, case = ctx.budget, ctx.budget.checkpoint_model
    out_dir = ctx.fresh_dir(f"checkpoint save {case.name}")
    out_json = out_dir / "checkpoint_save.json"
    overrides = [*ctx.common_overrides(out_dir), *case.overrides()]
    args = [str(out_json), "--repeats", str(budget.checkpoint_repeats), *overrides]
    record = launch(
        TITLE,
        deepspeed_command("benchmarks.checkpoint_save", args, budget.ranks),
        module="benchmarks.checkpoint_save",
        out_dir=out_dir,
        watch={},
        env=ctx.launch_env(),
        timeout_s=budget.timeout_s,
    )
    lines = [
        f"{case.describe()}, {budget.ranks} ranks, ZeRO-2, fp32, AdamW after one training step. Each scheme "
        f"saves the same state {budget.checkpoint_repeats} times, in turns; a save is timed on every rank from "
        "the barrier before it to its end and the slowest rank counts (the ranks wait for each other). "
        "'rank 0 hashes every file' is the scheme before the Checkpointer: DeepSpeed saves, then rank 0 alone "
        "computes every file's SHA-256 for the completion marker while the other ranks wait, and verifies the "
        "same way on resume. The Checkpointer has every rank hash an equal share and gathers the digests.",
        "",
    ]
    if not record.ok or not out_json.exists():
        return Section(TITLE, [*lines, failure_line(record)], [], {})
    result = json.loads(out_json.read_text())
    baseline = "rank 0 hashes every file"
    base_save = statistics.median(result["seconds"][baseline])
    lines += [
        f"Checkpoint size: {result['bytes'] / 2**20:.0f} MiB ({result['parameters']:,} parameters).",
        "",
        "| scheme | save (s, median) | save time vs rank 0 hashing | verify on resume (s) | verify time vs rank 0 "
        "hashing |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for scheme, times in result["seconds"].items():
        save = statistics.median(times)
        verify = result["verify"][scheme]
        lines.append(
            f"| {scheme} | {fmt(save)} | {fmt(ratio(save, base_save))} | {fmt(verify)} "
            f"| {fmt(ratio(verify, result['verify'][baseline]))} |"
        )
    return Section(TITLE, lines, [], result)


if __name__ == "__main__":
    sys.exit(main())
