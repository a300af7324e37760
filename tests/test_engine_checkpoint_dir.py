"""Checkpoint bookkeeping on real directories: completeness markers, truncation, resume lookup, pruning."""

from __future__ import annotations

import pytest

from dsdet.engine import checkpoint as ckpt
from dsdet.errors import DsdetError


def fake_save(root, step: int, complete: bool = True) -> ckpt.CheckpointRef:
    ref = ckpt.CheckpointRef(root, ckpt.tag_for_step(step))
    ref.path.mkdir(parents=True)
    (ref.path / "mp_rank_00_model_states.pt").write_bytes(b"x" * (100 + step))
    if complete:
        ckpt.mark_complete(ref, {"global_step": step})
    return ref


def test_latest_good_skips_incomplete_and_truncated(tmp_path):
    fake_save(tmp_path, 2)
    good = fake_save(tmp_path, 4)
    truncated = fake_save(tmp_path, 6)
    (truncated.path / "mp_rank_00_model_states.pt").write_bytes(b"x")
    fake_save(tmp_path, 8, complete=False)
    assert ckpt.latest_good(tmp_path) == good
    assert "truncated" in ckpt.problem(truncated)
    assert "incomplete" in ckpt.problem(ckpt.CheckpointRef(tmp_path, ckpt.tag_for_step(8)))


def test_find_checkpoint_specs(tmp_path):
    run = tmp_path / "run"
    ref = fake_save(ckpt.checkpoints_dir(run), 3)
    assert ckpt.find_checkpoint("auto", run) == ref
    assert ckpt.find_checkpoint(run) == ref
    assert ckpt.find_checkpoint(ckpt.checkpoints_dir(run)) == ref
    assert ckpt.find_checkpoint(ref.path) == ref
    assert ckpt.find_checkpoint("auto", tmp_path / "fresh") is None


def test_find_checkpoint_errors_name_the_path(tmp_path):
    with pytest.raises(DsdetError, match="does not exist"):
        ckpt.find_checkpoint(tmp_path / "nope")
    broken = fake_save(tmp_path / "c", 5, complete=False)
    with pytest.raises(DsdetError, match=str(broken.path)):
        ckpt.find_checkpoint(broken.path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DsdetError, match="no complete checkpoint"):
        ckpt.find_checkpoint(tmp_path / "empty")


def test_prune_keeps_last_and_protected(tmp_path):
    for step in (1, 2, 3, 4, 5):
        fake_save(tmp_path, step)
    removed = ckpt.prune(tmp_path, keep_last=2, protect={ckpt.tag_for_step(1)})
    assert removed == [ckpt.tag_for_step(2), ckpt.tag_for_step(3)]
    assert ckpt.list_tags(tmp_path) == [ckpt.tag_for_step(s) for s in (1, 4, 5)]


@pytest.mark.parametrize("tag", ["../evil", "a/b", "..", "", "-rf"])
def test_tags_cannot_escape(tag):
    with pytest.raises(DsdetError, match="not a plain name"):
        ckpt.check_tag(tag)
