"""The installed DeepSpeed's own config parser as dsdet's schema for the `deepspeed` section.

DeepSpeed validates its config in `deepspeed.runtime.config.DeepSpeedConfig`: pydantic models for some
sections (ZeRO, fp16, bf16, monitors, ...) and plain dict reads for the rest. dsdet hands it the user's dict
with "auto" values dropped and the batch sizes replaced by a shape valid on any world size (dsdet checks the
batch identity itself, for the world size of the run), then translates what it refuses into dsdet's one-line
form. Which keys DeepSpeed reads is found by asking it too (dsdet.config.ds_keys), so a new release needs no
edit here.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import re
import sys
from collections.abc import Iterator
from functools import cache
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from dsdet.config.base import AUTO
from dsdet.config.problems import did_you_mean

BATCH_KEYS = ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps")
# A shape DeepSpeed accepts on every world size; dsdet checks the real batch sizes itself.
NEUTRAL_BATCH = {"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1}


class DeepSpeedRefusal(Exception):
    """DeepSpeed's parser refused a config; `problems` are dsdet one-liners, each naming its dotted path."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def strip_auto(value: Any) -> Any:
    """`value` without any "auto" entry, so DeepSpeed's defaults apply where dsdet fills in later."""
    if isinstance(value, dict):
        return {k: strip_auto(v) for k, v in value.items() if not (isinstance(v, str) and v == AUTO)}
    if isinstance(value, list):
        return [strip_auto(v) for v in value]
    return value


def prepared_for_deepspeed(data: dict[str, Any]) -> dict[str, Any]:
    """The dict DeepSpeed's parser is given: no "auto", no section set to null (removed), batch sizes neutral."""
    prepared = strip_auto(copy.deepcopy(data))
    kept = {key: value for key, value in prepared.items() if value is not None and key not in BATCH_KEYS}
    return {**kept, **NEUTRAL_BATCH}


@cache
def import_deepspeed() -> None:
    """Import DeepSpeed without the accelerator notice it prints to stdout (which would spoil printed JSON);
    its log handlers keep writing to the real stdout afterwards."""
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        from deepspeed.utils import logger
    for handler in logger.handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is captured:
            handler.setStream(sys.stdout)


@contextlib.contextmanager
def quiet_deepspeed(warnings: list[str] | None = None) -> Iterator[None]:
    """DeepSpeed's logger silenced below ERROR; its warnings appended to `warnings` instead of printed."""
    import_deepspeed()
    from deepspeed.utils import logger

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if warnings is not None and record.levelno == logging.WARNING:
                warnings.append(record.getMessage().strip().splitlines()[0])

    handler = _Collect(level=logging.WARNING)
    saved_level, saved_propagate = logger.level, logger.propagate
    saved_handlers = list(logger.handlers)
    for existing in saved_handlers:
        logger.removeHandler(existing)
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        for existing in saved_handlers:
            logger.addHandler(existing)
        logger.setLevel(saved_level)
        logger.propagate = saved_propagate


def parse(
    data: dict[str, Any], warnings: list[str] | None = None, reads: set[tuple[str, str]] | None = None
) -> Any:
    """DeepSpeed's own `DeepSpeedConfig` of `data` (see prepared_for_deepspeed); DeepSpeedRefusal listing every
    section DeepSpeed refuses, each checked on its own so one bad section does not hide another.

    `warnings` receives what DeepSpeed warns about; `reads` the (section path, key) pairs it looked up."""
    try:
        return parse_prepared(record_reads(prepared_for_deepspeed(data), "", reads if reads is not None else set()), warnings)
    except Exception as whole:  # noqa: BLE001 - DeepSpeed raises AssertionError, ValueError, KeyError, its own errors
        first = problems_of(whole)
    problems: list[str] = []
    for key, value in data.items():
        if key in BATCH_KEYS:
            continue
        try:
            parse_prepared(prepared_for_deepspeed({key: value}), None)
        except Exception as exc:  # noqa: BLE001 - as above
            problems += problems_of(exc, key)
    raise DeepSpeedRefusal(problems or first)


def parse_prepared(prepared: dict[str, Any], warnings: list[str] | None) -> Any:
    import_deepspeed()
    from deepspeed.runtime.config import DeepSpeedConfig

    with quiet_deepspeed(warnings):
        return DeepSpeedConfig(prepared, mpu=None)


