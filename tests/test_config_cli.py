"""`dsdet config` as users run it: real subprocesses, exit codes, one-line errors, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsdet.config import PRESETS
from tests import runners


def dsdet(*args: object):
    """`python -m dsdet config ARGS`, whatever its exit code."""
    return runners.dsdet("config", *map(str, args), check=False, timeout=120)


def test_generate_prints_auto_config_and_writes_files(tmp_path):
    out = dsdet("generate", "--preset", "zero3_offload", "--bf16")
    assert out.returncode == 0, out.stderr
    config = json.loads(out.stdout)
    assert config["train_batch_size"] == "auto" and config["bf16"] == {"enabled": False}
    assert config["torch_autocast"] == {"enabled": True, "dtype": "bfloat16"}
    assert config["zero_optimization"]["offload_param"]["device"] == "cpu"

    target = tmp_path / "ds.json"
    written = dsdet("generate", "--zero-stage", "1", "--optimizer", "SGD", "--lr", "0.1", "-o", target)
    assert written.returncode == 0 and written.stdout == ""
    assert json.loads(target.read_text())["optimizer"]["params"]["lr"] == 0.1


def test_generate_with_world_size_resolves_every_auto():
    out = dsdet(
        "generate",
        "--preset",
        "zero3",
        "--scheduler",
        "WarmupLR",
        "--fp16",
        "--micro-batch",
        "8",
        "--grad-accum",
        "2",
        "--world-size",
        "4",
        "--steps-per-epoch",
        "100",
        "--num-params",
        "40000000",
    )
    assert out.returncode == 0, out.stderr
    config = json.loads(out.stdout)
    assert '"auto"' not in out.stdout
    assert (
        config["train_batch_size"],
        config["train_micro_batch_size_per_gpu"],
        config["gradient_accumulation_steps"],
    ) == (64, 8, 2)
    assert config["fp16"]["enabled"] is True and config["bf16"]["enabled"] is False
    # default 12 epochs x ceil(100 / 2) = 600 steps, 10% warm-up
    assert config["scheduler"]["params"]["warmup_num_steps"] == 60
    assert config["zero_optimization"]["reduce_bucket_size"] == 10_002_432  # 40e6 / 4, aligned to 4096


def test_validate_ok_for_both_kinds(tmp_path):
    experiment = tmp_path / "exp.yaml"
    experiment.write_text("train: {epochs: 1}\ndeepspeed: {zero_optimization: {stage: 3}}\n")
    ok = dsdet("validate", experiment)
    assert ok.returncode == 0 and ok.stdout.startswith("ok: ") and "experiment" in ok.stdout
    preset = Path(__file__).resolve().parents[1] / "ds_configs" / "seed_example.json"
    assert dsdet("validate", preset).stdout.startswith("ok: ")


def test_validate_prints_one_line_per_problem(tmp_path):
    bad = tmp_path / "ds.json"
    bad.write_text(
        json.dumps({"train_batch_size": 0, "zero_optimisation": {"stage": 3}, "fp16": {"enabled": "maybe"}})
    )
    out = dsdet("validate", bad)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip().splitlines() == [
        f"dsdet: error: {bad}: train_batch_size: must be a positive integer or 'auto' (got 0)",
        f"dsdet: error: {bad}: fp16.enabled: Input should be a valid boolean, unable to interpret input (got 'maybe')",
        f"dsdet: error: {bad}: zero_optimisation: unknown key 'zero_optimisation', did you mean 'zero_optimization'?",
    ]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(bytes(range(256)) * 4), "not a text file"),
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: None, "no such file"),
        (lambda p: p.write_text('{"train_batch_size": 8,,}'), "invalid JSON at line 1"),
        (lambda p: p.write_text("[1, 2]"), "expected a mapping"),
    ],
)
def test_validate_never_shows_a_traceback(tmp_path, make, message):
    target = tmp_path / "config.json"
    make(target)
    out = dsdet("validate", target)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_schema_for_editors(tmp_path):
    target = tmp_path / "schema.json"
    assert dsdet("schema", "-o", target).returncode == 0
    schema = json.loads(target.read_text())
    assert set(schema["properties"]) == {"model", "data", "train", "eval", "deepspeed"}
    deepspeed = json.loads(dsdet("schema", "--kind", "deepspeed").stdout)
    assert "zero_optimization" in deepspeed["properties"] and deepspeed["additionalProperties"] is True
    assert "stage" in deepspeed["properties"]["zero_optimization"]["properties"]  # DeepSpeed's own model


def test_explain_summarizes_and_estimates_memory(tmp_path):
    preset = Path(__file__).resolve().parents[1] / "ds_configs" / "zero2_offload.json"
    out = dsdet("explain", preset, "--world-size", "4", "--num-params", "1000000")
    assert out.returncode == 0, out.stderr
    assert (
        "ZeRO stage 2: partitions optimizer states and gradients across 4 data-parallel rank(s)" in out.stdout
    )
    assert "offload: optimizer states and step -> cpu" in out.stdout
    assert "model states per rank (1,000,000 parameters (precision 'auto' counted as fp32))" in out.stdout

    experiment = tmp_path / "exp.yaml"
    experiment.write_text("train: {batch_size: 2, grad_accum_steps: 3, precision: bf16}\n")
    out = dsdet("explain", experiment, "--world-size", "2", "--num-params", "1000000")
    assert out.returncode == 0, out.stderr
    assert "precision: bfloat16 autocast, fp32 master weights" in out.stdout
    assert "batch: train_batch_size 12 = micro batch 2 x accumulation 3 x 2 rank(s)" in out.stdout
    # bf16 autocast keeps fp32 weights: ZeRO-2 over 2 ranks: weights 4 MB, gradients 4 MB / 2, and 12 MB / 2
    # of Adam states (fp32 weight partition, momentum, variance)
    assert "parameters 3.8 MiB, gradients 1.9 MiB, optimizer states 5.7 MiB" in out.stdout
    assert "optimizer: adamw built by dsdet (train.optimizer) lr=0.002, weight_decay=0.0001" in out.stdout
    assert "scheduler: cosine built by dsdet (train.schedule): linear warm-up from 0.001 x lr" in out.stdout

    experiment.write_text("train: {optimizer: {name: sgd}, schedule: {name: multistep, gamma: 0.5}}\n")
    out = dsdet("explain", experiment, "--world-size", "2", "--num-params", "1000000")
    assert "momentum=0.9, nesterov=false" in out.stdout and "then x0.5 at [0.67, 0.89] of the steps" in out.stdout
    assert "optimizer states 3.8 MiB" in out.stdout  # SGD: one momentum buffer and the fp32 partition, / 2


def test_list_presets_and_bad_arguments():
    out = dsdet("list-presets")
    assert [line.split()[0] for line in out.stdout.splitlines()] == list(PRESETS)
    bad = dsdet("generate", "--world-size", "0")
    assert (
        bad.returncode == 2 and "expected a positive integer" in bad.stderr and "Traceback" not in bad.stderr
    )
    unknown = dsdet("generate", "--preset", "zero33")
    assert unknown.returncode == 2 and unknown.stderr.strip() == (
        "dsdet: error: unknown preset 'zero33', did you mean 'zero3'? (one of " + ", ".join(PRESETS) + ")"
    )
