"""What survives the trip to the hosts: pdsh runs one remote shell line, mpirun/srun pass `-x NAME=value` verbatim.

DeepSpeed builds the pdsh line by string concatenation (double-quoting values and arguments that contain
spaces), so everything that reaches it is checked or quoted here first.
"""

from __future__ import annotations

import re
import shlex

from dsdet.errors import DsdetError

_PLAIN = re.compile(r"[\w@%+=:,./-]*")  # what DeepSpeed passes without quotes
_DOUBLE_QUOTE_SPECIAL = ('"', "$", "`", "\\", "\n", "\r")


def check_export_value(name: str, value: str, launcher: str) -> str:
    """Return `value` if DeepSpeed can export `name=value` to every rank unchanged under `launcher`."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise DsdetError(f"environment variable name {name!r} is not valid (letters, digits, '_')")
    bad = [c for c in _DOUBLE_QUOTE_SPECIAL if c in value]
    if bad:
        raise DsdetError(
            f"{name}: value {value!r} contains {bad[0]!r}, which DeepSpeed cannot pass to the hosts"
        )
    if launcher != "pdsh" and not _PLAIN.fullmatch(value):
        raise DsdetError(
            f"{name}: value {value!r} would reach the {launcher} ranks with literal quotes; "
            "use only letters, digits and _@%+=:,./-"
        )
    return value


def quote_for_pdsh(arg: str) -> str:
    """Quote one training argument so the remote shell that pdsh starts gives the rank exactly `arg`."""
    if " " not in arg:
        return shlex.quote(arg)  # DeepSpeed passes it as is, the remote shell removes the quotes
    bad = [c for c in _DOUBLE_QUOTE_SPECIAL if c != '"' and c in arg]  # DeepSpeed escapes '"' itself
    if bad:
        raise DsdetError(f"argument {arg!r} contains {bad[0]!r}, which cannot reach the pdsh hosts intact")
    return arg


def check_pdsh_directory(path: str) -> str:
    """Return `path` if pdsh's unquoted `cd PATH` on every host will work."""
    if not _PLAIN.fullmatch(path):
        raise DsdetError(
            f"working directory {path!r} has spaces or shell characters; DeepSpeed's pdsh launcher cds "
            "there unquoted, so run from a plainer path"
        )
    return path
