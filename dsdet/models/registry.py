"""The model registry: names to builders, with checked keyword arguments."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from torch import nn

from dsdet.errors import DsdetError

# Parameters a builder fills itself: never taken from the user's kwargs.
_RESERVED = frozenset(
    {"self", "num_classes", "weights", "weights_backbone", "backbone", "anchor_generator", "size", "head"}
)


# A model's own optimizer rule for one of its parameters, by dotted name: {"lr_scale": ..., "weight_decay": ...}
# (either may be left out), e.g. layer-wise learning-rate decay of a transformer backbone.
ParamOverrides = Callable[[nn.Module, str], dict[str, float]]


@dataclass(frozen=True)
class ModelInfo:
    """One registered detector: what `dsdet models` shows and what the engine needs to know about it."""

    name: str
    family: str
    description: str
    stock: bool
    builder: Callable[..., nn.Module] = field(repr=False, compare=False)
    accepted_kwargs: frozenset[str] = field(repr=False, compare=False)
    param_overrides: ParamOverrides | None = field(default=None, repr=False, compare=False)
    targets: frozenset[str] = frozenset({"boxes", "labels"})  # what each training target must hold
    whole_build_reason: str | None = None  # why ZeRO-3 cannot construct it partitioned (None: it can)


_REGISTRY: dict[str, ModelInfo] = {}


def _named_parameters(fn: Callable) -> set[str]:
    """Names of the keyword-passable parameters of a function or class constructor."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name for p in inspect.signature(fn).parameters.values() if p.kind in kinds}


def register_model(
    name: str,
    *,
    family: str,
    description: str,
    stock: bool = False,
    kwargs_from: Iterable[Callable] = (),
    param_overrides: ParamOverrides | None = None,
    targets: Iterable[str] = ("boxes", "labels"),
    whole_build_reason: str | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register `builder(num_classes, **kwargs)`; accepted kwargs are its own and those of `kwargs_from`;
    `param_overrides` sets the learning-rate scale or weight decay of chosen parameters; `targets` names what
    each training target holds (masks for instance segmentation); `whole_build_reason` says why the builder
    cannot run under ZeRO-3's partitioned construction, when it cannot."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        accepted = set(_named_parameters(builder))
        for source in kwargs_from:
            accepted |= _named_parameters(source)
        _REGISTRY[name] = ModelInfo(
            name,
            family,
            description,
            stock,
            builder,
            frozenset(accepted - _RESERVED),
            param_overrides,
            frozenset(targets),
            whole_build_reason,
        )
        return builder

    return decorate


def list_models() -> list[ModelInfo]:
    """All registered detectors, sorted by family then name."""
    return sorted(_REGISTRY.values(), key=lambda info: (info.family, info.name))


def model_info(name: str) -> ModelInfo:
    """The registry entry of `name`, or a DsdetError suggesting the closest names."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise DsdetError(f"model.name: unknown model {name!r}{hint} (see `dsdet models`)")


def check_kwargs(info: ModelInfo, kwargs: dict) -> None:
    """Raise a DsdetError naming the first keyword argument `info`'s builder does not take."""
    for key in kwargs:
        if key not in info.accepted_kwargs:
            close = difflib.get_close_matches(key, sorted(info.accepted_kwargs), n=2, cutoff=0.6)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise DsdetError(f"model.kwargs: {info.name} takes no argument {key!r}{hint}")
