"""Bad input gives one line `dsdet: error: ...` naming what to fix and exit code 2, never a traceback.

Each case is a row of the "what you do -> what you see" table in docs/troubleshooting.md."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from tests.runners import run
from tests.test_engine_train import small_run


@pytest.fixture(scope="module")
def files(mini_data_dir, tmp_path_factory) -> dict[str, Path]:
    """Broken files of every kind, plus a real one-step tinyssd checkpoint at 128 px."""
    root = tmp_path_factory.mktemp("bad")
    (root / "broken.yaml").write_text("train:\n  epochs: [3\n")
    (root / "misspelt.yaml").write_text("train:\n  epoch: 3\n")
    (root / "broken.json").write_text('{"zero_optimization": {"stage": 2},}\n')
    (root / "hostfile").write_text("node1 slots=2\nnode2 slots=two\n")
    broken_data = root / "data"
    shutil.copytree(mini_data_dir / "annotations", broken_data / "annotations")
    shutil.copytree(mini_data_dir / "images", broken_data / "images")
    first_image = json.loads((broken_data / "annotations" / "train.json").read_text())["images"][0]
    (broken_data / "images" / "train" / first_image["file_name"]).write_bytes(b"not a jpeg")
    cut_json = root / "cut_json"
    shutil.copytree(mini_data_dir / "annotations", cut_json / "annotations")
    (cut_json / "images").symlink_to(mini_data_dir / "images")
    val = cut_json / "annotations" / "val.json"
    val.write_text(val.read_text()[:500])
    run(
        [
            sys.executable,
            "-m",
            "dsdet.train",
            *small_run(mini_data_dir, root / "tinyssd", "train.max_steps=1"),
        ]
    )
    return {"root": root, "data": broken_data, "cut_json": cut_json, "run": root / "tinyssd"}


def train(files: dict[str, Path], mini_data_dir: Path, *args: str) -> list[str]:
    return ["train", *args, *small_run(mini_data_dir, files["root"] / "out")]


CASES = {
    "malformed YAML": (
        lambda f, d: ["train", str(f["root"] / "broken.yaml")],
        ["broken.yaml: invalid YAML at line 3, column 1"],
    ),
    "malformed JSON": (
        lambda f, d: ["train", "--deepspeed_config", str(f["root"] / "broken.json")],
        ["broken.json: invalid JSON at line 1, column 36"],
    ),
    "misspelt key in a file": (
        lambda f, d: ["train", str(f["root"] / "misspelt.yaml")],
        ["misspelt.yaml: train: unknown key 'epoch', did you mean 'epochs'?"],
    ),
    "misspelt override": (
        lambda f, d: ["train", "trian.epochs=3"],
        ["unknown key 'trian', did you mean 'train'?"],
    ),
    "contradicting settings": (
        lambda f, d: ["train", "deepspeed.gradient_accumulation_steps=4", "train.grad_accum_steps=2"],
        ["deepspeed.gradient_accumulation_steps is 4 but train.grad_accum_steps gives 2"],
    ),
    "fp16 without a GPU": (
        lambda f, d: train(f, d, "train.precision=fp16"),
        ["fp16 needs a GPU", "train.precision=bf16"],
    ),
    "optimizer offloaded to NVMe": (
        lambda f, d: train(
            f,
            d,
            "deepspeed.zero_optimization={stage: 3, offload_optimizer: {device: nvme, nvme_path: /tmp}}",
        ),
        ["offload_optimizer.device nvme cannot be checkpointed", "set offload_optimizer.device to cpu"],
    ),
    "parameters offloaded to NVMe on CPU": (
        lambda f, d: train(
            f, d, "deepspeed.zero_optimization={stage: 3, offload_param: {device: nvme, nvme_path: /tmp}}"
        ),
        ["offload_param.device nvme does not work on DeepSpeed's CPU accelerator"],
    ),
    "unreadable image": (
        lambda f, d: train(f, d) + [f"data.root={f['data']}"],
        ["cannot read image", "images/train/"],
    ),
    "cut-off annotation file": (
        lambda f, d: train(f, d) + [f"data.root={f['cut_json']}"],
        ["val.json line 1 column", "malformed JSON"],
    ),
    "missing checkpoint": (
        lambda f, d: train(f, d, f"train.resume={f['root'] / 'nope'}"),
        ["checkpoint", "nope does not exist"],
    ),
    "checkpoint of another model": (
        lambda f, d: train(f, d) + [f"train.resume={f['run']}", "model.kwargs={image_size: 160}"],
        ["is from another model", "'image_size': 128", "'image_size': 160", "train.resume=null"],
    ),
    "not a checkpoint": (
        lambda f, d: ["export", str(f["data"])],
        ["no complete checkpoint found in", "data"],
    ),
    "hostfile with a bad line": (
        lambda f, d: [
            "launch",
            "--hostfile",
            str(f["root"] / "hostfile"),
            "--no-ssh-check",
            "--dry-run",
            "--",
            "train",
        ],
        ["hostfile:2: slots of host 'node2' must be a positive integer, got 'two'"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_exit_code_2(case, files, mini_data_dir):
    make_args, expected = CASES[case]
    proc = run([sys.executable, "-m", "dsdet", *make_args(files, mini_data_dir)], check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("dsdet: error: ")]
    assert len(errors) == 1, output[-3000:]
    for fragment in expected:
        assert fragment in errors[0], errors[0]
