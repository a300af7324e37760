"""Safety: files users hand in are read without running code in them, nothing they type reaches a shell
unquoted, and checkpoint tags cannot leave the checkpoint directory."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest
import torch

import dsdet
from dsdet.engine import checkpoint as ckpt
from dsdet.errors import DsdetError
from tests.runners import run
from tests.test_engine_train import small_run

PACKAGE = Path(dsdet.__file__).parent
# DeepSpeed's own checkpoint files, written by our training (DeepSpeed pickles more than tensors in them).
OWN_CHECKPOINT_READERS = {"engine/checkpoint/universal.py", "engine/checkpoint/export.py"}


class Payload:
    """Unpickling this creates `path`: proof that a loader ran code from the file."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def calls(name: str) -> list[tuple[str, ast.Call]]:
    """Every call of `name` (e.g. 'torch.load') in the dsdet package, with the file it is in."""
    found = []
    for file in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == name:
                found.append((str(file.relative_to(PACKAGE)), node))
    return found


def keyword(call: ast.Call, name: str) -> str | None:
    return next((ast.unparse(k.value) for k in call.keywords if k.arg == name), None)


def test_torch_load_is_weights_only_outside_our_own_checkpoints():
    loads = calls("torch.load")
    assert loads
    for file, call in loads:
        if file not in OWN_CHECKPOINT_READERS:
            assert keyword(call, "weights_only") == "True", f"{file}:{call.lineno}"


def test_no_shell_and_no_unsafe_yaml():
    for name in ("os.system", "os.popen", "yaml.load", "yaml.unsafe_load", "pickle.load", "pickle.loads"):
        if name == "yaml.load":
            assert all(keyword(c, "Loader") == "_StrictLoader" for _, c in calls(name))  # a SafeLoader
            continue
        assert not calls(name), name
    for name in ("subprocess.run", "subprocess.Popen", "subprocess.check_call", "subprocess.check_output"):
        for file, call in calls(name):
            assert keyword(call, "shell") in (None, "False"), f"{file}:{call.lineno}"


def test_hostile_weights_file_is_refused_without_running_it(mini_data_dir, tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": Payload(tmp_path / "pwned")}, evil)
    proc = run(
        [
            sys.executable,
            "-m",
            "dsdet",
            "train",
            *small_run(mini_data_dir, tmp_path / "out"),
            f"model.weights={evil}",
        ],
        check=False,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert f"dsdet: error: model.weights: cannot read {evil}" in proc.stderr
    assert not (tmp_path / "pwned").exists()


def test_hostile_exported_model_is_refused_without_running_it(tmp_path):
    evil = tmp_path / "model.pt"
    torch.save(Payload(tmp_path / "pwned"), evil)
    meta = {"model": {"name": "tinyssd", "num_classes": 4}, "class_names": [], "label_to_category_id": {}}
    Path(f"{evil}.json").write_text(json.dumps(meta))
    proc = run([sys.executable, "-m", "dsdet", "predict", "--checkpoint", str(evil), str(evil)], check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert f"dsdet: error: cannot read exported model {evil}" in proc.stderr
    assert not (tmp_path / "pwned").exists()


def test_yaml_tags_do_not_construct_objects(tmp_path):
    experiment = tmp_path / "exp.yaml"
    experiment.write_text(f"train: !!python/object/apply:os.system ['touch {tmp_path / 'pwned'}']\n")
    proc = run([sys.executable, "-m", "dsdet", "train", str(experiment)], check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "exp.yaml: invalid YAML" in proc.stderr
    assert not (tmp_path / "pwned").exists()


def test_training_arguments_reach_the_remote_shell_quoted(tmp_path):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("node1 slots=2\nnode2 slots=1\n")
    hostile = f"train.output_dir=/tmp/x;touch {tmp_path / 'pwned'}"
    proc = run(
        [sys.executable, "-m", "dsdet", "launch", "--hostfile", str(hostfile), "--no-ssh-check", "--dry-run"]
        + ["--", "train", hostile],
        cwd=tmp_path,
    )
    assert f"'{hostile}'" in proc.stdout  # single-quoted for pdsh's remote shell
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("name", ["a b", "-rf", ".hidden", "x;rm"])
def test_checkpoint_tags_stay_plain_names(tmp_path, name):
    tag_dir = tmp_path / "checkpoints" / name
    tag_dir.mkdir(parents=True)
    (tag_dir / "mp_rank_00_model_states.pt").write_bytes(b"x")
    assert name not in ckpt.list_tags(tmp_path / "checkpoints")
    with pytest.raises(DsdetError, match="is not a plain name"):
        ckpt.find_checkpoint(tag_dir)
