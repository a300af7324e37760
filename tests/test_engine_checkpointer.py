"""The Checkpointer on 2 real ranks: digests hashed in parallel, verification split the same way, node-local
directories each marked, pointed at and pruned by their own writer."""

from __future__ import annotations

import json

import pytest

from tests.runners import REPO, deepspeed_command, run

SCRIPT = REPO / "tests" / "scripts" / "checkpointer_ds.py"


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("checkpointer")
    run(deepspeed_command(2, SCRIPT, "--out", out), cwd=SCRIPT.parent, timeout=600)
    return json.loads((out / "report.json").read_text())


@pytest.mark.distributed
def test_the_marker_holds_every_files_digest_from_both_ranks(report):
    assert report["hashed_files"] == [
        "mp_rank_00_model_states.pt",
        "run_info.json",
        "zero_pp_rank_0_mp_rank_00_optim_states.pt",
        "zero_pp_rank_1_mp_rank_00_optim_states.pt",
    ]
    assert report["digests_match"]
    assert report["shared_tags"] == ["step00000003", "step00000004"] and report["latest"] == "step00000004"


@pytest.mark.distributed
def test_verification_is_split_and_agreed(report):
    assert report["victim"] == "zero_pp_rank_1_mp_rank_00_optim_states.pt"
    assert report["rank0_share_sees"] is None  # rank 0 alone does not hash that file...
    reason = f"file {report['victim']} is corrupted (its SHA-256 differs from the one recorded at save time)"
    assert report["verify"] == [reason, reason]  # ...rank 1 does, and both ranks agree


@pytest.mark.distributed
def test_node_local_directories_are_each_kept_by_their_own_writer(report):
    assert report["node_tags"] == [["step00000002"], ["step00000002"]]  # each pruned to keep_last=1
    assert report["node_complete"] == [None, None]
