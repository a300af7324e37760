"""Control-plane collectives work where the default group serves CUDA tensors only (NCCL on GPUs), and no
collective of dsdet's own puts a CPU tensor on the default group."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.runners import REPO, run, torchrun_command

COLLECTIVES = {
    "all_reduce",
    "all_gather",
    "all_gather_into_tensor",
    "all_gather_object",
    "all_to_all",
    "barrier",
    "broadcast",
    "broadcast_object_list",
    "gather",
    "gather_object",
    "reduce",
    "reduce_scatter",
    "reduce_scatter_tensor",
    "scatter",
    "scatter_object_list",
}
# dsdet.comm passes its gloo control group to every call; cpu_collectives runs on the CPU accelerator only.
ALLOWED = {"dsdet/comm.py", "dsdet/engine/cpu/collectives.py"}


@pytest.mark.distributed
def test_control_helpers_work_on_a_cuda_only_default_group():
    proc = run(torchrun_command(2, "-m", "tests.scripts.control_plane"), cwd=REPO, timeout=300)
    assert "rank 0: control plane ok" in proc.stdout and "rank 1: control plane ok" in proc.stdout


def distributed_calls(path: Path) -> list[tuple[int, str, bool]]:
    """(line, name, passes group=) of every torch.distributed collective called in `path`."""
    calls = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in COLLECTIVES:
            owner = ast.unparse(node.func.value)
            if owner in ("dist", "torch_dist", "torch.distributed"):
                has_group = any(k.arg == "group" for k in node.keywords)
                calls.append((node.lineno, node.func.attr, has_group))
    return calls


def test_no_collective_of_dsdet_runs_on_the_default_group():
    offenders = []
    for path in sorted((REPO / "dsdet").rglob("*.py")):
        name = str(path.relative_to(REPO))
        for line, call, has_group in distributed_calls(path):
            if name not in ALLOWED or (name == "dsdet/comm.py" and not has_group):
                offenders.append(f"{name}:{line} dist.{call}")
    assert offenders == []
    assert len(distributed_calls(REPO / "dsdet" / "comm.py")) >= 5  # the check sees comm.py's calls
