"""DeepSpeed's internals are used in one module only, which warns outside the releases the tests cover."""

from __future__ import annotations

import re

import deepspeed
import pytest
import tomllib

from dsdet.engine.deepspeed_internals import TESTED_RELEASES, version_warning
from tests.runners import REPO

# Spellings of DeepSpeed internals: private attributes, checkpoint file names, segment names.
INTERNALS = re.compile(
    r"\.cdb\b|\bmicro_steps\b|agg_additional_losses|\bds_numel\b|\bds_tensor\b|_model_states\.pt|"
    r"zero_pp_rank|optim_states\.pt|deepspeed_allreduce_buffer"
)


def test_internals_are_used_in_one_module_only():
    users = sorted(
        str(path.relative_to(REPO))
        for path in (REPO / "dsdet").rglob("*.py")
        if INTERNALS.search(path.read_text())
    )
    assert users == ["dsdet/engine/deepspeed_internals.py"]


@pytest.mark.parametrize(
    ("version", "warns"), [("0.19.0", False), ("0.19.8", False), ("0.18.9", True), ("0.20.0", True)]
)
def test_version_outside_the_tested_releases_warns(version, warns):
    warning = version_warning(version)
    assert (warning is not None) == warns
    if warns:
        assert warning.startswith(
            f"DeepSpeed {version} is outside the releases dsdet is tested with (0.19.x)"
        )


def test_installed_deepspeed_is_tested_and_pinned():
    assert version_warning(deepspeed.__version__) is None
    pin = next(
        d
        for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
        if "deepspeed" in d
    )
    (first, last) = TESTED_RELEASES
    assert pin == f"deepspeed>={first[0]}.{first[1]},<{last[0]}.{last[1]}"
