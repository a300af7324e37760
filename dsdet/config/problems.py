"""Turn pydantic's validation errors into one clear line per problem, with dotted paths and "did you mean"."""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Sequence
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, Discriminator, Tag, ValidationError

from dsdet.config.base import TagBy
from dsdet.errors import DsdetError

ModelT = TypeVar("ModelT", bound=BaseModel)
_LEADING_PATH = re.compile(r"^([\w.\[\]-]+): (.*)$")


class ConfigError(DsdetError):
    """Every problem found in one config, each naming its dotted path; str() is a single line."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        count = f"{len(self.problems)} problems: " if len(self.problems) > 1 else ""
        super().__init__(f"{source}: {count}{'; '.join(self.problems)}")


# Keys of earlier releases that now live elsewhere: dotted old path -> dotted new path.
MOVED_KEYS = {
    "model.roi_align": "train.cpu.roi_align",
    "train.cpu_collectives": "train.cpu.collectives",
    "train.cpu_malloc": "train.cpu.malloc",
}


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """The hint ", did you mean 'x'?" for the closest choice, or "" when nothing is close."""
    lower = word.lower()
    close = (
        difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
        or [c for c in choices if c.lower() == lower]
        or [
            c
            for c in choices
            if lower.startswith(c.lower()) or (len(word) >= 3 and c.lower().startswith(lower))
        ]
    )
    return f", did you mean '{close[0]}'?" if close else ""


def validate_model(model: type[ModelT], data: Any, source: str, at: str = "") -> ModelT:
    """Validate `data` as `model`; every problem goes into one ConfigError, paths prefixed with `at`."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, validation_problems(exc, model, at)) from None


def validation_problems(exc: ValidationError, model: type[BaseModel], at: str = "") -> list[str]:
    """One message per problem in `exc`, in the order pydantic found them; `at` is the path of `model`."""
    grouped: dict[str, list[str]] = {}
    auto_allowed: set[str] = set()
    for error in exc.errors():
        path, owner = _walk(model, error["loc"])
        if error["type"] in ("extra_forbidden", "missing"):  # name the section; the message names the key
            path, owner = _walk(model, error["loc"][:-1])
        path = f"{at}.{path}" if at and path else at or path
        moved = MOVED_KEYS.get(f"{path}.{error['loc'][-1]}") if error["type"] == "extra_forbidden" else None
        if moved:
            grouped.setdefault(path, []).append(f"key {error['loc'][-1]!r} moved to {moved}")
            continue
        if error["type"] == "cross_field":  # "inner.path: message" lines from a model's own checks
            for problem in error["ctx"]["problems"]:
                inner, message = split_path(problem)
                grouped.setdefault(".".join(p for p in (path, inner) if p), []).append(message)
            continue
        if error["type"] == "literal_error" and error["ctx"].get("expected") == "'auto'":
            auto_allowed.add(path)
            continue
        grouped.setdefault(path, []).extend(_messages(error, owner))
    for path in auto_allowed - set(grouped):
        if not any(other.startswith(path) for other in grouped):
            grouped[path] = ["must be 'auto'"]
    lines = []
    for path, messages in grouped.items():
        text = "; ".join(dict.fromkeys(messages))
        if path in auto_allowed:
            text = text.replace(" (got", ", or 'auto' (got", 1) if " (got" in text else text + ", or 'auto'"
        lines.append(f"{path}: {text}" if path else text)
    return lines


def _messages(error: dict[str, Any], owner: Any) -> list[str]:
    kind, value = error["type"], error.get("input")
    if kind == "extra_forbidden":
        key = str(error["loc"][-1])
        return [f"unknown key {key!r}{did_you_mean(key, _field_names(owner))}"]
    if kind == "missing":
        return [f"missing required key {error['loc'][-1]!r}"]
    if kind == "unknown_tag" and isinstance(owner, TagBy):
        given = value.get(owner.key) if isinstance(value, dict) else None
        if not isinstance(given, str):
            return [f"needs a '{owner.key}', one of {', '.join(owner.tags)}"]
        return [
            f"unknown {owner.key} {given!r}{did_you_mean(given, owner.tags)} (one of {', '.join(owner.tags)})"
        ]
    message = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if isinstance(value, dict):
        return [message]
    choices = re.findall(r"'([^']*)'", error["ctx"]["expected"]) if kind == "literal_error" else []
    hint = did_you_mean(value, choices) if isinstance(value, str) and len(choices) > 1 else ""
    return [f"{message} (got {show_value(value)}){hint}"]


def split_path(problem: str) -> tuple[str, str]:
    """("a.b", "message") of a "a.b: message" line; ("", line) when it names no key."""
    match = _LEADING_PATH.match(problem)
    return (match[1], match[2]) if match else ("", problem)


def show_value(value: Any) -> str:
    """A config value as the user wrote it (true/false/null, quoted strings), cut to 60 characters."""
    text = "null" if value is None else str(value).lower() if isinstance(value, bool) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _field_names(owner: Any) -> list[str]:
    if isinstance(owner, type) and issubclass(owner, BaseModel):
        return list(owner.model_fields)
    if isinstance(owner, list):  # a union of models: any member's keys
        return [name for member in owner for name in _field_names(member)]
    return []


def _walk(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[str, Any]:
    """The user-facing path of `loc` and the type found there: a model, a list of models or a TagBy."""
    path = ""
    current: Any = model
    for key in loc:
        current, _, members = _unwrap(current)
        if members:  # pydantic names the union member it tried: a tag or a type label, not a user key
            current = next((m for m, tag in members if key in (tag, getattr(m, "__name__", None))), None)
            continue
        path = f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else str(key))
        current = _child(current, key)
    current, chooser, members = _unwrap(current)
    return path, chooser or ([m for m, _ in members] if members else current)


def _child(current: Any, key: Any) -> Any:
    if isinstance(current, type) and issubclass(current, BaseModel):
        field = current.model_fields.get(key)
        return field.rebuild_annotation() if field is not None else None  # with a union's discriminator
    args = get_args(current)
    if get_origin(current) is tuple and args:
        return args[0] if args[-1] is Ellipsis else args[min(int(key), len(args) - 1)]
    if get_origin(current) in (list, set, frozenset) and args:
        return args[0]
    if get_origin(current) is dict and args:
        return args[1]
    return None


def _unwrap(tp: Any) -> tuple[Any, TagBy | None, list[tuple[Any, str | None]]]:
    """Strip Annotated and Optional; a remaining union comes back as (member, tag) pairs with its chooser."""
    chooser = None
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            inner, *meta = get_args(tp)
            chooser = next((m.discriminator for m in meta if isinstance(m, Discriminator)), chooser)
            tp = inner
            continue
        if origin in (Union, types.UnionType):
            members = [arg for arg in get_args(tp) if arg is not type(None)]
            if len(members) == 1:
                tp = members[0]
                continue
            return tp, chooser if isinstance(chooser, TagBy) else None, [_tagged(m) for m in members]
        return tp, None, []


def _tagged(member: Any) -> tuple[Any, str | None]:
    if get_origin(member) is Annotated:
        inner, *meta = get_args(member)
        return inner, next((m.tag for m in meta if isinstance(m, Tag)), None)
    return member, None
