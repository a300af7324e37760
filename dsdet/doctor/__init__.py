"""`dsdet doctor`: what a training run will meet on this machine, like DeepSpeed's `ds_report`, with advice."""

from __future__ import annotations

import contextlib
import sys

from dsdet.config import ExperimentConfig
from dsdet.doctor.report import Check, exit_code, render_json, render_text

__all__ = ["Check", "exit_code", "render_json", "render_text", "run_checks"]


def run_checks(exp: ExperimentConfig) -> list[Check]:
    """Every check for a run of `exp` here; anything the libraries print goes to stderr."""
    with contextlib.redirect_stdout(sys.stderr):  # DeepSpeed logs and op probes print to stdout
        from dsdet.doctor import ops, software, system

        checks = [software.python_check(), *software.requirement_checks(), *software.torch_checks()]
        checks += software.deepspeed_checks()
        checks += software.accelerator_checks(exp.train.precision)
        checks += ops.op_checks(exp)
        checks += [*system.tool_checks(), system.mpi4py_check()]
        model, num_parameters = system.model_check(exp)
        checks += [
            model,
            system.disk_check(exp, num_parameters),
            system.shm_check(),
            system.dataset_check(exp),
        ]
    return checks
