"""Pipelined detectors on real DeepSpeed ranks (CPU, gloo): PipelineEngine.train_batch against the plain model.

Each test launches tests/scripts/pipeline_ds.py under the deepspeed launcher and reads the ranks' JSON reports.
"""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import pytest

from tests.runners import REPO, deepspeed_command, run

pytestmark = pytest.mark.distributed

SCRIPT = REPO / "tests" / "scripts" / "pipeline_ds.py"
TOLERANCE = 1e-4  # relative


def launch(out: Path, ranks: int, *args: str) -> list[dict]:
    """Run the script on `ranks` ranks; each rank's report, by rank."""
    cmd = deepspeed_command(ranks, SCRIPT, "--out", out, *args)
    run(cmd, cwd=REPO, env={"OMP_NUM_THREADS": "1"}, timeout=400)
    return [json.loads((out / f"rank{rank}.json").read_text()) for rank in range(ranks)]


def relative(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def check_against_plain(result: dict) -> None:
    """Rank 0's comparison: same first loss and same weight update as the plain model, then a falling loss."""
    losses = result["losses"]
    assert relative(losses[0], result["plain_loss"]) <= TOLERANCE, (losses[0], result["plain_loss"])
    assert result["update_error"] <= TOLERANCE
    assert all(later < earlier for earlier, later in pairwise(losses)), losses


@pytest.mark.parametrize("family", ["ssd", "rcnn"])
def test_two_stages_match_the_plain_model_with_and_without_activation_checkpointing(family, tmp_path):
    reports = launch(tmp_path, 2, "--family", family, "--intervals", "0,2", "--steps", "3", "--save")

    plain_run, checkpointed = (result for result in reports[0]["results"])
    for result in (plain_run, checkpointed):
        check_against_plain(result)
        assert result["export_max_diff"] == 0.0  # the checkpoint exports to a strict torchvision state dict
    for earlier, later in zip(plain_run["losses"], checkpointed["losses"], strict=True):
        assert relative(later, earlier) <= TOLERANCE
    # stage 0's first layer runs again in backward only when its activations are checkpointed
    assert (plain_run["first_layer_calls"], checkpointed["first_layer_calls"]) == (1, 2)

    assert [report["results"][0]["stage"] for report in reports] == [0, 1]
    for report in reports:
        for mine, rank0 in zip(report["results"], reports[0]["results"], strict=True):
            assert mine["losses"] == rank0["losses"] and mine["gathered_keys_match"]
            assert mine["state_sum"] == rank0["state_sum"]


@pytest.mark.parametrize(("family", "partition"), [("ssd", "parameters"), ("rcnn", "uniform")])
def test_two_stages_by_two_data_parallel_replicas_with_zero_1(family, partition, tmp_path):
    args = (
        "--family",
        family,
        "--partition",
        partition,
        "--zero",
        "1",
        "--micro-batches",
        "2",
        "--steps",
        "3",
    )
    results = [report["results"][0] for report in launch(tmp_path, 4, *args)]

    check_against_plain(results[0])
    assert sorted((r["stage"], r["dp_rank"]) for r in results) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert all(
        r["losses"] == results[0]["losses"] and r["state_sum"] == results[0]["state_sum"] for r in results
    )
    for stage in (0, 1):  # replicas of a stage hold the same weights after their all-reduced steps
        sums = {r["local_parameter_sum"] for r in results if r["stage"] == stage}
        assert len(sums) == 1
