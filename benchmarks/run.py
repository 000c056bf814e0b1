"""``python -m benchmarks.run [--device cuda] [--steps N]``: zoo vs lightly for SimCLR, SwAV and BYOL in one run.

For each method and library:
- **step**: samples/s of forward + backward + optimizer step on ready-made views (same shapes for both);
- **peak memory**: CUDA ``max_memory_allocated`` during the steps; on CPU the peak growth of the process RSS over
  the value before the model was built, sampled every 2 ms by a thread. In one process the allocator keeps memory
  freed by an earlier contender and the next one reuses it, so each contender runs in its own process
  (``--no-isolate`` runs all in this one: faster, CPU memory then depends on the order);
- **end-to-end**: samples/s over ``--epoch-batches`` batches from the library's own data path: zoo's loader yields raw
  uint8 images and views are made on the device; lightly's loader runs its CPU transforms in ``--workers`` workers.

Writes ``<out>/benchmark-<device>.md`` (the table) and ``<out>/benchmark-<device>.png`` (if matplotlib is installed).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.models import METHODS, Setting, build, example_views


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
    enabled = precision == "bf16"
    return torch.autocast(device_type=torch.device(setting.device).type, dtype=torch.bfloat16, enabled=enabled)


def measure(library: str, method: str, setting: Setting, args: argparse.Namespace) -> dict[str, float]:
    gc.collect()
    cuda = setting.device.startswith("cuda")
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    baseline = _RSSPeak.current()
    torch.manual_seed(0)
    with _RSSPeak() as rss:
        contender = build(library, method, setting)
        views = example_views(method, setting)
        with _autocast(setting, args.precision):
            for _ in range(args.warmup):
                contender.step_fn(views)
            _sync(setting.device)
            start = time.perf_counter()
            for _ in range(args.steps):
                contender.step_fn(views)
            _sync(setting.device)
        step_time = time.perf_counter() - start
    memory = torch.cuda.max_memory_allocated() if cuda else max(0, rss.peak - baseline)

    # end to end: the library's own loader and views, one pass over epoch_batches batches
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.epoch_batches * setting.batch_size, setting.image_size, setting.image_size, 3), dtype=np.uint8)
    workers = 0 if library == "zoo" else args.workers  # zoo's loader only indexes in-memory tensors
    loader = contender.loader_fn(images, workers)
    with _autocast(setting, args.precision):
        iterator = iter(loader)
        first = next(iterator)  # worker start-up is not part of the epoch
        start = time.perf_counter()
        seen = 0
        for batch in [first, *iterator]:
            batch = [b.to(setting.device, non_blocking=True) for b in batch] if isinstance(batch, list) else batch.to(setting.device)
            contender.step_fn(contender.views_fn(batch))
            seen += setting.batch_size
        _sync(setting.device)
        epoch_time = time.perf_counter() - start
    del contender, loader
    return {
        "step_samples_per_s": args.steps * setting.batch_size / step_time,
        "peak_memory_mb": memory / 2**20,
        "epoch_samples_per_s": seen / epoch_time,
    }


def _measure_in_child(method: str, library: str, argv: list[str]) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-m", "benchmarks.run", *argv, "--one", method, library],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark of {library} {method} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def markdown(results: dict[tuple[str, str], dict[str, float]], header: str) -> str:
    lines = [header, "",
             "| method | library | step samples/s | step zoo/lightly | peak memory MB | end-to-end samples/s | end-to-end zoo/lightly |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for method in dict.fromkeys(m for m, _ in results):
        zoo, lightly = results.get((method, "zoo")), results.get((method, "lightly"))
        for library, r in (("zoo", zoo), ("lightly", lightly)):
            if r is None:
                continue
            ratio_step = ratio_epoch = ""
            if library == "zoo" and lightly is not None:
                ratio_step = f"{r['step_samples_per_s'] / lightly['step_samples_per_s']:.2f}×"
                ratio_epoch = f"{r['epoch_samples_per_s'] / lightly['epoch_samples_per_s']:.2f}×"
            lines.append(f"| {method} | {library} | {r['step_samples_per_s']:.1f} | {ratio_step} | {r['peak_memory_mb']:.0f} | "
                         f"{r['epoch_samples_per_s']:.1f} | {ratio_epoch} |")
    return "\n".join(lines) + "\n"


def plot(results: dict[tuple[str, str], dict[str, float]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot written", file=sys.stderr)
        return False
    methods = list(dict.fromkeys(m for m, _ in results))
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, (key, title) in zip(axes, [("step_samples_per_s", "training step (samples/s)"),
                                       ("peak_memory_mb", "peak memory (MB)"),
                                       ("epoch_samples_per_s", "end-to-end epoch (samples/s)")]):
        x = np.arange(len(methods))
        for offset, library in ((-0.2, "zoo"), (0.2, "lightly")):
            ax.bar(x + offset, [results.get((m, library), {}).get(key, 0.0) for m in methods], 0.4, label=library)
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
    parser.add_argument("--steps", type=int, default=20, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--backbone", default="resnet18", help="any timm model name")
    parser.add_argument("--num-prototypes", type=int, default=300, help="SwAV prototypes")
    parser.add_argument("--precision", choices=["32", "bf16"], default="32")
    parser.add_argument("--workers", type=int, default=2, help="lightly's CPU transform workers")
    parser.add_argument("--epoch-batches", type=int, default=20, help="batches in the end-to-end epoch")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--libraries", nargs="+", choices=["zoo", "lightly"], default=["zoo", "lightly"],
                        help="measured in this order (CPU memory of a later contender can profit from an earlier one's)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--no-isolate", dest="isolate", action="store_false", help="all contenders in this process")
    parser.add_argument("--one", nargs=2, metavar=("METHOD", "LIBRARY"), help=argparse.SUPPRESS)  # a child's job
    args = parser.parse_args(argv)
    # import both libraries before any measurement, so the first contender's memory does not include them
    import lightly.loss, lightly.models.modules, lightly.transforms  # noqa: F401, E401
    import zoo.methods  # noqa: F401

    setting = Setting(args.backbone, args.image_size, args.batch_size, args.num_prototypes, args.device)
    if args.one:
        print(json.dumps(measure(args.one[1], args.one[0], setting, args)))
        return 0
    results: dict[tuple[str, str], dict[str, float]] = {}
    for method in args.methods:
        for library in args.libraries:
            if args.isolate:
                results[(method, library)] = _measure_in_child(method, library, argv if argv is not None else sys.argv[1:])
            else:
                results[(method, library)] = measure(library, method, setting, args)
            print(f"{method:7s} {library:8s} " + "  ".join(f"{k}={v:.1f}" for k, v in results[(method, library)].items()), flush=True)
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU ({os.cpu_count()} cores, torch threads {torch.get_num_threads()})"
    header = (f"{'one process per contender' if args.isolate else 'one process'}; {args.backbone}, {args.image_size}×{args.image_size}, batch {args.batch_size}, precision {args.precision}, "
              f"{args.steps} timed steps, end-to-end over {args.epoch_batches} batches (lightly: {args.workers} workers); "
              f"{device}")
    table = markdown(results, header)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"benchmark-{args.device.split(':')[0]}"
    (args.out / f"{stem}.md").write_text(table)
    plot(results, args.out / f"{stem}.png")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
