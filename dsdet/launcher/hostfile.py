"""DeepSpeed hostfiles (`HOST slots=N` per line) and the `--include/--exclude` filters applied to them.

Parsing is stricter than DeepSpeed's own: every host name ends up in ssh and pdsh command lines, so only
plain names and IP literals are accepted, and each mistake is reported on one line naming file and line.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from dsdet.errors import DsdetError

_LINE = re.compile(r"(?P<host>\S+)\s+slots=(?P<slots>\S+)")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")


def is_safe_host(name: str) -> bool:
    """True for a host name made of [A-Za-z0-9._-] (not starting with '-') or an IPv4/IPv6 literal."""
    if _NAME.fullmatch(name):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def check_host(name: str, where: str) -> str:
    """Return `name` if it is a safe host name, else raise a DsdetError that says `where` it came from."""
    if not is_safe_host(name):
        raise DsdetError(
            f"{where}: host name {name!r} is not allowed: use letters, digits, '.', '_', '-' "
            "(not first) or an IP address"
        )
    return name


def _parse_slots(value: str, host: str, where: str) -> int:
    if not re.fullmatch(r"[0-9]+", value) or int(value) <= 0:
        raise DsdetError(f"{where}: slots of host {host!r} must be a positive integer, got {value!r}")
    return int(value)


def parse_hostfile_text(text: str, source: str) -> dict[str, int]:
    """Parse hostfile `text` into {host: slots} in file order; `source` names the file in errors."""
    hosts: dict[str, int] = {}
    first_line: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{source}:{number}"
        match = _LINE.fullmatch(line)
        if match is None:
            raise DsdetError(f"{where}: expected 'HOST slots=N', got {raw.strip()!r}")
        host = check_host(match["host"], where)
        if host in hosts:
            raise DsdetError(f"{where}: host {host!r} is listed twice (first on line {first_line[host]})")
        hosts[host] = _parse_slots(match["slots"], host, where)
        first_line[host] = number
    if not hosts:
        raise DsdetError(f"{source}: the hostfile lists no hosts (every line is blank or a comment)")
    return hosts


def read_hostfile(path: str | Path) -> dict[str, int]:
    """Read and validate a DeepSpeed hostfile into {host: slots} in file order."""
    path = Path(path)
    if not path.is_file():
        raise DsdetError(f"hostfile {path} does not exist")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DsdetError(f"hostfile {path} cannot be read: {exc}") from None
    return parse_hostfile_text(text, str(path))


def _parse_filter(spec: str, option: str, pool: dict[str, int]) -> dict[str, list[int]]:
    """Read `NAME[:SLOT[,SLOT...]][@...]` into {host: slots} ([] = the whole host), checked against `pool`."""
    wanted: dict[str, list[int]] = {}
    for node in spec.split("@"):
        name, has_slots, slot_text = node.partition(":")
        if ":" in slot_text:
            raise DsdetError(
                f"{option} {spec!r}: {node!r} is not NAME[:SLOT,...] (name IPv6 hosts in /etc/hosts)"
            )
        if name not in pool:
            raise DsdetError(f"{option} {spec!r}: host {name!r} is not in the hostfile ({', '.join(pool)})")
        slots = []
        for item in slot_text.split(",") if has_slots else []:
            if not re.fullmatch(r"[0-9]+", item.strip()):
                raise DsdetError(f"{option} {spec!r}: slot {item!r} of host {name!r} is not an integer")
            if int(item) >= pool[name]:
                raise DsdetError(
                    f"{option} {spec!r}: host {name!r} has slots 0..{pool[name] - 1}, not {int(item)}"
                )
            slots.append(int(item))
        wanted[name] = sorted(set(wanted.get(name, []) + slots))
    return wanted


def select_slots(pool: dict[str, int], include: str = "", exclude: str = "") -> dict[str, list[int]]:
    """Apply DeepSpeed's `--include`/`--exclude` to `pool`: {host: [slot ids]} in hostfile order."""
    if include and exclude:
        raise DsdetError("--include and --exclude cannot be used together")
    everything = {host: list(range(slots)) for host, slots in pool.items()}
    if include:
        wanted = _parse_filter(include, "--include", pool)
        chosen = {host: wanted[host] or everything[host] for host in pool if host in wanted}
    elif exclude:
        unwanted = _parse_filter(exclude, "--exclude", pool)
        chosen = {}
        for host, slots in everything.items():
            dropped = unwanted.get(host)
            kept = [] if dropped == [] else [s for s in slots if s not in (dropped or [])]
            if kept:
                chosen[host] = kept
    else:
        chosen = everything
    if not chosen:
        raise DsdetError(f"--exclude {exclude!r} leaves no host to run on")
    return chosen
