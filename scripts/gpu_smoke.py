"""GPU smoke check: real DeepSpeed training runs on one NVIDIA GPU, as a user launches them.

    .venv/bin/python scripts/gpu_smoke.py [--out runs/gpu-smoke] [--cases zero2-bf16 ...] [--steps 5]

Needs a machine with one CUDA GPU (it exits 2 without one) and is never run by the test suite. For each case,
ZeRO stage 0, 2 or 3 times fp16 (DeepSpeed's dynamic loss scaling) or bf16, on the default experiment (yolo on
the embedded default dataset), it checks that:

1. `deepspeed --num_gpus 1 --module dsdet.train ...` trains STEPS steps and saves the checkpoint of that step;
2. the same command with train.max_steps=STEPS+3 resumes from it (train.resume=auto) and saves the final step;
3. `dsdet eval ... --checkpoint RUN_DIR` computes COCO metrics of the run's checkpoint;
4. `dsdet export RUN_DIR -o CASE_DIR/model.pt` writes a state dict that torch.load(weights_only=True) reads.

It prints one line per case, writes OUT/summary.json, keeps each command's output in OUT/CASE/STEP.log (the
last 30 lines are printed when a step fails) and exits 1 when any case failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent  # the virtualenv's bin: deepspeed and dsdet live next to its python
REPO = Path(__file__).resolve().parents[1]
STAGES = (0, 2, 3)
PRECISIONS = ("fp16", "bf16")
CASES = [f"zero{stage}-{precision}" for stage in STAGES for precision in PRECISIONS]
RESUME_EXTRA_STEPS = 3
TAIL_LINES = 30
NO_GPU_EXIT = 2


@dataclass
class CaseResult:
    """What one case did: 'ok', 'FAIL' or 'skip' per step, the val AP and the wall time."""

    name: str
    train: str = "skip"
    resume: str = "skip"
    eval: str = "skip"
    export: str = "skip"
    ap: float | None = None
    seconds: float = 0.0
    commands: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(status == "ok" for status in (self.train, self.resume, self.eval, self.export))


def parse_case(name: str) -> tuple[int, str]:
    """'zero2-bf16' -> (2, 'bf16')."""
    zero, precision = name.split("-")
    return int(zero.removeprefix("zero")), precision


def step_tag(step: int) -> str:
    """The checkpoint tag dsdet writes after `step` optimizer steps."""
    from dsdet.engine.checkpoint import tag_for_step

    return tag_for_step(step)


def case_overrides(name: str, run_dir: Path, max_steps: int) -> list[str]:
    """The KEY=VALUE overrides of the default experiment for one case."""
    stage, precision = parse_case(name)
    return [
        f"deepspeed.zero_optimization.stage={stage}",
        f"train.precision={precision}",
        f"train.max_steps={max_steps}",
        "train.checkpoint_every_steps=2",
        f"train.output_dir={run_dir}",
        "train.resume=auto",
        "data.num_workers=2",
    ]


def free_port() -> int:
    """A free TCP port on the loopback interface (one master port per launch)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train_command(overrides: list[str], port: int, bin_dir: Path = BIN) -> list[str]:
    """`deepspeed --num_gpus 1 --master_port PORT --module dsdet.train OVERRIDES`."""
    return [
        str(bin_dir / "deepspeed"),
        "--num_gpus",
        "1",
        "--master_port",
        str(port),
        "--module",
        "dsdet.train",
        *overrides,
    ]


def eval_command(overrides: list[str], run_dir: Path, json_file: Path, bin_dir: Path = BIN) -> list[str]:
    """`dsdet eval OVERRIDES --checkpoint RUN_DIR --json FILE`."""
    return [
        str(bin_dir / "dsdet"),
        "eval",
        *overrides,
        "--checkpoint",
        str(run_dir),
        "--json",
        str(json_file),
    ]


def export_command(run_dir: Path, model_file: Path, bin_dir: Path = BIN) -> list[str]:
    """`dsdet export RUN_DIR -o MODEL_FILE`."""
    return [str(bin_dir / "dsdet"), "export", str(run_dir), "-o", str(model_file)]


def resumed_from(log_text: str, step: int) -> bool:
    """Whether a training log says it resumed from the checkpoint of `step`."""
    return any("resumed from" in line and f"step {step})" in line for line in log_text.splitlines())


