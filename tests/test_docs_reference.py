"""docs/configuration.md is generated from the schemas and cannot drift from them."""

from __future__ import annotations

from pathlib import Path

from dsdet.config import ExperimentConfig
from dsdet.config.ds_keys import known_keys
from dsdet.config.reference import emitted_deepspeed_keys, reference_markdown
from tests.runners import REPO, dsdet

REFERENCE = REPO / "docs" / "configuration.md"


def test_configuration_reference_matches_the_schemas():
    assert REFERENCE.read_text() == reference_markdown(), (
        "docs/configuration.md is out of date: run `dsdet config reference -o docs/configuration.md`"
    )


def test_cli_writes_the_reference(tmp_path: Path):
    out = tmp_path / "configuration.md"
    dsdet("config", "reference", "-o", str(out))
    assert out.read_text() == REFERENCE.read_text()


def _leaves(data: dict, prefix: str) -> list[str]:
    keys = []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            keys += _leaves(value, f"{prefix}{key}.")
        else:
            keys.append(f"{prefix}{key}")
    return keys


def test_every_key_has_a_row():
    text = reference_markdown()
    sections = ExperimentConfig().model_dump(mode="json")
    sections.pop("deepspeed")
    expected = _leaves(sections, "") + [f"deepspeed.{name}" for name in known_keys()[""]]
    missing = [key for key in expected if f"`{key}`" not in text and f"`{key}." not in text]
    # a tagged section's `name` is documented by one heading per choice (`train.optimizer` with `name: sgd`)
    assert [
        key for key in missing if not (key.endswith(".name") and f"`{key[:-5]}` with `name: " in text)
    ] == []


def test_emitted_keys_are_measured_from_resolution():
    emitted = emitted_deepspeed_keys()
    assert emitted["train.batch_size"] == ["train_batch_size", "train_micro_batch_size_per_gpu"]
    assert {"optimizer.params.lr", "scheduler.params.warmup_max_lr"} <= set(emitted["train.lr"])
    assert {"fp16.enabled", "torch_autocast.enabled"} == set(emitted["train.precision"])
    assert "scheduler.params.total_num_steps" in emitted["train.epochs"]
    assert "train.seed" not in emitted and "data.num_workers" not in emitted
    row = next(
        line for line in reference_markdown().splitlines() if line.startswith("| `train.weight_decay`")
    )
    assert row.endswith("| `optimizer.params.weight_decay` |")
