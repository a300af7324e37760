"""The benchmark suite in smoke mode writes a well-formed report; its measuring helpers count right.

Benchmarks are not tests: nothing here asserts a speed, only that every number and plot is there."""

from __future__ import annotations

import json
import re
import sys

import pytest

from benchmarks.context import Section, failure_line
from benchmarks.launch import RunRecord
from benchmarks.measure import checkpoint_free_windows, cpu_seconds_per_image, steady_rates
from benchmarks.report import with_previous
from benchmarks.throughput import merge_launches
from tests.runners import REPO, run

SECTIONS = (
    "Training throughput, memory and start-up",
    "ZeRO model-state memory vs estimate",
    "COCO evaluation time",
    "Activation checkpointing and pipeline parallelism",
    "Checkpoint save and verify time",
    "Accuracy at a fixed budget",
)
NUMBER = re.compile(r"^-?\d[\d,]*(\.\d+)?$")


def tables(text: str) -> list[list[list[str]]]:
    """Each markdown table of `text` as rows of stripped cells."""
    found, current = [], []
    for line in text.splitlines():
        if line.startswith("|"):
            current.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif current:
            found.append(current)
            current = []
    return found + ([current] if current else [])


def row_named(all_tables: list[list[list[str]]], header_start: str, first_cell: str) -> list[str]:
    """The row starting with `first_cell` in the table whose header starts with `header_start`."""
    for table in all_tables:
        if table[0][0] == header_start:
            for row in table[2:]:
                if row[0] == first_cell:
                    return row
    raise AssertionError(f"no row {first_cell!r} in a table headed {header_start!r}")


