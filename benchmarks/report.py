"""docs/BENCHMARKS.md: the machine, date, versions and load, then each benchmark's section and plots."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from benchmarks.context import Section
from benchmarks.launch import REPO

PACKAGES = ("torch", "torchvision", "deepspeed", "faster-coco-eval", "pycocotools", "dsdet")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (the platform's processor string elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gib() -> str:
    """Total RAM in GiB from /proc/meminfo."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def accelerator() -> str:
    """The GPU the ranks use, or that they run on CPU."""
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    return "none: CPU only (gloo)"


def git_revision() -> str:
    """The checked-out commit, marked when the working tree has changes other than this suite's own outputs."""
    outputs = [":!docs/BENCHMARKS.md", ":!docs/images/bench_*"]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", ".", *outputs], cwd=REPO, capture_output=True, text=True
        )
    except OSError:
        return "unknown"
    return head.stdout.strip() + (" + uncommitted changes" if dirty.stdout.strip() else "")


def versions() -> str:
    """Python and the installed versions of the packages that matter."""
    found = [f"Python {platform.python_version()}"]
    for name in PACKAGES:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} not installed")
    return ", ".join(found)


def load_average() -> str:
    """The 1/5/15-minute load averages."""
    return " / ".join(f"{value:.1f}" for value in os.getloadavg())


def header(
    mode: str, started: datetime, elapsed_s: float, load_at_start: str, command: str, findings: str
) -> list[str]:
    """Title, how it was produced, where the profiling notes are, and the machine."""
    return [
        "# Benchmarks",
        "",
        f"Written by `{command}` ({mode} mode) on {started.strftime('%Y-%m-%d %H:%M UTC')} in "
        f"{elapsed_s / 60:.1f} min. Every comparison ran side by side in one invocation and is given as a "
        "ratio; absolute numbers depend on the machine and its load. A section that opens with 'Kept from' was "
        "run by an earlier invocation. Do not edit by hand: run the suite again.",
        "",
        f"Why dsdet is slower where it is (profiles, causes, proposed fixes): [benchmarks/FINDINGS.md]({findings}), "
        "written by hand.",
        "",
        "| | |",
        "| --- | --- |",
        f"| machine | {platform.node()}, {platform.system()} {platform.release()} |",
        f"| CPU | {cpu_model()}, {os.cpu_count()} cores |",
        f"| memory | {memory_gib()} |",
        f"| accelerator | {accelerator()} |",
        f"| load average (1/5/15 min) | {load_at_start} at the start, {load_average()} at the end |",
        f"| versions | {versions()} |",
        f"| dsdet revision | {git_revision()} |",
        "",
    ]


def write_report(
    path: Path, mode: str, sections: list[Section], started: datetime, load_at_start: str, command: str
) -> Path:
    """Write the markdown report with each section's plots linked relative to it; returns `path`."""
    elapsed = (datetime.now(timezone.utc) - started).total_seconds()
    findings = os.path.relpath(REPO / "benchmarks" / "FINDINGS.md", path.parent)
    lines = header(mode, started, elapsed, load_at_start, command, findings)
    for section in sections:
        lines += [f"## {section.title}", "", *section.lines]
        for plot in section.plots:
            lines += ["", f"![{plot.stem}]({os.path.relpath(plot, path.parent)})"]
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines).rstrip() + "\n")
    return path


_WRITTEN = re.compile(
    r"^Written by `(?P<command>[^`]*)` \((?P<mode>\w+) mode\) on (?P<date>[\d-]+ [\d:]+ UTC)"
)
KEPT_PREFIX = "_Kept from the report written"


def with_previous(path: Path, sections: list[Section]) -> list[Section]:
    """`sections` laid into the report at `path`: each replaces the previous section of its title, in the previous
    order, and the sections not re-run are kept, each opening with where it comes from (`--only`)."""
    fresh = {section.title: section for section in sections}
    merged = [fresh.pop(section.title, section) for section in _previous_sections(path)]
    return merged + list(fresh.values())


def _previous_sections(path: Path) -> list[Section]:
    if not path.is_file():
        return []
    text = path.read_text()
    written = next((m for line in text.splitlines() if (m := _WRITTEN.match(line))), None)
    origin = (
        f"{KEPT_PREFIX} on {written['date']} by `{written['command']}` ({written['mode']} mode)._"
        if written
        else f"{KEPT_PREFIX} before this one._"
    )
    kept = []
    for chunk in text.split("\n## ")[1:]:
        title, _, body = chunk.partition("\n")
        lines = body.strip("\n").splitlines()
        if not (lines and lines[0].startswith(KEPT_PREFIX)):
            lines = [origin, "", *lines]
        kept.append(Section(title, lines))
    return kept


def command_line() -> str:
    """How this invocation was started, for the report."""
    return " ".join(["python -m benchmarks", *sys.argv[1:]])
