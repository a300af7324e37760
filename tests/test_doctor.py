"""`dsdet doctor`: a real run on this machine, its JSON, its exit codes, and the ops an experiment needs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsdet.config import load_experiment
from dsdet.doctor import Check, exit_code, render_text
from dsdet.doctor.ops import needed_ops
from tests.runners import REPO, dsdet

GROUPS = ["software", "accelerator", "deepspeed ops", "launchers", "model", "storage", "data"]


def test_doctor_json_on_this_machine(default_data_dir: Path, tmp_path: Path):
    proc = dsdet("doctor", "--json", f"train.output_dir={tmp_path / 'run'}", check=False)
    report = json.loads(proc.stdout)  # nothing but JSON on stdout
    checks = {check["name"]: check for check in report["checks"]}
    failed = [c for c in report["checks"] if c["status"] == "fail"]
    assert proc.returncode == 0 and report["ok"] and not failed, failed
    assert list(dict.fromkeys(c["group"] for c in report["checks"])) == GROUPS
    for name in (
        "python",
        "torch",
        "torchvision",
        "deepspeed",
        "accelerator",
        "fp32",
        "bf16",
        "fp16",
        "ninja",
    ):
        assert name in checks, name
    for name in ("fused_adam", "pdsh", "ssh", "mpirun", "sshd", "mpi4py", "yolo", "output_dir", "dataset"):
        assert name in checks, name
    assert "(matches torch 2." in checks["torchvision"]["detail"]
    assert str(tmp_path / "run") in checks["output_dir"]["detail"]
    assert checks["dataset"]["status"] == "ok" and str(default_data_dir) in checks["dataset"]["detail"]
    assert "used for" not in checks["fused_adam"]["detail"]  # CPU training uses torch's AdamW
    assert sum(report["counts"].values()) == len(report["checks"])


def test_doctor_fails_with_advice_for_what_a_run_cannot_survive(tmp_path: Path):
    missing = tmp_path / "no-such-dataset"
    proc = dsdet("doctor", "model.kwargs={no_such_argument: 1}", f"data.root={missing}", check=False)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    model = next(i for i, line in enumerate(lines) if line.lstrip().startswith("[FAIL] yolo"))
    assert "no_such_argument" in lines[model] and "->" in lines[model + 1]
    dataset = next(line for line in lines if line.lstrip().startswith("[FAIL] dataset"))
    assert str(missing) in dataset
    assert lines[-1].startswith("2 problem(s) stop a run: yolo, dataset")


def test_doctor_names_a_broken_experiment_file(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: [\n")
    proc = dsdet("doctor", str(bad), check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(f"dsdet: error: {bad}: invalid YAML at line")


@pytest.mark.parametrize(
    ("overrides", "device", "needed"),
    [
        ([], "cpu", {"deepspeed_shm_comm"}),
        (
            ["deepspeed.optimizer={type: AdamW, params: {torch_adam: false}}"],
            "cpu",
            {"fused_adam", "deepspeed_shm_comm"},
        ),
        ([], "cuda", set()),  # dsdet's AdamW is torch's fused kernel
        (["deepspeed.zero_optimization={stage: 2, offload_optimizer: {device: cpu}}"], "cuda", {"cpu_adam"}),
        (
            [
                "train.optimizer.name=sgd",
                "deepspeed.zero_optimization={stage: 2, offload_optimizer: {device: cpu}}",
            ],
            "cuda",
            set(),
        ),
        (["deepspeed.optimizer.type=AdamW"], "cuda", {"fused_adam"}),
        (["deepspeed.optimizer={type: AdamW, params: {torch_adam: true}}"], "cuda", set()),
        (["deepspeed.optimizer={type: Lamb}", "deepspeed.zero_optimization.stage=0"], "cuda", {"fused_lamb"}),
        (
            [
                "deepspeed.optimizer.type=Adam",
                "deepspeed.zero_optimization={stage: 3, offload_optimizer: {device: nvme, nvme_path: /nvme}}",
            ],
            "cuda",
            {"cpu_adam", "async_io"},
        ),
    ],
)
def test_needed_ops_follow_the_experiment(overrides, device, needed):
    assert set(needed_ops(load_experiment(None, overrides), device)) == needed


def test_needed_ops_of_the_offload_example():
    exp = load_experiment(REPO / "examples" / "zero3_offload.yaml")
    assert "cpu_adam" in needed_ops(exp, "cuda")


def test_report_verdict_and_exit_code():
    checks = [
        Check("software", "torch", "ok", "2.x"),
        Check("launchers", "pdsh", "warn", "not found", "make system-deps"),
    ]
    assert exit_code(checks) == 0
    assert render_text(checks).endswith("the basics work: dsdet can train here; 1 warning(s): pdsh\n")
    checks.append(Check("storage", "output_dir", "fail", "full", "free space"))
    assert exit_code(checks) == 1
    assert "1 problem(s) stop a run: output_dir" in render_text(checks)
    with pytest.raises(ValueError):
        Check("software", "torch", "fine", "")
