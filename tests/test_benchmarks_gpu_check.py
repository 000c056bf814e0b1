"""benchmarks/gpu_check.sh --dry-run: every section of the prepared GPU run executes on the CPU (tiny sizes) and
passes, the report and JSON are written; a failing or overrunning section is reported and the others still run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_dry_run_executes_every_section_and_writes_report_and_json(tmp_path):
    pytest.importorskip("lightly")
    from benchmarks.gpu_check import SECTIONS

    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path / "unused")}
    done = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--dry-run", "--out", str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    results = json.loads((tmp_path / "results.json").read_text())
    statuses = {s["name"]: s["status"] for s in results["sections"]}
    assert statuses == {name: "passed" for name, *_ in SECTIONS}, done.stdout[-4000:] + done.stderr[-2000:]
    assert done.returncode == 0 and results["dry_run"] is True
    checks = {c["check"]: c for s in results["sections"] for c in s["checks"]}
    # the CUDA-only parts say so instead of passing silently
    assert checks["simclr 16-mixed"]["result"] == "skipped" and "no CUDA" in checks["simclr 16-mixed"]["detail"]
    assert checks["FSDP strategy itself"]["result"] == "skipped"
    # what the CPU can run, it ran: every method's bf16 steps, the 2-process gather, resume, compile, the benchmark
    methods = ("simclr", "byol", "swav", "ijepa", "dmt_jepa", "tjepa", "skeleton_mae", "slap", "slap_infonce")
    assert all(checks[f"{m} bf16-mixed: 2 finite losses"]["result"] == "pass" for m in methods)
    assert checks["NT-Xent on 2 processes (gloo, cpu) = 1 process on the whole batch"]["result"] == "pass"
    assert checks["swav: checkpoint after 3 steps + resume to 5 = uninterrupted 5 steps"]["result"] == "pass"
    report = (tmp_path / "report.md").read_text()
    assert report.startswith("# zoo GPU check") and "DRY RUN" in report and "| precision | passed |" in report
    assert not (tmp_path / "unused").exists()  # --out wins over $OUT


def test_a_failing_or_overrunning_section_is_reported_and_does_not_stop_the_run(tmp_path):
    from benchmarks.gpu_check import Context, run_section

    ctx = Context(True, "cpu", tmp_path, 1, tmp_path)

    def broken(ctx, s):
        s.check("before the error", True)
        raise RuntimeError("boom")

    def slow(ctx, s):
        s.check("first part", True)
        time.sleep(30)

    def failing(ctx, s):
        s.check("a wrong number", False, "1 != 2")

    errored = run_section(ctx, "broken", broken, 10)
    assert errored.status == "ERROR" and "RuntimeError: boom" in errored.error and errored.checks[0]["result"] == "pass"
    start = time.perf_counter()
    timed_out = run_section(ctx, "slow", slow, 0.5)
    assert timed_out.status == "TIMEOUT" and time.perf_counter() - start < 5 and len(timed_out.checks) == 1
    assert run_section(ctx, "failing", failing, 10).status == "FAILED"


def test_sync_watch_places_a_sync_warning_at_the_zoo_line_that_caused_it(monkeypatch):
    # on a GPU torch.cuda.set_sync_debug_mode("warn") issues these warnings; here torch.isfinite issues one, called
    # from zoo's NaN guard, so the attribution and the deliberate-sync filter are exercised without CUDA
    import torch

    from benchmarks.gpu_check import DELIBERATE_SYNCS, SyncWatch
    from tests.method_cases import CASES

    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", lambda mode: None)
    isfinite = torch.isfinite

    def warning_isfinite(x):
        import warnings

        warnings.warn("called a synchronizing CUDA operation", UserWarning, stacklevel=2)
        return isfinite(x)

    monkeypatch.setattr(torch, "isfinite", warning_isfinite)
    model = CASES["simclr"].build()
    watch = SyncWatch(profile=False)  # the profiler's start-up alone takes seconds on the CPU
    watch.start()
    try:
        model._check_finite({"loss": torch.tensor(1.0)}, 0)
    finally:
        watch.stop()
    (site, count), = watch.sites.items()
    assert site.startswith("zoo/methods/base.py:") and "_check_finite" in site and count == 1
    assert any(name in site for name in DELIBERATE_SYNCS)
