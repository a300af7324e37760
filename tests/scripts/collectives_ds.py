"""One rank of tests/test_engine_cpu_collectives.py, under `deepspeed --num_gpus 2 --module tests.scripts.collectives_ds`.

compare OUT   run every kind of collective through dsdet's routing and through gloo; write the findings to
              OUT/rank<R>.json
die OUT       rank 1 exits abruptly while rank 0 waits for it in a shared-memory all-reduce
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import deepspeed.comm as ds_comm
import torch
import torch.distributed as dist

from dsdet.engine.cpu import collectives as cpu_collectives
from dsdet.engine.distributed import init_distributed
from dsdet.engine.rank_failures import name_lost_ranks


def identical(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit for bit (so -0.0 differs from 0.0), except that any NaN equals any NaN: the kernel writes bf16 and
    fp16 NaNs with another payload."""
    nan = a.isnan()
    if not torch.equal(nan, b.isnan()):
        return False
    return torch.equal(a[~nan].view(torch.uint8), b[~nan].view(torch.uint8))


def awkward_values(numel: int, dtype: torch.dtype, rank: int) -> torch.Tensor:
    """Random values with signed zeros, infinities and NaNs sprinkled in."""
    values = torch.randn(numel, generator=torch.Generator().manual_seed(rank)).to(dtype)
    values[::7] = -0.0
    values[3::11] = 0.0
    if rank == 0:
        values[5] = float("inf")
        values[6] = float("nan")
    return values


def compare(out: Path, rank: int, world: int) -> None:
    backend = ds_comm.comm.cdb
    found: dict[str, object] = {
        "backend": type(backend).__name__,
        "kernel_dtypes": [str(dtype).removeprefix("torch.") for dtype in backend.dtypes],
    }
    cpu_collectives.MAX_CHUNK_BYTES = 4096  # many chunks per call
    for dtype in cpu_collectives.KERNEL_DTYPES:
        name = str(dtype).removeprefix("torch.")
        x = awkward_values(10_007, dtype, rank)
        expected, routed = x.clone(), x.clone()
        dist.all_reduce(expected)
        ds_comm.all_reduce(routed)
        found[f"all_reduce {name}"] = identical(expected, routed)

        part = x[:5_003].clone()
        expected = torch.empty(5_003 * world, dtype=dtype)
        dist.all_gather_into_tensor(expected, part)
        routed = torch.full_like(expected, 7.0)  # stale contents must not leak through
        ds_comm.all_gather_into_tensor(routed, part)
        found[f"all_gather {name}"] = identical(expected, routed)

        in_place = torch.full_like(expected, 7.0)  # ZeRO's way: the input is this rank's slot of the output
        own = in_place.narrow(0, rank * 5_003, 5_003)
        own.copy_(part)
        ds_comm.all_gather_into_tensor(in_place, own)
        found[f"all_gather in place {name}"] = identical(expected, in_place)

    calls = backend.kernel_calls
    # not the kernel's: another op, an integer tensor, an asynchronous call, a subgroup
    maximum = torch.tensor([float(rank)])
    ds_comm.all_reduce(maximum, op=ds_comm.ReduceOp.MAX)
    integers = torch.tensor([rank + 1])
    ds_comm.all_reduce(integers)
    pending = torch.ones(4)
    ds_comm.all_reduce(pending, async_op=True).wait()
    alone, first_rank_only = torch.ones(3), dist.new_group([0])
    if rank == 0:
        ds_comm.all_reduce(alone, group=first_rank_only)
    found["fallbacks"] = [maximum.item(), integers.item(), pending.tolist(), alone.tolist()]
    found["kernel_calls"] = calls
    found["kernel_calls_after_fallbacks"] = backend.kernel_calls
    (out / f"rank{rank}.json").write_text(json.dumps(found))


def die(rank: int, env) -> None:
    # As dsdet's trainer does, defer the launcher's SIGTERM (which follows rank 1's exit within a second), so
    # that the watchdog, not the signal, ends rank 0.
    signal.signal(signal.SIGTERM, lambda *_: None)
    with name_lost_ranks(env):
        if rank == 1:
            time.sleep(2)  # rank 0 is in the kernel by now
            os._exit(3)
        ds_comm.all_reduce(torch.ones(1024))
    print("rank 0 left the all-reduce", flush=True)  # it cannot: rank 1 never joined


def main() -> None:
    mode, out = (arg for arg in sys.argv[1:] if not arg.startswith("--local_rank"))
    out = Path(out)
    env = init_distributed()
    print(cpu_collectives.choose_collectives("shared_memory", env.world_size), flush=True)
    if mode == "compare":
        compare(out, env.rank, env.world_size)
    else:
        die(env.rank, env)
    dist.barrier()


if __name__ == "__main__":
    main()
