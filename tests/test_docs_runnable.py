"""Every shell block of docs/*.md and README.md marked runnable (`<!-- runnable -->` on the line before a
```bash fence) runs as written: each page's blocks in order, with `bash -euo pipefail`, in a scratch folder
that has the repository's examples, presets and virtualenv."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.runners import BIN, REPO

MARKER = "<!-- runnable -->"
PAGES = [*sorted((REPO / "docs").glob("*.md")), REPO / "README.md"]
# Copied into the scratch folder, so that blocks can use them by the paths the docs show.
SHARED = ("examples", "ds_configs", "launch", "hostfile.example")
# A block that starts DeepSpeed gets .venv/bin last on PATH: torch JIT-builds DeepSpeed's ops with the
# first ninja on PATH, and switching ninja rebuilds them (minutes).
LAUNCHES_DEEPSPEED = re.compile(r"dsdet train|dsdet launch|dsdet\.train|\bdeepspeed\b|torchrun")
BLOCK_TIMEOUT_S = 600


@dataclass(frozen=True)
class Block:
    """A runnable shell block: where it is and its text."""

    page: Path
    line: int
    code: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def runnable_blocks(page: Path) -> list[Block]:
    """The marked blocks of one page, in order; a marker not followed by a ```bash block is an error."""
    lines = page.read_text().splitlines()
    blocks = []
    for index, line in enumerate(lines):
        if line.strip() != MARKER:
            continue
        where = f"{page.relative_to(REPO)}:{index + 1}"
        assert index + 1 < len(lines) and lines[index + 1].strip() == "```bash", (
            f"{where}: {MARKER} needs a ```bash block next"
        )
        end = next((j for j in range(index + 2, len(lines)) if lines[j].strip() == "```"), None)
        assert end is not None, f"{where}: the block never closes"
        blocks.append(Block(page, index + 3, "\n".join(lines[index + 2 : end])))
    return blocks


BLOCKS = {page: runnable_blocks(page) for page in PAGES if page.is_file()}


def test_the_docs_mark_runnable_blocks():
    pages = {page.name for page, blocks in BLOCKS.items() if blocks}
    assert {"quickstart.md", "concepts.md", "checkpoints.md", "datasets.md"} <= pages


def _scratch(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    for name in SHARED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, work / name)
        elif source.is_file():
            shutil.copy(source, work / name)
    (work / ".venv").symlink_to(BIN.parent)
    return work


@pytest.mark.parametrize("page", [page for page, blocks in BLOCKS.items() if blocks], ids=lambda p: p.name)
def test_runnable_blocks_run(page: Path, default_data_dir: Path, tmp_path: Path):
    work = _scratch(tmp_path)
    for block in BLOCKS[page]:
        path = os.environ["PATH"]
        path = (
            f"{path}{os.pathsep}{BIN}"
            if LAUNCHES_DEEPSPEED.search(block.code)
            else f"{BIN}{os.pathsep}{path}"
        )
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block.code],
            cwd=work,
            env={**os.environ, "PATH": path, "DSDET_DATA_DIR": str(default_data_dir)},
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT_S,
        )
        assert proc.returncode == 0, (
            f"{block.where} exited {proc.returncode}\n{block.code}\n--- stdout\n{proc.stdout[-3000:]}"
            f"\n--- stderr\n{proc.stderr[-3000:]}"
        )