@pytest.mark.distributed
def test_smoke_mode_writes_a_complete_report(mini_data_dir, tmp_path):
    report = tmp_path / "docs" / "BENCHMARKS.md"
    work = tmp_path / "runs"
    args = ["--smoke", "--report", report, "--work-dir", work, "--data-root", mini_data_dir]
    run([sys.executable, "-m", "benchmarks", *args], cwd=REPO, timeout=600)

    text = report.read_text()
    headings = [line[3:] for line in text.splitlines() if line.startswith("## ")]
    assert headings == list(SECTIONS)
    for key in ("| CPU |", "| versions |", "| load average", "deepspeed 0.", "torch 2."):
        assert key in text, key

    all_tables = tables(text)
    for table in all_tables:
        assert all(len(row) == len(table[0]) for row in table), table
        assert set(table[1][0]) <= {"-", ":"}, table[1]
    for config in ("plain DDP", "ZeRO-2"):
        row = row_named(all_tables, "run", config)
        images_per_s, steps, cpu_per_image = row[1], row[2], row[4]
        assert NUMBER.match(images_per_s) and float(images_per_s) > 0, row
        assert int(steps) >= 1 and NUMBER.match(cpu_per_image), row
        assert NUMBER.match(row[6]) and NUMBER.match(row[7]), row  # launch -> first step / checkpoint
    for scheme in ("rank 0 hashes every file", "Checkpointer (each rank a share)"):
        save = row_named(all_tables, "scheme", scheme)
        assert NUMBER.match(save[1]) and NUMBER.match(save[3]), save
    memory = row_named(all_tables, "configuration", "ZeRO-2")
    assert NUMBER.match(memory[1]) and NUMBER.match(memory[2]), memory
    for label in ("dsdet default experiment", "plain DDP, torchvision reference recipe"):
        ap = row_named(all_tables, "run", label)[2]
        assert NUMBER.match(ap) and 0 <= float(ap) <= 1, (label, ap)

    plots = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(plots) >= 5
    for plot in plots:
        assert (report.parent / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", plot

    results = json.loads((work / "results.json").read_text())
    throughput = results[SECTIONS[0]]["tinyssd"]
    assert [row["config"] for row in throughput] == ["plain DDP", "ZeRO-2"]
    assert all(row["ok"] and len(row["peak_rss_bytes"]) == 2 for row in throughput), throughput
    assert all(row["launches"] == 2 for row in throughput), throughput  # launched twice, in turns
    assert {"tinyssd_plain_ddp", "tinyssd_plain_ddp__2", "tinyssd_zero_2", "tinyssd_zero_2__2"} <= {
        path.name for path in work.iterdir()
    }


def test_unknown_data_root_is_one_line(tmp_path):
    proc = run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--data-root", tmp_path / "missing"],
        cwd=REPO,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "--data-root" in proc.stderr and "images/train not found" in proc.stderr


def test_steady_rates_skip_warmup_and_steps_after_checkpoints():
    rows = [{"step": step, "images_per_s": float(step)} for step in range(1, 13)]
    assert steady_rates(rows, warmup_steps=4, checkpoint_every=4) == [6.0, 7.0, 8.0, 10.0, 11.0, 12.0]
    assert checkpoint_free_windows(4, 12) == [(5, 8), (9, 12)]


def test_cpu_seconds_per_image_over_windows():
    # One sample per logged step; the process tree uses 0.5 CPU s per step, 2 s more during the save after step 4.
    samples, cpu = [], 0.0
    for step in range(1, 9):
        cpu += 0.5 + (2.0 if step == 5 else 0.0)
        samples.append((float(step), step, cpu))
    assert cpu_seconds_per_image(samples, [(5, 8)], images_per_step=4) == pytest.approx(0.5 / 4)
    assert cpu_seconds_per_image(samples, [(5, 9)], images_per_step=4) is None  # step 9 never logged


def test_failed_run_is_one_report_line_with_its_last_output(tmp_path):
    log = tmp_path / "run.log"
    log.write_text("starting\nTraceback ...\nValueError: bad thing\n\n")
    record = RunRecord("tinyssd ZeRO-2", ["cmd"], 1, 1.0, [], {}, str(log))
    assert not record.ok
    assert failure_line(record) == "- **tinyssd ZeRO-2** failed (exit 1): `ValueError: bad thing`"


def test_repeated_launches_pool_steps_and_keep_each_ranks_highest_peak():
    def launch(rates, cpu, peaks, first_step, error=None):
        return {
            "config": "ZeRO-2", "ok": error is None, "rates": rates, "images_per_s": None,
            "cpu_s_per_image": cpu, "peak_rss_bytes": peaks, "first_step_s": first_step,
            "first_checkpoint_s": None, "wall_s": 10.0, "error": error,
        }  # fmt: skip

    row = merge_launches(
        [launch([1.0, 2.0], 0.3, [100, 200], 5.0), launch([3.0, 4.0, 5.0], 0.1, [150, 120], 7.0)]
    )
    assert row["rates"] == [1.0, 2.0, 3.0, 4.0, 5.0] and row["images_per_s"] == 3.0
    assert row["cpu_s_per_image"] == pytest.approx(0.2) and row["first_step_s"] == 6.0
    assert row["peak_rss_bytes"] == [150, 200] and row["wall_s"] == 20.0 and row["launches"] == 2
    failed = merge_launches(
        [launch([1.0], 0.3, [100, 200], 5.0), launch([], None, [], None, error="- failed")]
    )
    assert not failed["ok"] and failed["images_per_s"] is None and failed["error"] == "- failed"


def test_only_keeps_the_sections_it_did_not_run(tmp_path):
    report = tmp_path / "BENCHMARKS.md"
    report.write_text(
        "# Benchmarks\n\nWritten by `python -m benchmarks` (full mode) on 2026-12-04 11:13 UTC in 33.3 min. ...\n\n"
        "## First\n\nold first\n\n## Second\n\n| a |\n| --- |\n\n![plot](images/x.png)\n"
    )
    merged = with_previous(report, [Section("Second", ["new second"]), Section("Third", ["new third"])])
    assert [section.title for section in merged] == ["First", "Second", "Third"]
    assert merged[0].lines == [
        "_Kept from the report written on 2026-12-04 11:13 UTC by `python -m benchmarks` (full mode)._",
        "",
        "old first",
    ]
    assert merged[1].lines == ["new second"] and merged[2].lines == ["new third"]
