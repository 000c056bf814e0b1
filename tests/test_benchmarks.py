"""`python -m benchmarks.run` at a tiny setting: interleaved repeats, medians with ranges, the e2e ≤ step sanity
check, the JSON beside the table (the benchmark itself is not part of the suite)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("lightly")


def test_benchmark_runs_interleaved_repeats_and_writes_table_and_json(tmp_path):
    from benchmarks.run import main

    assert main(["--steps", "1", "--warmup", "0", "--repeats", "2", "--batch-size", "4", "--image-size", "16",
                 "--epoch-batches", "1", "--workers", "0", "--backbone", "resnet10t", "--num-prototypes", "16",
                 "--methods", "simclr", "swav", "--threads", "1", "--out", str(tmp_path)]) == 0  # fmt: skip
    table = (tmp_path / "benchmark-cpu.md").read_text()
    assert "interleaved repeats" in table and "torch intra-op threads" in table
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [tuple(cell.strip() for cell in row.split("|")[1:3]) for row in rows] == [
        (m, lib) for m in ("simclr", "swav") for lib in ("zoo", "lightly")
    ]
    result = json.loads((tmp_path / "benchmark-cpu.json").read_text())
    for row in result["rows"]:
        assert len(row["step_samples"]) == len(row["epoch_samples"]) == 2  # one per repeat
        for key in ("step", "epoch"):
            s = row[key]
            assert 0 < s["min"] <= s["median"] <= s["max"]
        assert row["sanity_ok"] == (min(row["epoch_samples"]) <= max(row["step_samples"]))
        if row["library"] == "zoo":
            lo, hi = row["step_ratio_range"]
            assert 0 < lo <= row["step_ratio"] <= hi


def test_sanity_check_flags_an_epoch_faster_than_every_step_block():
    from benchmarks.run import markdown, summarize

    results = {"simclr": {"zoo": {"step": [10.0, 11.0], "epoch": [20.0, 21.0]}, "lightly": {"step": [10.0, 12.0], "epoch": [9.0, 13.0]}}}
    rows = summarize(results)
    assert [r["sanity_ok"] for r in rows] == [False, True]
    assert rows[0]["step_ratio"] == pytest.approx((1.0 + 11 / 12) / 2)
    assert "**NO**" in markdown(rows, "header")
