"""One rank of the Checkpointer tests: saves on every rank, digests hashed in parallel, node-local directories.

    deepspeed --num_gpus 2 tests/scripts/checkpointer_ds.py --out DIR

A stand-in for the strategy writes DeepSpeed-like files (each rank its own optimizer-state file, rank 0 the model
states). Shared: both ranks save steps 1-4 into DIR/shared with keep_last=2, then a file in rank 1's share of the
digests is corrupted and both ranks verify. Node-local: each rank saves into DIR/node<R> as the only rank of
its "node". Rank 0 writes DIR/report.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from dsdet.comm import all_gather_object, barrier
from dsdet.engine.checkpoint import Checkpointer, CheckpointRef, Storage, file_digest, list_tags, problem
from dsdet.engine.distributed import init_distributed


class FilesStrategy:
    """Writes what DeepSpeed's save would, in size and ownership."""

    def __init__(self, rank: int):
        self.rank = rank
        self.global_step = 0

    def save(self, ref: CheckpointRef, client_state: dict) -> None:
        ref.path.mkdir(parents=True, exist_ok=True)
        generator = torch.Generator().manual_seed(self.global_step * 10 + self.rank)
        torch.save(
            torch.rand(50_000, generator=generator),
            ref.path / f"zero_pp_rank_{self.rank}_mp_rank_00_optim_states.pt",
        )
        if self.rank == 0:
            torch.save({"client": client_state}, ref.path / "mp_rank_00_model_states.pt")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--local_rank", type=int, default=0)
    args = parser.parse_args()
    env = init_distributed()
    strategy = FilesStrategy(env.rank)
    report: dict = {}

    shared = Checkpointer(
        args.out / "shared", Storage.of(env, node_local=False), keep_last=2, run_info={"run": 1}
    )
    for step in range(1, 5):
        strategy.global_step = step
        ref = shared.save(strategy, {"epoch": 0, "step": step}, {"rank": env.rank}, protect=set())
    report["shared_tags"] = list_tags(shared.root)
    report["latest"] = (shared.root / "latest").read_text()
    marker = ref.info()
    report["digests_match"] = all(file_digest(ref.path / n) == d for n, d in marker["sha256"].items())
    report["hashed_files"] = sorted(marker["sha256"])
    names = sorted(marker["sha256"])
    victim = max(names[1::2], key=lambda name: (ref.path / name).stat().st_size)  # in rank 1's share
    barrier()
    if env.rank == 0:
        with (ref.path / victim).open("r+b") as f:
            f.seek(100)
            f.write(b"\xff\xfe\xfd")
    barrier()
    report["victim"] = victim
    report["rank0_share_sees"] = problem(ref, share=(0, 2))
    report["verify"] = all_gather_object(shared.verify(ref))

    own = Checkpointer(
        args.out / f"node{env.rank}", Storage(key=env.rank, index=0, size=1), keep_last=1, run_info={}
    )
    for step in range(1, 3):
        strategy.global_step = step
        own.save(strategy, {"epoch": 0}, {"rank": env.rank}, protect=set())
    report["node_tags"] = all_gather_object(list_tags(own.root))
    report["node_complete"] = all_gather_object(problem(CheckpointRef(own.root, list_tags(own.root)[-1])))
    if env.is_main:
        (args.out / "report.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main()
