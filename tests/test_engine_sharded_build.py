"""ZeRO-3 builds detectors partitioned from construction, with the same initial weights as a plain build."""

from __future__ import annotations

import json

import pytest
import torch

from dsdet.models import build_model, list_models
from tests.runners import REPO, deepspeed_command, run

SCRIPT = REPO / "tests" / "scripts" / "sharded_build_ds.py"


@pytest.fixture(scope="module")
def builds(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("sharded")
    torch.manual_seed(5)
    trained = build_model("tinyssd", 3, image_size=128)
    with torch.no_grad():  # weights unlike any initialisation, so loading them shows
        for param in trained.parameters():
            param.add_(torch.randn_like(param))
    torch.save(trained.state_dict(), out / "weights.pt")
    run(
        deepspeed_command(2, SCRIPT, "--out", out, "--weights", out / "weights.pt"),
        cwd=SCRIPT.parent,
        timeout=900,
    )
    return json.loads((out / "builds.json").read_text())


@pytest.mark.distributed
@pytest.mark.parametrize("name", [info.name for info in list_models()] + ["tinyssd+weights+frozen_batchnorm"])
def test_partitioned_build_has_the_plain_builds_initial_weights(builds, name):
    build = builds[name]
    assert build["differing"] == [], (name, build["differing"][:5], build["largest"])
    assert build["local"] <= build["total"] // 2 + 100_000, build  # each of the 2 ranks held about half


@pytest.mark.distributed
def test_without_whole_tensor_initialisation_the_weights_differ(builds):
    control = builds["control: yolo under plain zero.Init"]
    assert control["differing"], "the comparison cannot tell a lost initialisation"


def test_every_model_that_cannot_build_partitioned_says_why_in_one_line():
    reasons = {info.name: info.whole_build_reason for info in list_models() if info.whole_build_reason}
    assert set(reasons) == {"ssdlite320_mobilenet_v3_large"}
    assert all("\n" not in reason for reason in reasons.values())
