"""What DeepSpeed builds for an optimizer or scheduler name in its config, and the arguments each takes."""

from __future__ import annotations

import inspect

from dsdet.config.ds_parser import import_deepspeed

# Optimizers DeepSpeed 0.19 removed: its parser still reads the name, the engine cannot build it.
REMOVED_OPTIMIZERS = {"onebitadam": "OneBitAdam", "onebitlamb": "OneBitLamb", "zerooneadam": "ZeroOneAdam"}
# DeepSpeed's own optimizer names whose built class is in deepspeed.runtime.zero.utils.ZERO_SUPPORTED_OPTIMIZERS
# (FusedAdam/DeepSpeedCPUAdam, Adagrad, FusedLion/DeepSpeedCPULion, MuonWithAuxAdam).
ZERO_TESTED_DEEPSPEED_OPTIMIZERS = ("adam", "adamw", "adagrad", "lion", "muon")
# Arguments of a scheduler's constructor that a config does not give.
_SCHEDULER_INTERNAL = ("self", "optimizer", "last_batch_iteration", "last_epoch", "verbose")


def zero_tested_optimizer(name: str) -> bool:
    """Whether DeepSpeed runs optimizer `name` under ZeRO without zero_allow_untested_optimizer."""
    built = optimizer_class(name)
    return built is not None and zero_tested(built)


def optimizer_class(name: str) -> type | str | None:
    """What DeepSpeed builds for optimizer `name`: one of its own names (lower case; it picks the class when it
    builds), a torch.optim class, or None when it can build nothing."""
    import torch

    if name.lower() in deepspeed_optimizers():
        return name.lower()
    built = getattr(torch.optim, name, None)
    return built if inspect.isclass(built) and issubclass(built, torch.optim.Optimizer) else None


def zero_tested(built: type | str) -> bool:
    """Whether ZeRO runs what DeepSpeed builds for `built` (see optimizer_class) without being told to."""
    if isinstance(built, str):
        return built in ZERO_TESTED_DEEPSPEED_OPTIMIZERS
    import_deepspeed()
    from deepspeed.runtime.zero.utils import ZERO_SUPPORTED_OPTIMIZERS

    return built in ZERO_SUPPORTED_OPTIMIZERS


def deepspeed_optimizers() -> list[str]:
    """DeepSpeed's own optimizer names (lower case; it accepts any case)."""
    import_deepspeed()
    from deepspeed.runtime.config import DEEPSPEED_OPTIMIZERS

    return list(DEEPSPEED_OPTIMIZERS)


def torch_optimizers() -> list[str]:
    """The optimizer classes of torch.optim, by name."""
    import torch

    return [n for n in dir(torch.optim) if inspect.isclass(getattr(torch.optim, n)) and n[0].isupper()]


def optimizer_parameters(built: type | str) -> set[str] | None:
    """The `params` keys DeepSpeed can pass to the optimizer it builds for `built` (any of the classes it
    may pick for one of its own names), None when unknown (optimizers from optional packages)."""
    classes = _deepspeed_optimizer_classes().get(built) if isinstance(built, str) else [built]
    if classes is None:
        return None
    names = {key for cls in classes for key in inspect.signature(cls.__init__).parameters}
    return (names - {"self", "params", "model_params"}) | ({"torch_adam", "adam_w_mode"} if str(built) in ("adam", "adamw") else set())


def _deepspeed_optimizer_classes() -> dict[str, list[type]]:
    """DeepSpeed's own optimizer names -> the classes DeepSpeed's engine picks from for each (see
    DeepSpeedEngine._configure_basic_optimizer); names missing here are not checked."""
    import_deepspeed()
    import torch
    from deepspeed.ops.adagrad import DeepSpeedCPUAdagrad
    from deepspeed.ops.adam import DeepSpeedCPUAdam, FusedAdam
    from deepspeed.ops.lamb import FusedLamb
    from deepspeed.ops.lion import DeepSpeedCPULion, FusedLion

    adam = [FusedAdam, DeepSpeedCPUAdam, torch.optim.Adam, torch.optim.AdamW]
    return {
        "adam": adam,
        "adamw": adam,
        "adagrad": [torch.optim.Adagrad, DeepSpeedCPUAdagrad],
        "lamb": [FusedLamb],
        "lion": [FusedLion, DeepSpeedCPULion],
    }


def scheduler_arguments(name: str) -> dict[str, inspect.Parameter] | None:
    """The config arguments of the scheduler DeepSpeed builds for `name` (its own or torch's); None if none."""
    import_deepspeed()
    import torch.optim.lr_scheduler as torch_schedulers
    from deepspeed.runtime import lr_schedules

    built = getattr(lr_schedules, name, None) if name in lr_schedules.VALID_LR_SCHEDULES else None
    built = built or getattr(torch_schedulers, name, None)
    if not inspect.isclass(built):
        return None
    return {
        key: parameter
        for key, parameter in inspect.signature(built.__init__).parameters.items()
        if key not in _SCHEDULER_INTERNAL and parameter.kind is not inspect.Parameter.VAR_KEYWORD
    }


def scheduler_parameters(name: str) -> dict[str, bool] | None:
    """Argument name -> required, of the scheduler DeepSpeed builds for `name`; None when it builds none."""
    arguments = scheduler_arguments(name)
    if arguments is None:
        return None
    return {key: parameter.default is inspect.Parameter.empty for key, parameter in arguments.items()}


def deepspeed_schedulers() -> dict[str, dict[str, inspect.Parameter]]:
    """DeepSpeed's own schedulers -> their config arguments."""
    import_deepspeed()
    from deepspeed.runtime.lr_schedules import VALID_LR_SCHEDULES

    return {name: scheduler_arguments(name) or {} for name in VALID_LR_SCHEDULES}
