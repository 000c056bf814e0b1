"""Smoke test of `python -m benchmarks.run` at a tiny setting (the benchmark itself is not part of the suite)."""

from __future__ import annotations

import pytest

pytest.importorskip("lightly")


def test_benchmark_runs_and_writes_the_table(tmp_path, capsys):
    from benchmarks.run import main

    assert main(["--steps", "1", "--warmup", "0", "--batch-size", "4", "--image-size", "16", "--epoch-batches", "1",
                 "--workers", "0", "--no-isolate", "--backbone", "resnet10t", "--num-prototypes", "16", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "benchmark-cpu.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [tuple(cell.strip() for cell in row.split("|")[1:3]) for row in rows] == [
        (m, lib) for m in ("simclr", "swav", "byol") for lib in ("zoo", "lightly")
    ]
    for row in rows:  # every measurement is a positive number
        cells = [c.strip() for c in row.split("|")[3:-1]]
        assert float(cells[0]) > 0 and float(cells[3]) > 0
