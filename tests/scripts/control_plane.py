"""Run by torchrun on 2 ranks with a default group restricted as NCCL is (CUDA tensors only, `cuda:gloo`):
every control-plane helper of dsdet.comm must still work, over its gloo group."""

from __future__ import annotations

import torch
import torch.distributed as dist

from dsdet import comm


def main() -> None:
    dist.init_process_group(backend="cuda:gloo")
    rank = dist.get_rank()
    try:  # the restriction is real: a CPU tensor on the default group raises, as on NCCL
        dist.all_reduce(torch.ones(1))
        raise AssertionError("the default group accepted a CPU tensor")
    except RuntimeError as exc:
        assert "cpu" in str(exc).lower(), exc
    assert not comm.serves_cpu() and comm.control_group() is not None
    comm.barrier()
    assert comm.any_ranks(rank == 1, False, rank == 0) == (True, False, True)
    assert comm.any_rank(rank == 0) is True
    assert comm.all_gather_object({"rank": rank}) == [{"rank": 0}, {"rank": 1}]
    gathered = comm.gather_to_main(f"from {rank}")
    assert gathered == (["from 0", "from 1"] if rank == 0 else None)
    assert comm.broadcast_object(f"path of rank {rank}", src=1) == "path of rank 1"
    assert comm.control_group() is comm.control_group()  # created once
    comm.forget_control_group()
    dist.destroy_process_group()
    print(f"rank {rank}: control plane ok", flush=True)


if __name__ == "__main__":
    main()
