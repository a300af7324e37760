"""Hostfile parsing and --include/--exclude, checked against DeepSpeed's own resource filter."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsdet.errors import DsdetError
from dsdet.launcher import parse_hostfile_text, read_hostfile, select_slots


def test_reads_hosts_in_order_skipping_comments_and_blank_lines(tmp_path):
    path = tmp_path / "hostfile"
    path.write_text(
        "# the cluster\n\nworker-1 slots=4\n  worker_0.example.org   slots=2  # gpu box\n"
        "10.0.0.7 slots=1\nfd00::2 slots=8\n"
    )
    assert list(read_hostfile(path).items()) == [
        ("worker-1", 4),
        ("worker_0.example.org", 2),
        ("10.0.0.7", 1),
        ("fd00::2", 8),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("node1\n", "hosts:1: expected 'HOST slots=N', got 'node1'"),
        ("node1 slots=2\nnode2 slots 2\n", "hosts:2: expected 'HOST slots=N', got 'node2 slots 2'"),
        ("node1 slots=2 max_slots=4\n", "hosts:1: expected 'HOST slots=N', got 'node1 slots=2 max_slots=4'"),
        ("node1 slots=0\n", "hosts:1: slots of host 'node1' must be a positive integer, got '0'"),
        ("node1 slots=-1\n", "hosts:1: slots of host 'node1' must be a positive integer, got '-1'"),
        ("node1 slots=two\n", "hosts:1: slots of host 'node1' must be a positive integer, got 'two'"),
        ("node1 slots=1.5\n", "hosts:1: slots of host 'node1' must be a positive integer, got '1.5'"),
        ("a slots=1\n\nb slots=1\na slots=2\n", "hosts:4: host 'a' is listed twice (first on line 1)"),
        ("$(reboot) slots=1\n", "hosts:1: host name '$(reboot)' is not allowed"),
        ("a;rm slots=1\n", "hosts:1: host name 'a;rm' is not allowed"),
        ("-oProxyCommand slots=1\n", "hosts:1: host name '-oProxyCommand' is not allowed"),
        ("user@node slots=1\n", "hosts:1: host name 'user@node' is not allowed"),
        ("", "hosts: the hostfile lists no hosts"),
        ("# only a comment\n\n", "hosts: the hostfile lists no hosts"),
    ],
)
def test_every_mistake_is_one_line_naming_file_and_line(text, message):
    with pytest.raises(DsdetError) as caught:
        parse_hostfile_text(text, "hosts")
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_the_example_hostfile_reads_the_same_in_deepspeed():
    from deepspeed.launcher.runner import fetch_hostfile

    example = Path(__file__).resolve().parents[1] / "hostfile.example"
    assert read_hostfile(example) == dict(fetch_hostfile(str(example))) == {"node-1": 4, "node-2": 4}


def test_missing_hostfile(tmp_path):
    with pytest.raises(DsdetError, match=r"hostfile .*nope does not exist"):
        read_hostfile(tmp_path / "nope")


POOL = {"a": 2, "b": 4, "c": 1}


@pytest.mark.parametrize(
    ("include", "exclude", "expected"),
    [
        ("", "", {"a": [0, 1], "b": [0, 1, 2, 3], "c": [0]}),
        ("b:2,0@a", "", {"a": [0, 1], "b": [0, 2]}),  # hostfile order, sorted slots
        ("b:3@b:1", "", {"b": [1, 3]}),
        ("b@b:1", "", {"b": [1]}),  # DeepSpeed merges the specs of one host, slots win
        ("", "a", {"b": [0, 1, 2, 3], "c": [0]}),
        ("", "b:0,3@c", {"a": [0, 1], "b": [1, 2]}),
    ],
)
def test_include_and_exclude(include, exclude, expected):
    assert select_slots(POOL, include, exclude) == expected


@pytest.mark.parametrize(
    ("include", "exclude", "message"),
    [
        ("zz", "", "--include 'zz': host 'zz' is not in the hostfile (a, b, c)"),
        ("a@", "", "--include 'a@': host '' is not in the hostfile"),
        ("", "b:4", "--exclude 'b:4': host 'b' has slots 0..3, not 4"),
        ("a:x", "", "--include 'a:x': slot 'x' of host 'a' is not an integer"),
        ("a:", "", "--include 'a:': slot '' of host 'a' is not an integer"),
        ("a", "b", "--include and --exclude cannot be used together"),
        ("", "a@b@c", "--exclude 'a@b@c' leaves no host to run on"),
        ("", "c:0@a@b", "--exclude 'c:0@a@b' leaves no host to run on"),
    ],
)
def test_filter_mistakes(include, exclude, message):
    with pytest.raises(DsdetError) as caught:
        select_slots(POOL, include, exclude)
    assert str(caught.value).startswith(message)


def test_ipv6_hosts_cannot_be_filtered_by_name():
    with pytest.raises(DsdetError, match="name IPv6 hosts in /etc/hosts"):
        select_slots({"fd00::2": 1, "a": 1}, include="fd00::2")


node_specs = st.tuples(st.sampled_from(["a", "b", "c", "zz"]), st.lists(st.integers(0, 4), max_size=3)).map(
    lambda spec: spec[0] + (":" + ",".join(map(str, spec[1])) if spec[1] else "")
)
filter_specs = st.lists(node_specs, min_size=1, max_size=4).map("@".join)


@settings(max_examples=300, deadline=None)
@given(spec=filter_specs, exclude=st.booleans())
def test_filters_agree_with_deepspeed(spec, exclude):
    """Same hosts and slots as DeepSpeed's own parser; a DsdetError wherever DeepSpeed fails or selects nothing."""
    from deepspeed.launcher.runner import parse_inclusion_exclusion

    include_str, exclude_str = ("", spec) if exclude else (spec, "")
    try:
        theirs = dict(parse_inclusion_exclusion(POOL, include_str, exclude_str))
    except ValueError:
        theirs = None
    if not theirs:
        with pytest.raises(DsdetError):
            select_slots(POOL, include_str, exclude_str)
    else:
        assert select_slots(POOL, include_str, exclude_str) == theirs
