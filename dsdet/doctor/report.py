"""The result of one doctor check and the two ways of showing them all: a text report and JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

STATUSES = ("ok", "info", "warn", "fail")
_LABELS = {"ok": "[ ok ]", "info": "[info]", "warn": "[warn]", "fail": "[FAIL]"}


@dataclass(frozen=True)
class Check:
    """One thing a run will meet: `fail` means a run cannot work, `warn` that part of dsdet will not."""

    group: str
    name: str
    status: str
    detail: str
    advice: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")


def exit_code(checks: Sequence[Check]) -> int:
    """0 when the basics work, 1 when something a run needs is missing or broken."""
    return 1 if any(check.status == "fail" for check in checks) else 0


def render_json(checks: Sequence[Check]) -> str:
    """{"ok": bool, "counts": {status: n}, "checks": [...]} as indented JSON."""
    counts = {status: sum(c.status == status for c in checks) for status in STATUSES}
    data = {"ok": exit_code(checks) == 0, "counts": counts, "checks": [asdict(c) for c in checks]}
    return json.dumps(data, indent=1)


def render_text(checks: Sequence[Check]) -> str:
    """Checks grouped under headings, one line each, advice indented below; a verdict at the end."""
    width = max(len(c.name) for c in checks)
    lines: list[str] = []
    for group in dict.fromkeys(c.group for c in checks):
        lines.append(f"\n{group}")
        for check in (c for c in checks if c.group == group):
            lines.append(f"  {_LABELS[check.status]} {check.name:<{width}}  {check.detail}")
            if check.advice:
                lines.append(f"         {'':<{width}}  -> {check.advice}")
    problems = [c for c in checks if c.status == "fail"]
    warnings = [c for c in checks if c.status == "warn"]
    if problems:
        verdict = f"{len(problems)} problem(s) stop a run: {', '.join(c.name for c in problems)}"
    else:
        verdict = "the basics work: dsdet can train here"
    if warnings:
        verdict += f"; {len(warnings)} warning(s): {', '.join(c.name for c in warnings)}"
    return "\n".join(lines).lstrip("\n") + f"\n\n{verdict}\n"
