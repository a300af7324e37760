"""Dotted command-line overrides (`train.epochs=3`, `data.augment=[{name: hflip}]`) applied to a config dict."""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from typing import Any

from dsdet.config.files import parse_yaml
from dsdet.errors import DsdetError

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split `a.b.c=value` into (["a", "b", "c"], value), the value read as a YAML scalar or flow collection."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not _KEY.match(key):
        raise DsdetError(f"override {text!r}: expected dotted.key=value, e.g. train.epochs=3")
    return key.split("."), parse_yaml(raw, f"override {text!r}") if raw.strip() else None


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of `data` with every override set, creating sections as needed."""
    result = copy.deepcopy(data)
    for text in overrides:
        keys, value = parse_override(text)
        node = result
        for depth, key in enumerate(keys[:-1]):
            child = node.setdefault(key, {})
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                raise DsdetError(
                    f"override {text!r}: {'.'.join(keys[: depth + 1])} is a value, not a section"
                )
            node = child
        node[keys[-1]] = value
    return result
