"""``python -m benchmarks.run [--device cuda] [--repeats N]``: zoo vs lightly for SimCLR, SwAV and BYOL.

For each method, zoo and lightly are built side by side in one process and measured INTERLEAVED: every repeat times
a block of steps and one epoch of each library, the library order alternating every repeat and the step/epoch order
every other repeat, so a change in machine load hits both libraries and both measurements alike. Warm-up (steps, and a first batch through each data path) is never timed. Reported:
medians with min–max over the repeats, and the zoo/lightly ratio of each repeat (median, min–max).

- **step**: samples/s of forward + backward + optimizer step on ready-made views (same shapes for both);
- **end-to-end**: samples/s of one epoch of ``--epoch-batches`` batches through the library's own data path — zoo's
  loader yields raw uint8 images and views are made on the device; lightly's runs its CPU transforms in
  ``--workers`` persistent worker processes. The clock starts before the epoch's iterator is created, so no batch is
  prepared outside it (worker processes are started during the untimed warm-up);
- **peak memory**: CUDA ``max_memory_allocated`` during the step blocks; on the CPU only with ``--cpu-memory`` (each
  contender in its own process, the peak RSS growth sampled by a thread — never during the timed blocks).

Sanity check: an epoch does the step's work and more, so end-to-end throughput can exceed step throughput only by
noise. A row whose slowest epoch is faster than its fastest step block is reported loudly (SANITY CHECK FAILED).

Writes ``<out>/benchmark-<device>.md``, ``.json`` and ``.png`` (the plot if matplotlib is installed).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.models import METHODS, Contender, Setting, build, example_views


class _RSSPeak:
    """Peak resident set size (bytes) of this process while the context is open, sampled by a thread."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    @staticmethod
    def current() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.current())
            time.sleep(self.interval)

    def __enter__(self) -> _RSSPeak:
        self.peak = self.current()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.current())


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _autocast(setting: Setting, precision: str):
    return torch.autocast(device_type=torch.device(setting.device).type, dtype=torch.bfloat16, enabled=precision == "bf16")


def _to_device(batch: Any, device: str) -> Any:
    if isinstance(batch, (list, tuple)):
        return [b.to(device, non_blocking=True) for b in batch]
    return batch.to(device, non_blocking=True)


class _Runner:
    """One contender with its loader: timed step blocks and timed epochs."""

    def __init__(self, contender: Contender, setting: Setting, args: argparse.Namespace, images: np.ndarray) -> None:
        self.contender, self.setting, self.args = contender, setting, args
        self.views = example_views(contender.method, setting)
        workers = 0 if contender.library == "zoo" else args.workers  # zoo's loader only indexes in-memory tensors
        self.loader = contender.loader_fn(images, workers)
        self.peak_memory: float | None = None

    def warm_up(self) -> None:
        with _autocast(self.setting, self.args.precision):
            for _ in range(self.args.warmup):
                self.contender.step_fn(self.views)
            # one batch through the data path: worker processes start, lazy imports and caches fill
            iterator = iter(self.loader)
            self.contender.step_fn(self.contender.views_fn(_to_device(next(iterator), self.setting.device)))
            del iterator
        _sync(self.setting.device)

    def step_block(self) -> float:
        cuda = self.setting.device.startswith("cuda")
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        with _autocast(self.setting, self.args.precision):
            _sync(self.setting.device)
            start = time.perf_counter()
            for _ in range(self.args.steps):
                self.contender.step_fn(self.views)
            _sync(self.setting.device)
            seconds = time.perf_counter() - start
        if cuda:
            self.peak_memory = max(self.peak_memory or 0.0, torch.cuda.max_memory_allocated() / 2**20)
        return self.args.steps * self.setting.batch_size / seconds

    def epoch(self) -> float:
        seen = 0
        with _autocast(self.setting, self.args.precision):
            _sync(self.setting.device)
            start = time.perf_counter()
            for batch in self.loader:  # the iterator is created inside the timed region
                self.contender.step_fn(self.contender.views_fn(_to_device(batch, self.setting.device)))
                seen += self.setting.batch_size
            _sync(self.setting.device)
            seconds = time.perf_counter() - start
        return seen / seconds