def problems_of(exc: BaseException, section: str = "") -> list[str]:
    """What DeepSpeed said, one "dotted.path: message" line per problem; paths start at `section`."""
    if not isinstance(exc, ValidationError):
        text = str(exc).strip().splitlines()
        message = (text[0].strip() if text else type(exc).__name__).removeprefix("DeepSpeedConfig: ")
        return [f"{section}: {message}" if section else message]
    problems = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        if section and loc and loc[0] == section:  # monitors validate the whole dict: the section is in loc
            loc = loc[1:]
        message = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if error["type"] == "extra_forbidden":
            model = find_model(exc.title)
            message = _unknown_key_message(loc[-1], model, error["loc"][:-1])
            loc = loc[:-1]
        elif isinstance(error.get("input"), str | int | float | bool):
            value = error["input"]
            choices = re.findall(r"'([^']*)'", str(error.get("ctx", {}).get("expected", "")))
            hint = did_you_mean(value, choices) if isinstance(value, str) and len(choices) > 1 else ""
            message = f"{message} (got {value!r}){hint}"
        path = ".".join([section, *loc] if section else loc)
        problems.append(f"{path}: {message}" if path else message)
    return problems


def _unknown_key_message(key: str, model: type[BaseModel] | None, loc: tuple[Any, ...]) -> str:
    """An unknown key of DeepSpeed's `model` at `loc`: another name of a key given too, or a typo."""
    if model is None:
        return f"unknown key {key!r}"
    aliases = {name: alias for name, alias in model_aliases(model, loc).items() if alias}
    other = aliases.get(key) or next((name for name, alias in aliases.items() if alias == key), None)
    if other:
        return f"key {key!r} is another name of {other!r}: give only one of them"
    return f"unknown key {key!r}{did_you_mean(key, model_keys(model, loc))}"


def offload_device(zero_config: Any, block: str) -> str:
    """Where DeepSpeed's parsed ZeRO config sends `block` ("offload_optimizer", "offload_param"): none, cpu, nvme."""
    device = getattr(getattr(zero_config, block), "device", None) or "none"
    return str(getattr(device, "value", device))


@cache
def _all_models() -> dict[str, type[BaseModel]]:
    import_deepspeed()
    from deepspeed.runtime.config_utils import DeepSpeedConfigModel

    found: dict[str, type[BaseModel]] = {}
    pending = [DeepSpeedConfigModel]
    while pending:
        model = pending.pop()
        found.setdefault(model.__name__, model)
        pending.extend(model.__subclasses__())
    return found


def find_model(title: str) -> type[BaseModel] | None:
    """DeepSpeed's pydantic model named `title` (a ValidationError's title), if any."""
    return _all_models().get(title)


def model_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys (names and aliases) of the model found at `loc` inside `model`."""
    aliases = model_aliases(model, loc)
    return [*aliases, *(alias for alias in aliases.values() if alias)]


def model_aliases(model: type[BaseModel], loc: tuple[Any, ...]) -> dict[str, str | None]:
    """Field name -> alias (or None) of the model found at `loc` inside `model`."""
    found = walk_model(model, loc)
    return {name: field.alias for name, field in getattr(found, "model_fields", {}).items()}


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for m in map(_model_of, get_args(annotation)) if m is not None), None)


def walk_model(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model of the nested field at `loc` inside `model`, or None when `loc` leaves the models."""
    current: Any = model
    for part in loc:
        field = getattr(current, "model_fields", {}).get(part)
        current = _model_of(field.annotation) if field is not None else None
    return current


class _Recorder(dict):
    """A dict that notes every key DeepSpeed's parser looks up in it (and in the dicts inside it)."""

    reads: set[tuple[str, str]]
    path: str

    def _note(self, key: Any) -> None:
        self.reads.add((self.path, str(key)))

    def get(self, key: Any, default: Any = None) -> Any:
        self._note(key)
        return record_reads(super().get(key, default), f"{self.path}{key}.", self.reads)

    def __getitem__(self, key: Any) -> Any:
        self._note(key)
        return record_reads(super().__getitem__(key), f"{self.path}{key}.", self.reads)

    def __contains__(self, key: Any) -> bool:
        self._note(key)
        return super().__contains__(key)


def record_reads(value: Any, path: str, reads: set[tuple[str, str]]) -> Any:
    if type(value) is not dict:
        return value
    recorder = _Recorder(value)
    recorder.reads, recorder.path = reads, path
    return recorder
