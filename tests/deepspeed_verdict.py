"""DeepSpeed's own verdict on a DeepSpeed JSON config, without a process group.

``deepspeed_verdict(config, world_size)`` builds the installed
``deepspeed.runtime.config.DeepSpeedConfig`` from ``config`` as if the job ran
data-parallel on ``world_size`` ranks, and returns ``None`` when DeepSpeed
accepts it or a one-line reason (``"ExcType: first line"``) when it refuses.

How the world size gets in (checked against DeepSpeed 0.19.8):
``DeepSpeedConfig.__init__`` does, inside one ``try``::

    self.global_rank = dist.get_rank()          # dist = deepspeed.comm
    if mpu is not None:
        self.world_size = mpu.get_data_parallel_world_size()
    ...
    else:
        self.world_size = dist.get_world_size()
    except (RuntimeError, AssertionError, AttributeError):
        self.global_rank = 0; self.world_size = 1

Without ``deepspeed.init_distributed()`` / ``torch.distributed`` set up,
``deepspeed.comm.get_rank()`` raises ``AssertionError("DeepSpeed backend not
set ...")`` *before* the mpu is consulted, so a fake mpu alone is silently
ignored and the world size falls back to 1. No process group is needed for
parsing, though: the constructor only reads rank and world size from
``deepspeed.comm``. So for the duration of the call we swap the module-level
name ``dist`` in ``deepspeed.runtime.config`` for a two-function stand-in
that reports rank 0 of ``world_size`` ranks, and pass ``mpu=None``.

What counts as "accepted": everything ``DeepSpeedConfig`` checks at
construction time (batch arithmetic, removed top-level/ZeRO keys, the
pydantic models with ``extra="forbid"``, fp16/bf16 exclusivity, enum values,
...). Things DeepSpeed only checks when ``deepspeed.initialize`` builds the
engine are *not* covered. In particular the optimizer ``type`` is never
validated by the parser: the removed 1-bit optimizers (``OneBitAdam``,
``ZeroOneAdam``, ``OneBitLamb``) and any other name parse fine and only fail
in ``DeepSpeedEngine._configure_optimizer`` (``_is_supported_optimizer``),
so this function reports them as accepted by the parser. Scheduler params
are likewise only checked when the scheduler is built.
"""

from __future__ import annotations

import contextlib
import copy
import threading
from typing import Any

AUTO = "auto"

_PATCH_LOCK = threading.Lock()


def strip_auto(value: Any) -> Any:
    """Return a copy of ``value`` with every ``"auto"`` dict entry removed, recursively.

    Removing the key (rather than substituting a number) lets DeepSpeed's own
    defaults apply, which is what the Hugging Face integration ends up doing
    for anything it does not fill in itself.
    """
    if isinstance(value, dict):
        return {k: strip_auto(v) for k, v in value.items() if not (isinstance(v, str) and v == AUTO)}
    if isinstance(value, list):
        return [strip_auto(v) for v in value]
    return value


def prepare_config(config: dict) -> dict:
    """The dict actually handed to DeepSpeed: "auto" dropped, a micro batch guaranteed."""
    prepared = strip_auto(copy.deepcopy(config))
    batch_keys = ("train_batch_size", "train_micro_batch_size_per_gpu")
    if not any(key in prepared for key in batch_keys) and any(config.get(key) == AUTO for key in batch_keys):
        # Both were "auto" (one may be absent): the HF Trainer fills them from its own
        # arguments. Pick the smallest consistent shape so DeepSpeed can check the rest.
        # A file that never set either is left alone: DeepSpeed refuses it itself.
        prepared["train_micro_batch_size_per_gpu"] = 1
    return prepared


class _FixedWorld:
    """Stand-in for ``deepspeed.comm`` as used by ``DeepSpeedConfig.__init__``."""

    def __init__(self, world_size: int) -> None:
        self._world_size = world_size

    def get_rank(self, group: Any = None) -> int:
        return 0

    def get_world_size(self, group: Any = None) -> int:
        return self._world_size


@contextlib.contextmanager
def _world_of(world_size: int):
    import deepspeed.runtime.config as ds_config_module

    with _PATCH_LOCK:
        saved = ds_config_module.dist
        ds_config_module.dist = _FixedWorld(world_size)
        try:
            yield ds_config_module
        finally:
            ds_config_module.dist = saved


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0].strip() if text else ""
    errors = getattr(exc, "errors", None)
    try:  # pydantic.ValidationError: its first line only names the model; add the first error's place and message
        detail = errors()[0] if callable(errors) else None
    except Exception:
        detail = None
    if isinstance(detail, dict) and "msg" in detail:
        where = ".".join(str(part) for part in detail.get("loc", ()))
        first = f"{first}: {where + ': ' if where else ''}{detail['msg']}"
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def deepspeed_config(config: dict, world_size: int = 2):
    """Build and return DeepSpeed's ``DeepSpeedConfig`` for ``config`` at ``world_size`` (raises on refusal)."""
    if not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be a positive int, got {world_size!r}")
    prepared = prepare_config(config)
    with _world_of(world_size) as ds_config_module:
        return ds_config_module.DeepSpeedConfig(prepared, mpu=None)


def deepspeed_verdict(config: dict, world_size: int = 2) -> str | None:
    """None if the installed DeepSpeed accepts ``config`` at ``world_size`` ranks, else a one-line reason."""
    if not isinstance(config, dict):
        return f"TypeError: a DeepSpeed config must be a JSON object, got {type(config).__name__}"
    try:
        ds_cfg = deepspeed_config(config, world_size)
    except (
        Exception
    ) as exc:  # AssertionError, ValueError, pydantic.ValidationError, KeyError, DeepSpeedConfigError...
        return _one_line(exc)
    # DeepSpeed divides the world by a top-level "sequence_parallel_size" (Ulysses) when no mpu is given.
    expected = (
        world_size / config["sequence_parallel_size"] if "sequence_parallel_size" in config else world_size
    )
    if ds_cfg.world_size != expected:  # the stand-in did not take: never report a world-size-1 verdict
        return f"RuntimeError: DeepSpeedConfig saw world_size={ds_cfg.world_size}, not {expected}"
    return None


def main(argv: list[str] | None = None) -> int:
    """``python tests/deepspeed_verdict.py [--world-size N] FILE...``: print each file's verdict."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world-size", type=int, default=2)
    parser.add_argument("files", nargs="+")
    args = parser.parse_args(argv)
    refused = 0
    for path in args.files:
        with open(path) as handle:
            verdict = deepspeed_verdict(json.load(handle), args.world_size)
        refused += verdict is not None
        print(f"{path}\t{'accepted' if verdict is None else 'refused: ' + verdict}")
    return 1 if refused else 0


if __name__ == "__main__":
    raise SystemExit(main())