def run_logged(command: list[str], log_file: Path, timeout_s: float) -> int:
    """Run `command` in the repository with stdout and stderr in `log_file`; its exit code (124: timed out).
    The command gets its own process group, so a timeout or Ctrl-C also ends the ranks it started."""
    with log_file.open("w") as log:
        log.write(f"$ {shlex.join(command)}\n")
        log.flush()
        proc = subprocess.Popen(
            command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            log.write(f"\n[gpu_smoke] timed out after {timeout_s:.0f} s\n")
            return 124
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            raise


def show_tail(log_file: Path, lines: int = TAIL_LINES) -> None:
    """Print the last `lines` lines of a failed step's log."""
    tail = log_file.read_text(errors="replace").splitlines()[-lines:]
    print(f"--- last {len(tail)} lines of {log_file}", *tail, "---", sep="\n", flush=True)


def step(
    result: CaseResult,
    key: str,
    command: list[str],
    log_file: Path,
    timeout_s: float,
    expect: str,
    check: Callable[[], bool],
) -> bool:
    """Run one step of a case; it passes when the command exits 0 and then `check()` (which `expect` describes)
    is true. Sets the step's status in `result`; a failure prints why and the tail of the log."""
    result.commands[key] = command
    rc = run_logged(command, log_file, timeout_s)
    why = f"exit code {rc}" if rc else ""
    if not why:
        try:
            why = "" if check() else f"exit code 0, but not: {expect}"
        except Exception as exc:  # a broken output file is a failed step, not a crash of the smoke check
            why = f"exit code 0, but checking '{expect}' raised {exc!r}"
    setattr(result, key, "FAIL" if why else "ok")
    if why:
        print(f"{result.name}: {key} failed: {why}", flush=True)
        show_tail(log_file)
        with log_file.open("a") as log:
            log.write(f"\n[gpu_smoke] {key} failed: {why}\n")
    return not why


def loads_weights_only(model_file: Path) -> bool:
    """Whether the exported file is a non-empty state dict that loads with torch.load(weights_only=True)."""
    import torch

    state = torch.load(model_file, map_location="cpu", weights_only=True)
    return (
        isinstance(state, dict) and bool(state) and all(isinstance(v, torch.Tensor) for v in state.values())
    )


def run_case(name: str, out: Path, steps: int, timeout_s: float) -> CaseResult:
    """Train, resume, evaluate and export one case in OUT/NAME (emptied first)."""
    case_dir = out / name
    shutil.rmtree(case_dir, ignore_errors=True)
    case_dir.mkdir(parents=True)
    run_dir = case_dir / "run"
    checkpoints = run_dir / "checkpoints"
    result = CaseResult(name)
    start = time.monotonic()

    first = case_overrides(name, run_dir, steps)
    if step(
        result,
        "train",
        train_command(first, free_port()),
        case_dir / "train.log",
        timeout_s,
        f"checkpoint {step_tag(steps)} saved",
        lambda: (checkpoints / step_tag(steps)).is_dir(),
    ):
        final = steps + RESUME_EXTRA_STEPS
        resume_log = case_dir / "resume.log"
        step(
            result,
            "resume",
            train_command(case_overrides(name, run_dir, final), free_port()),
            resume_log,
            timeout_s,
            f"log says 'resumed from ... step {steps})', checkpoint {step_tag(final)} saved",
            lambda: (
                resumed_from(resume_log.read_text(errors="replace"), steps)
                and (checkpoints / step_tag(final)).is_dir()
            ),
        )
        metrics_file = case_dir / "eval.json"
        if step(
            result,
            "eval",
            eval_command(first, run_dir, metrics_file),
            case_dir / "eval.log",
            timeout_s,
            f"metrics written to {metrics_file.name}",
            metrics_file.is_file,
        ):
            result.ap = json.loads(metrics_file.read_text()).get("AP")
        model_file = case_dir / "model.pt"
        step(
            result,
            "export",
            export_command(run_dir, model_file),
            case_dir / "export.log",
            timeout_s,
            "model.pt loads with torch.load(weights_only=True) as a state dict",
            lambda: model_file.is_file() and loads_weights_only(model_file),
        )
    result.seconds = round(time.monotonic() - start, 1)
    return result


def summary_line(result: CaseResult) -> str:
    """'zero2-bf16  train=ok  resume=ok  eval AP=0.012  export=ok  95s'."""
    ap = f"{result.ap:.3f}" if result.eval == "ok" and result.ap is not None else result.eval
    return (
        f"{result.name:<11} train={result.train:<4}  resume={result.resume:<4}  eval AP={ap:<5}  "
        f"export={result.export:<4}  {result.seconds:.0f}s"
    )


def build_parser() -> argparse.ArgumentParser:
    """--out, --cases, --steps, --timeout."""
    parser = argparse.ArgumentParser(
        prog="gpu_smoke.py",
        description="Train, resume, evaluate and export the default experiment on one GPU with ZeRO 0/2/3 x "
        "fp16/bf16, each through the deepspeed launcher. Needs a CUDA GPU; exits 2 without one.",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/gpu-smoke"),
        help="folder for the runs, logs and summary.json (default: runs/gpu-smoke)",
    )
    parser.add_argument(
        "--cases",
        nargs="+",
        choices=CASES,
        default=CASES,
        metavar="CASE",
        help=f"cases to run, of {', '.join(CASES)} (default: all)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=5,
        help=f"steps of the first run; the resume adds {RESUME_EXTRA_STEPS} (default: 5)",
    )
    parser.add_argument(
        "--timeout", type=float, default=1200, help="seconds each command may run (default: 1200)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the cases; 0 when all passed, 1 when one failed, 2 without a GPU."""
    args = build_parser().parse_args(argv)
    import torch  # here, so that --help works without torch

    if not torch.cuda.is_available():
        print("gpu_smoke.py needs a GPU: torch.cuda.is_available() is False on this machine", file=sys.stderr)
        return NO_GPU_EXIT
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    print(f"GPU: {torch.cuda.get_device_name(0)}; cases: {' '.join(args.cases)}; output: {out}", flush=True)
    results = []
    for name in args.cases:
        print(f"== {name}", flush=True)
        results.append(run_case(name, out, args.steps, args.timeout))
        print(summary_line(results[-1]), flush=True)
    print("\nsummary")
    for result in results:
        print(summary_line(result))
    summary = {
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "steps": args.steps,
        "ok": all(r.ok for r in results),
        "cases": [asdict(r) | {"ok": r.ok} for r in results],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"summary: {out / 'summary.json'}")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
