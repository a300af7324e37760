"""The docs hold together: relative links point at files that exist, and the YAML snippets of the guides are
valid experiments."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dsdet.config import load_experiment
from tests.runners import REPO

PAGES = [*sorted((REPO / "docs").glob("*.md")), REPO / "README.md"]
GUIDES = ("quickstart.md", "concepts.md", "checkpoints.md", "datasets.md")
LINK = re.compile(r"\]\(([^)\s]+)\)")
YAML_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page: Path):
    targets = [t.split("#")[0] for t in LINK.findall(page.read_text()) if not re.match(r"[a-z]+:|#", t)]
    missing = [t for t in targets if not (page.parent / t).exists()]
    assert not missing, f"{page.name} links to missing files: {missing}"


@pytest.mark.parametrize("name", GUIDES)
def test_yaml_snippets_are_valid_experiments(name: str, tmp_path: Path):
    snippets = YAML_BLOCK.findall((REPO / "docs" / name).read_text())
    for index, snippet in enumerate(snippets):
        path = tmp_path / f"{name}-{index}.yaml"
        path.write_text(snippet)
        load_experiment(path)  # raises DsdetError naming every problem
