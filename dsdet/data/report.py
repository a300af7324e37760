"""Count what loading fixed or dropped, and log it as one line per kind of problem."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

LOGGER = logging.getLogger("dsdet.data")


@dataclass
class LoadReport:
    """Warnings of one dataset load: per kind, a count and the first place it happened."""

    source: str
    counts: dict[str, int] = field(default_factory=dict)
    first: dict[str, str] = field(default_factory=dict)

    def add(self, kind: str, where: str) -> None:
        """Count one occurrence of `kind` at `where` (a file, annotation or line)."""
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.first.setdefault(kind, where)

    def lines(self) -> list[str]:
        """One summary line per kind, in the order the kinds first appeared."""
        return [
            f"{self.source}: {count} {kind} (first: {self.first[kind]})"
            for kind, count in self.counts.items()
        ]

    def log(self) -> None:
        """Log the summary lines as warnings on the `dsdet.data` logger."""
        for line in self.lines():
            LOGGER.warning(line)
