"""scripts/gpu_smoke.py (the GPU smoke check, run by hand on a GPU machine): its --help works anywhere, it
refuses a machine without a GPU in one line, and the commands it builds for a case are the ones users type."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from tests.runners import REPO

SCRIPT = REPO / "scripts" / "gpu_smoke.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("gpu_smoke", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


gpu_smoke = _load_script()


def _run_script(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )


def test_help_works_and_names_the_options(tmp_path: Path):
    proc = _run_script("--help", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage:")
    for option in ("--out", "--cases", "--steps", "--timeout"):
        assert option in proc.stdout


def test_refuses_a_machine_without_a_gpu(tmp_path: Path):
    import torch

    proc = _run_script("--out", str(tmp_path / "smoke"), tmp_path=tmp_path)
    if torch.cuda.is_available():
        return  # a GPU machine would start the real check: that is not this test's business
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1
    assert "needs a GPU" in proc.stderr
    assert not (tmp_path / "smoke").exists()


def test_cases_are_every_zero_stage_and_precision():
    assert gpu_smoke.CASES == [
        "zero0-fp16",
        "zero0-bf16",
        "zero2-fp16",
        "zero2-bf16",
        "zero3-fp16",
        "zero3-bf16",
    ]
    assert [gpu_smoke.parse_case(name) for name in gpu_smoke.CASES[:3]] == [
        (0, "fp16"),
        (0, "bf16"),
        (2, "fp16"),
    ]


def test_an_unknown_case_is_refused(tmp_path: Path):
    proc = _run_script("--cases", "zero1-fp16", tmp_path=tmp_path)
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr


def test_case_overrides_are_valid_for_the_default_experiment(tmp_path: Path):
    from dsdet.config import load_experiment

    overrides = gpu_smoke.case_overrides("zero3-fp16", tmp_path / "run", 5)
    exp = load_experiment(None, overrides)
    assert exp.model.name == "yolo"
    assert exp.deepspeed.to_deepspeed_dict(allow_auto=True)["zero_optimization"]["stage"] == 3
    assert exp.train.precision == "fp16"
    assert exp.train.max_steps == 5
    assert exp.train.checkpoint_every_steps == 2
    assert exp.train.output_dir == str(tmp_path / "run")
    assert exp.train.resume == "auto"
    assert exp.data.num_workers == 2


def test_commands_are_the_ones_users_type(tmp_path: Path):
    bin_dir = Path("/venv/bin")
    run_dir = tmp_path / "run"
    overrides = gpu_smoke.case_overrides("zero2-bf16", run_dir, 5)
    assert gpu_smoke.train_command(overrides, 29501, bin_dir) == [
        "/venv/bin/deepspeed",
        "--num_gpus",
        "1",
        "--master_port",
        "29501",
        "--module",
        "dsdet.train",
        *overrides,
    ]
    assert gpu_smoke.eval_command(overrides, run_dir, tmp_path / "eval.json", bin_dir) == [
        "/venv/bin/dsdet",
        "eval",
        *overrides,
        "--checkpoint",
        str(run_dir),
        "--json",
        str(tmp_path / "eval.json"),
    ]
    assert gpu_smoke.export_command(run_dir, tmp_path / "model.pt", bin_dir) == [
        "/venv/bin/dsdet",
        "export",
        str(run_dir),
        "-o",
        str(tmp_path / "model.pt"),
    ]


def test_the_eval_and_export_commands_parse_with_dsdets_own_cli(tmp_path: Path):
    from dsdet.cli import build_parser

    run_dir = tmp_path / "run"
    overrides = gpu_smoke.case_overrides("zero0-fp16", run_dir, 5)
    parser = build_parser()
    evaluated = parser.parse_args(gpu_smoke.eval_command(overrides, run_dir, tmp_path / "e.json")[1:])
    assert (evaluated.args, evaluated.checkpoint, evaluated.json) == (
        overrides,
        str(run_dir),
        str(tmp_path / "e.json"),
    )
    exported = parser.parse_args(gpu_smoke.export_command(run_dir, tmp_path / "m.pt")[1:])
    assert (exported.checkpoint, exported.output) == (str(run_dir), str(tmp_path / "m.pt"))


@pytest.mark.parametrize(
    ("log", "step", "expected"),
    [
        ("[12:00:01 rank0] resumed from /r/checkpoints/step00000005 (epoch 0, step 5)\n", 5, True),
        ("[12:00:01 rank0] resumed from /r/checkpoints/step00000005 (epoch 0, step 5)\n", 4, False),
        ("[12:00:01 rank0] resumed from /r/checkpoints/step00000015 (epoch 1, step 15)\n", 5, False),
        ("[12:00:01 rank0] 1 ranks, 8 torch threads each\n", 5, False),
    ],
)
def test_resumed_from_reads_the_training_log(log: str, step: int, expected: bool):
    assert gpu_smoke.resumed_from(log, step) is expected


def test_step_tag_is_dsdets_checkpoint_tag():
    assert gpu_smoke.step_tag(5) == "step00000005"


def test_summary_line():
    passed = gpu_smoke.CaseResult(
        "zero2-bf16", train="ok", resume="ok", eval="ok", export="ok", ap=0.0123, seconds=95.4
    )
    assert passed.ok
    assert gpu_smoke.summary_line(passed).split() == [
        "zero2-bf16",
        "train=ok",
        "resume=ok",
        "eval",
        "AP=0.012",
        "export=ok",
        "95s",
    ]
    failed = gpu_smoke.CaseResult("zero3-fp16", train="FAIL", seconds=12)
    assert not failed.ok
    assert gpu_smoke.summary_line(failed).split() == [
        "zero3-fp16",
        "train=FAIL",
        "resume=skip",
        "eval",
        "AP=skip",
        "export=skip",
        "12s",
    ]


def test_a_failed_step_prints_the_tail_of_its_log(tmp_path: Path, capsys):
    result = gpu_smoke.CaseResult("zero0-fp16")
    log_file = tmp_path / "train.log"
    command = [sys.executable, "-c", "import sys; print('\\n'.join(map(str, range(100)))); sys.exit(3)"]
    passed = gpu_smoke.step(result, "train", command, log_file, 60, "a checkpoint", lambda: True)
    assert not passed and result.train == "FAIL"
    out = capsys.readouterr().out
    assert "train failed: exit code 3" in out
    assert "\n70\n" in out and "\n99\n" in out and "\n69\n" not in out
    assert log_file.read_text().startswith("$ ")


def test_a_step_whose_check_fails_or_raises_fails(tmp_path: Path, capsys):
    result = gpu_smoke.CaseResult("zero0-fp16")
    command = [sys.executable, "-c", "print('done')"]
    assert gpu_smoke.step(result, "train", command, tmp_path / "a.log", 60, "ok", lambda: True)
    assert result.train == "ok"
    assert not gpu_smoke.step(
        result, "eval", command, tmp_path / "b.log", 60, "metrics written", lambda: False
    )
    assert result.eval == "FAIL"
    assert "exit code 0, but not: metrics written" in capsys.readouterr().out

    def broken() -> bool:
        raise RuntimeError("truncated file")

    assert not gpu_smoke.step(result, "export", command, tmp_path / "c.log", 60, "model loads", broken)
    assert result.export == "FAIL"
    assert "truncated file" in capsys.readouterr().out


def test_a_step_that_runs_too_long_is_stopped(tmp_path: Path):
    log_file = tmp_path / "slow.log"
    rc = gpu_smoke.run_logged([sys.executable, "-c", "import time; time.sleep(60)"], log_file, 1)
    assert rc == 124
    assert "timed out after 1 s" in log_file.read_text()


def test_loads_weights_only(tmp_path: Path):
    import torch

    good = tmp_path / "good.pt"
    torch.save({"weight": torch.zeros(2)}, good)
    assert gpu_smoke.loads_weights_only(good)
    pickled = tmp_path / "pickled.pt"
    torch.save({"weight": torch.zeros(2), "extra": object()}, pickled)
    with pytest.raises(Exception, match="[Ww]eights only"):
        gpu_smoke.loads_weights_only(pickled)
