"""What every benchmark gets (budget, folders, launch environment) and gives back (a report section)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.launch import REPO, RunRecord, deepspeed_command, launch, torchrun_command
from benchmarks.settings import Budget

# Files whose first appearance marks the first logged step and the first complete checkpoint.
DSDET_WATCH = {"first_step": "train_log.jsonl", "first_checkpoint": "checkpoints/*/dsdet_complete.json"}
LAUNCHERS = {"deepspeed": deepspeed_command, "torchrun": torchrun_command}
PLAIN_WATCH = {"first_step": "train_log.jsonl", "first_checkpoint": "checkpoints/*/checkpoint.pt"}


@dataclass
class Section:
    """One part of the report: markdown lines, the plots they show, and the raw numbers behind them."""

    title: str
    lines: list[str]
    plots: list[Path] = field(default_factory=list)
    results: dict = field(default_factory=dict)


@dataclass
class Context:
    """The budget of this invocation and where its runs, plots and data are."""

    budget: Budget
    work_dir: Path
    images_dir: Path
    data_root: Path | None
    runs: dict[str, dict] = field(default_factory=dict)  # summaries of finished runs by label, for reuse

    @property
    def threads_per_rank(self) -> int:
        """CPU threads each rank may use: the cores split evenly between the ranks."""
        return max(1, (os.cpu_count() or 1) // self.budget.ranks)

    def launch_env(self) -> dict[str, str]:
        """Environment of every launched rank: equal threads for both sides, the repository importable."""
        return {"OMP_NUM_THREADS": str(self.threads_per_rank), "PYTHONPATH": str(REPO)}

    def common_overrides(self, out_dir: Path) -> list[str]:
        """Overrides every run shares: its data root, output folder, a fresh start and no export."""
        data = [f"data.root={self.data_root}"] if self.data_root is not None else []
        return [*data, f"train.output_dir={out_dir}", "train.resume=null", "train.export_on_finish=false"]

    def fresh_dir(self, label: str) -> Path:
        """An empty run folder named after `label` (a previous invocation's is removed)."""
        out_dir = self.work_dir / slug(label)
        shutil.rmtree(out_dir, ignore_errors=True)
        return out_dir

    def dsdet_run(
        self, label: str, overrides: list[str], launcher: str = "deepspeed"
    ) -> tuple[RunRecord, Path]:
        """`deepspeed --module dsdet.train` (or `torchrun -m dsdet.train`) with `overrides` in a fresh folder."""
        out_dir = self.fresh_dir(label)
        command = LAUNCHERS[launcher](
            "dsdet.train", [*self.common_overrides(out_dir), *overrides], self.budget.ranks
        )
        return self._launch(label, command, "dsdet.train", DSDET_WATCH, out_dir), out_dir

    def plain_run(
        self, label: str, overrides: list[str], recipe: str = "adamw", env: dict[str, str] | None = None
    ) -> tuple[RunRecord, Path]:
        """`torchrun -m benchmarks.plain_ddp` with `overrides` (and `env` added to the ranks' environment) in a
        fresh folder."""
        out_dir = self.fresh_dir(label)
        args = ["--recipe", recipe, *self.common_overrides(out_dir), *overrides]
        command = torchrun_command("benchmarks.plain_ddp", args, self.budget.ranks)
        return self._launch(label, command, "benchmarks.plain_ddp", PLAIN_WATCH, out_dir, env), out_dir

    def _launch(
        self,
        label: str,
        command: list,
        module: str,
        watch: dict[str, str],
        out_dir: Path,
        env: dict[str, str] | None = None,
    ) -> RunRecord:
        """Run `command` with this context's environment (plus `env`) and time limit, following its
        train_log.jsonl."""
        return launch(
            label,
            command,
            module=module,
            out_dir=out_dir,
            watch=watch,
            env={**self.launch_env(), **(env or {})},
            timeout_s=self.budget.timeout_s,
            progress_file="train_log.jsonl",
        )


def slug(label: str) -> str:
    """A folder name for a run label."""
    return "".join(c if c.isalnum() else "_" for c in label.lower()).strip("_")


def failure_line(record: RunRecord) -> str:
    """A report line for a run that did not finish, quoting its last error line (else its last line)."""
    tail = [line.strip() for line in record.log_tail(20000).splitlines() if line.strip()]
    errors = [line for line in tail if "error" in line.lower() and "sigkill_handler" not in line]
    last = (errors or tail or ["no output"])[-1][:300]
    return f"- **{record.label}** failed (exit {record.returncode}): `{last}`"
