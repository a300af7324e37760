"""One rank of the multi-host tests: join the group, all_reduce, a few DeepSpeed steps, then report.

    deepspeed --hostfile H --launcher pdsh tests/scripts/allreduce_ds.py --out DIR [--steps 2] [--step-seconds 0]
    deepspeed --hostfile H --module tests.scripts.allreduce_ds --out DIR [--note TEXT ...] [--report-env NAME ...]

Each rank writes DIR/rank<R>.json (rank, world size, the address ssh reached it on, all_reduce result, losses) and,
as soon as it has joined the group, DIR/rank<R>.pid so a test can kill it mid-run, and DIR/rank<R>.step (steps
done so far).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import time
from pathlib import Path

import deepspeed
import torch
import torch.distributed as dist

from dsdet.engine.distributed import discover_environment, release_shared_memory_name


def parse_args() -> argparse.Namespace:
    """Options of this script (the launcher adds --local_rank)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument(
        "--step-seconds", type=float, default=0.0, help="sleep per step, so a test can kill a rank"
    )
    parser.add_argument("--note", action="append", default=[], help="recorded as received (quoting checks)")
    parser.add_argument(
        "--report-env", action="append", default=[], metavar="NAME", help="record this variable"
    )
    parser.add_argument("--local_rank", type=int, default=0)
    return parser.parse_args()


def reached_at() -> str:
    """The address this process was reached on: the server side of the ssh connection, else the hostname."""
    connection = os.environ.get("SSH_CONNECTION", "").split()
    return connection[2] if len(connection) == 4 else socket.gethostname()


def adopt_openmpi_ranks() -> None:
    """Under mpirun, take rank, size and local rank from OpenMPI's variables (MASTER_* come from .deepspeed_env).

    DeepSpeed's own MPI discovery counts ranks per host by hostname, which is wrong when several "hosts" are
    addresses of one machine, as in these tests.
    """
    for torch_name, ompi_name in (("RANK", "RANK"), ("WORLD_SIZE", "SIZE"), ("LOCAL_RANK", "LOCAL_RANK")):
        if f"OMPI_COMM_WORLD_{ompi_name}" in os.environ:
            os.environ[torch_name] = os.environ[f"OMPI_COMM_WORLD_{ompi_name}"]


def main() -> None:
    """Run the check and write this rank's report."""
    args = parse_args()
    adopt_openmpi_ranks()
    deepspeed.init_distributed(
        dist_backend="gloo", distributed_port=int(os.environ.get("MASTER_PORT", "29500"))
    )
    release_shared_memory_name(discover_environment())  # DeepSpeed leaves its /dev/shm segment otherwise
    rank, world_size = dist.get_rank(), dist.get_world_size()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"rank{rank}.pid").write_text(str(os.getpid()))

    total = torch.tensor([float(rank + 1)])
    dist.all_reduce(total)

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    config = {"train_batch_size": world_size, "train_micro_batch_size_per_gpu": 1}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
    losses = []
    for _ in range(args.steps):
        x = torch.full((1, 4), float(rank + 1))
        loss = engine(x).pow(2).mean()
        engine.backward(loss)
        engine.step()
        losses.append(loss.item())
        (args.out / f"rank{rank}.step").write_text(str(len(losses)))
        time.sleep(args.step_seconds)

    report = {
        "rank": rank,
        "world_size": world_size,
        "local_rank": int(os.environ.get("LOCAL_RANK", "0")),
        "reached_at": reached_at(),
        "all_reduce": total.item(),
        "losses": losses,
        "weight_sum": sum(p.sum().item() for p in engine.module.parameters()),
        "notes": args.note,
        "env": {name: os.environ.get(name) for name in args.report_env},
    }
    (args.out / f"rank{rank}.json").write_text(json.dumps(report))
    dist.barrier()


if __name__ == "__main__":
    main()
