"""Read config files (YAML or JSON) into plain dicts; every failure is one DsdetError naming the file."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from dsdet.errors import DsdetError


class _StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses repeated keys and reads 1e-4 as a number (YAML 1.2), not a string."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (dict, list)):  # PyYAML refuses these itself, with its own message
                continue
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"repeated key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text; a syntax error becomes DsdetError with the line and column."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise DsdetError(f"{source}: invalid YAML{where}: {problem}") from None


def parse_json(text: str, source: str) -> Any:
    """Parse JSON text, refusing repeated keys as DeepSpeed does."""

    def no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        repeated = sorted({k for k in keys if keys.count(k) > 1})
        if repeated:
            raise DsdetError(f"{source}: repeated key {repeated[0]!r}")
        return dict(pairs)

    try:
        return json.loads(text, object_pairs_hook=no_repeats)
    except json.JSONDecodeError as exc:
        raise DsdetError(
            f"{source}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None


def read_mapping(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a .json file (JSON) or any other file (YAML, a superset of JSON)."""
    path = Path(path)
    source = str(path)
    if path.is_dir():
        raise DsdetError(f"{source}: is a directory, not a config file")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DsdetError(f"{source}: no such file") from None
    except OSError as exc:
        raise DsdetError(f"{source}: cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DsdetError(f"{source}: not a text file (invalid UTF-8 at byte {exc.start})") from None
    if "\x00" in text:
        raise DsdetError(f"{source}: not a text file (contains NUL bytes)")
    data = parse_json(text, source) if path.suffix.lower() == ".json" else parse_yaml(text, source)
    if data is None:
        raise DsdetError(f"{source}: is empty")
    if not isinstance(data, dict):
        raise DsdetError(f"{source}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data