def measure_method(method: str, setting: Setting, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Interleaved repeats of zoo and lightly for one method: {library: {"step": [...], "epoch": [...], ...}}."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.epoch_batches * setting.batch_size, setting.image_size, setting.image_size, 3), dtype=np.uint8)
    runners: dict[str, _Runner] = {}
    for library in args.libraries:
        torch.manual_seed(0)
        runners[library] = _Runner(build(library, method, setting), setting, args, images)
        runners[library].warm_up()
    results: dict[str, dict[str, Any]] = {lib: {"step": [], "epoch": []} for lib in runners}
    for repeat in range(args.repeats):
        # both orders alternate (library: every repeat; step/epoch: every other), so a load that drifts during the
        # run favours neither a library nor a kind of measurement
        order = list(runners) if repeat % 2 == 0 else list(reversed(runners))
        kinds = ("step", "epoch") if repeat // 2 % 2 == 0 else ("epoch", "step")
        for kind in kinds:
            for library in order:
                runner = runners[library]
                results[library][kind].append(runner.step_block() if kind == "step" else runner.epoch())
    for library, runner in runners.items():
        results[library]["peak_memory_mb"] = runner.peak_memory
    del runners
    gc.collect()
    if setting.device.startswith("cuda"):
        torch.cuda.empty_cache()
    return results


def memory_of(library: str, method: str, setting: Setting, args: argparse.Namespace) -> float:
    """Peak RSS growth (MB) of building and stepping one contender, in a fresh process (``--one``)."""
    baseline = _RSSPeak.current()
    torch.manual_seed(0)
    with _RSSPeak() as rss, _autocast(setting, args.precision):
        contender = build(library, method, setting)
        views = example_views(method, setting)
        for _ in range(2):
            contender.step_fn(views)
    return max(0, rss.peak - baseline) / 2**20


def _memory_in_child(method: str, library: str, argv: list[str]) -> float:
    done = subprocess.run([sys.executable, "-m", "benchmarks.run", *argv, "--one", method, library],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"memory measurement of {library} {method} failed:\n{done.stderr[-3000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(results: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per (method, library) with medians, ranges, per-repeat zoo/lightly ratios and the sanity check."""
    rows = []
    for method, by_library in results.items():
        for library, r in by_library.items():
            row: dict[str, Any] = {"method": method, "library": library, "step": _summary(r["step"]),
                                   "epoch": _summary(r["epoch"]), "peak_memory_mb": r.get("peak_memory_mb"),
                                   "step_samples": r["step"], "epoch_samples": r["epoch"]}  # fmt: skip
            # the epoch does the step's work plus data and views: its slowest run faster than the fastest step
            # block means the two measure different work (or the machine changed under one of them)
            row["sanity_ok"] = min(r["epoch"]) <= max(r["step"])
            if library == "zoo" and "lightly" in by_library:
                other = by_library["lightly"]
                step_ratios = [a / b for a, b in zip(r["step"], other["step"])]
                epoch_ratios = [a / b for a, b in zip(r["epoch"], other["epoch"])]
                row |= {"step_ratio": statistics.median(step_ratios), "step_ratio_range": [min(step_ratios), max(step_ratios)],
                        "epoch_ratio": statistics.median(epoch_ratios), "epoch_ratio_range": [min(epoch_ratios), max(epoch_ratios)]}  # fmt: skip
            rows.append(row)
    return rows


def _fmt(s: dict[str, float]) -> str:
    return f"{s['median']:.1f} ({s['min']:.1f}–{s['max']:.1f})"


def markdown(rows: list[dict[str, Any]], header: str) -> str:
    lines = [header, "",
             "| method | library | step samples/s, median (min–max) | step zoo/lightly | end-to-end samples/s | end-to-end zoo/lightly | peak memory MB | e2e ≤ step |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]  # fmt: skip
    for row in rows:
        step_ratio = epoch_ratio = ""
        if "step_ratio" in row:
            step_ratio = f"{row['step_ratio']:.2f}× ({row['step_ratio_range'][0]:.2f}–{row['step_ratio_range'][1]:.2f})"
            epoch_ratio = f"{row['epoch_ratio']:.2f}× ({row['epoch_ratio_range'][0]:.2f}–{row['epoch_ratio_range'][1]:.2f})"
        memory = f"{row['peak_memory_mb']:.0f}" if row["peak_memory_mb"] is not None else "—"
        lines.append(f"| {row['method']} | {row['library']} | {_fmt(row['step'])} | {step_ratio} | {_fmt(row['epoch'])} | "
                     f"{epoch_ratio} | {memory} | {'yes' if row['sanity_ok'] else '**NO**'} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot written", file=sys.stderr)
        return False
    methods = list(dict.fromkeys(r["method"] for r in rows))
    by = {(r["method"], r["library"]): r for r in rows}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, (key, title) in zip(axes, [("step", "training step (samples/s)"), ("epoch", "end-to-end epoch (samples/s)")]):
        x = np.arange(len(methods))
        for offset, library in ((-0.2, "zoo"), (0.2, "lightly")):
            present = [m for m in methods if (m, library) in by]
            if not present:
                continue
            med = np.array([by[(m, library)][key]["median"] for m in present])
            low = med - np.array([by[(m, library)][key]["min"] for m in present])
            high = np.array([by[(m, library)][key]["max"] for m in present]) - med
            ax.bar(x[[methods.index(m) for m in present]] + offset, med, 0.4, yerr=[low, high], capsize=3, label=library)
        ax.set_xticks(x, methods)
        ax.set_title(title)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats (each: a step block and an epoch per library)")
    parser.add_argument("--steps", type=int, default=5, help="training steps per timed step block")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per contender before the repeats")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--backbone", default="resnet18", help="any timm model name")
    parser.add_argument("--num-prototypes", type=int, default=300, help="SwAV prototypes")
    parser.add_argument("--precision", choices=["32", "bf16"], default="32")
    parser.add_argument("--channels-last", action="store_true", help="conv weights and inputs channels-last (both libraries)")
    parser.add_argument("--compile", action="store_true", help="zoo's compile=True (torch.compile of each network)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--workers", type=int, default=2, help="lightly's CPU transform worker processes")
    parser.add_argument("--epoch-batches", type=int, default=4, help="batches per end-to-end epoch")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--libraries", nargs="+", choices=["zoo", "lightly"], default=["zoo", "lightly"])
    parser.add_argument("--cpu-memory", action="store_true", help="also measure peak RSS per contender (one process each)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--no-isolate", action="store_true", help=argparse.SUPPRESS)  # accepted for old command lines
    parser.add_argument("--one", nargs=2, metavar=("METHOD", "LIBRARY"), help=argparse.SUPPRESS)  # a child's job
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    # import both libraries before any measurement, so no contender's first step pays for them
    import lightly.loss  # noqa: F401
    import lightly.models.modules  # noqa: F401
    import lightly.transforms  # noqa: F401

    import zoo.methods  # noqa: F401

    setting = Setting(args.backbone, args.image_size, args.batch_size, args.num_prototypes, args.device,
                      channels_last=args.channels_last, compile=args.compile)  # fmt: skip
    if args.one:
        print(memory_of(args.one[1], args.one[0], setting, args))
        return 0
    load = os.getloadavg()[0]
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for method in args.methods:
        results[method] = measure_method(method, setting, args)
        if args.cpu_memory and not args.device.startswith("cuda"):
            for library in args.libraries:
                results[method][library]["peak_memory_mb"] = _memory_in_child(method, library, argv if argv is not None else sys.argv[1:])
        for library, r in results[method].items():
            print(f"{method:7s} {library:8s} step {statistics.median(r['step']):.1f} samples/s  "
                  f"end-to-end {statistics.median(r['epoch']):.1f} samples/s", flush=True)
    rows = summarize(results)
    if args.device.startswith("cuda"):
        device = torch.cuda.get_device_name()
    else:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        device = f"CPU: {cores} cores available, torch intra-op threads {torch.get_num_threads()}"
    options = ", ".join(o for o, on in (("channels_last", args.channels_last), ("zoo compile", args.compile)) if on) or "no speed options"
    header = (f"{args.backbone}, {args.image_size}×{args.image_size}, batch {args.batch_size}, precision {args.precision}, {options}; "
              f"{args.repeats} interleaved repeats of {args.steps} steps and one {args.epoch_batches}-batch epoch per library "
              f"after {args.warmup} warm-up steps; lightly: {args.workers} data workers (processes beside the training "
              f"process); {device}; 1-min load average at start {load:.1f}")  # fmt: skip
    table = markdown(rows, header)
    insane = [f"{r['method']} {r['library']}" for r in rows if not r["sanity_ok"]]
    if insane:
        table += (f"\n**SANITY CHECK FAILED** for {', '.join(insane)}: an end-to-end epoch ran faster than every step block "
                  "of the same contender, so one of the two measurements is wrong or the machine's load changed a lot.\n")
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"benchmark-{args.device.split(':')[0]}"
    (args.out / f"{stem}.md").write_text(table)
    (args.out / f"{stem}.json").write_text(json.dumps({"header": header, "rows": rows, "args": {k: str(v) for k, v in vars(args).items()}}, indent=1))
    plot(rows, args.out / f"{stem}.png")
    print(table)
    if insane:
        print("=" * 100 + f"\nSANITY CHECK FAILED: end-to-end faster than the step for {', '.join(insane)}\n" + "=" * 100, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
