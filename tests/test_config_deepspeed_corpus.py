"""A corpus of DeepSpeed configs (tests/data/deepspeed_configs, see its README): whatever the installed DeepSpeed
refuses, `dsdet config validate` refuses too, with one error line and no traceback. DeepSpeed's verdict is
computed here, by DeepSpeed itself, at a stated world size (tests/deepspeed_verdict.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsdet.cli import main
from tests.deepspeed_verdict import deepspeed_verdict

CORPUS = Path(__file__).resolve().parent / "data" / "deepspeed_configs"
FILES = sorted(CORPUS.glob("*.json"))
WORLD_SIZE = 2


def test_the_corpus_is_large_and_has_both_verdicts():
    verdicts = [deepspeed_verdict(json.loads(path.read_text()), WORLD_SIZE) for path in FILES]
    assert len(FILES) >= 30
    assert sum(v is None for v in verdicts) >= 30 and sum(v is not None for v in verdicts) >= 10
    # the corpus names what DeepSpeed refuses: refused_*.json, and only those
    assert [p.name for p, v in zip(FILES, verdicts, strict=True) if v is not None] == [
        p.name for p in FILES if p.name.startswith("refused_")
    ]


@pytest.mark.parametrize("path", [p for p in FILES if p.name.startswith("refused_")], ids=lambda p: p.stem)
def test_what_deepspeed_refuses_dsdet_refuses_in_one_line(path, capsys):
    assert deepspeed_verdict(json.loads(path.read_text()), WORLD_SIZE) is not None
    assert main(["config", "validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dsdet: error: ") and "Traceback" not in err, err


# Files DeepSpeed's parser accepts that dsdet refuses on purpose -> the words of the rule that refuses each.
STRICTER = json.loads((CORPUS.parent / "deepspeed_configs_stricter.json").read_text())


@pytest.mark.parametrize("path", [p for p in FILES if not p.name.startswith("refused_")], ids=lambda p: p.stem)
def test_what_deepspeed_accepts_dsdet_accepts_unless_deliberately_stricter(path, capsys):
    assert deepspeed_verdict(json.loads(path.read_text()), WORLD_SIZE) is None
    code = main(["config", "validate", str(path)])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    if path.name in STRICTER:
        assert code == 2 and err.startswith("dsdet: error: ") and STRICTER[path.name] in err, err
        assert len(err.strip().splitlines()) == 1, err
    else:
        assert code == 0, err


def test_the_stricter_list_names_files_of_the_corpus():
    assert set(STRICTER) <= {p.name for p in FILES}


def test_settings_deepspeed_ignores_are_accepted_with_a_one_line_warning(capsys):
    assert main(["config", "validate", str(CORPUS / "ignored_comment_key.json")]) == 0
    err = capsys.readouterr().err
    assert "deepspeed._comment: DeepSpeed does not read this key; it has no effect" in err, err
    assert main(["config", "validate", str(CORPUS / "zero2_legacy_cpu_offload.json")]) == 0
    assert "cpu_offload is deprecated use offload_optimizer" in capsys.readouterr().err
