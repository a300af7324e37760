"""Every file in examples/ is a valid, ready experiment: one per registered model, plus the scale-out recipes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dsdet.cli import main
from dsdet.config import load_experiment, resolve_deepspeed_config
from dsdet.models import build_model, list_models
from tests.runners import REPO

EXAMPLES = REPO / "examples"
RECIPES = ("zero2", "zero3_offload", "pipeline", "multinode", "bf16")
FILES = sorted(EXAMPLES.glob("*.yaml"))


def test_an_example_for_every_model_and_recipe():
    names = {path.stem for path in FILES}
    assert {info.name for info in list_models()} | set(RECIPES) <= names


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_example_validates_resolves_and_builds(path: Path, capsys):
    assert main(["config", "validate", str(path)]) == 0
    assert capsys.readouterr().out.strip() == f"ok: {path} is a valid experiment"
    exp = load_experiment(path)
    stages = exp.deepspeed.get("pipeline.stages")
    world_size = 2 * stages if isinstance(stages, int) else 2
    ds = resolve_deepspeed_config(exp, world_size=world_size, steps_per_epoch=10, num_parameters=1_000_000)
    assert ds["train_micro_batch_size_per_gpu"] == exp.train.batch_size
    with torch.device("meta"):  # the model with the example's arguments, without memory or init cost
        build_model(exp.model.name, 6, norm=exp.model.norm, **exp.model.kwargs)
    run_lines = [line for line in path.read_text().splitlines() if line.startswith("# run:")]
    assert run_lines and f"examples/{path.name}" in run_lines[0], "the first '# run:' line launches this file"


def test_recipes_set_what_their_names_say():
    ds = {
        name: load_experiment(EXAMPLES / f"{name}.yaml").deepspeed
        for name in ("zero2", "zero3_offload", "pipeline")
    }
    assert ds["zero2"].zero_stage == 2
    zero3 = ds["zero3_offload"]
    assert (
        zero3.zero_stage == 3
        and zero3.offload_device("offload_param") == "cpu"
        and zero3.offload_device("offload_optimizer") == "cpu"
    )
    assert ds["pipeline"].get("pipeline.stages") == 2 and ds["pipeline"].zero_stage <= 1
    assert load_experiment(EXAMPLES / "bf16.yaml").train.precision == "bf16"
    assert "--hostfile" in (EXAMPLES / "multinode.yaml").read_text()
