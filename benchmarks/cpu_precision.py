"""``python -m benchmarks.cpu_precision``: the fastest correct CPU training setting, per method.

Two measurements, each method built from its shipped recipe (``configs/<method>/<data>.yaml``, through the same
``ZooCLI`` a user runs, so encoder, heads, views, masks, batch size and optimizer are the recipe's):

**speed** (default): seconds per training step of ``Trainer.fit`` on this CPU for

- ``fp32``     ``--trainer.precision 32-true``
- ``bf16``     ``--trainer.precision bf16-mixed`` (autocast)
- ``bf16_cl``  bf16-mixed + ``--model.init_args.channels_last true`` (methods with convolutions)
- ``compile``  fp32 + ``--model.init_args.compile true`` (inductor)
- ``bf16_compile`` bf16-mixed + compile

A step is one batch end to the next: loading the batch, the views/masks made on the device, forward, backward,
optimizer step, EMA update, logging — what ``zoo fit`` runs. Every repeat runs each setting for ``--warmup`` untimed
steps then ``--steps`` timed ones, the settings' order reversed every other repeat (A/B/A/B), so load from other
processes hits every setting alike; a setting's ratio to fp32 is taken within each repeat, and the medians over the
repeats are reported. Compilation happens in the first repeat's first steps: it is reported separately
(``first_steps_s``) and never timed as a step. A setting a method refuses (the image encoder's guard against
torch's wrong CPU bf16 gradients on 1-px-wide strided convolutions) is recorded with its one-line error.

**loss** (``--loss``): does bf16-mixed keep each method's loss curve within noise of fp32? Each method trains
``--loss-steps`` steps (epochs of at most 100 batches, the recipe's lr schedule compressed into them; batch size
min(recipe, ``--loss-batch``)) in fp32 with seeds 0 and 1, and in each compared setting with seed 0. Within noise:
``|mean(last 50 losses, setting) - mean(last 50, fp32 seed 0)| < 2 x |mean(last 50, fp32 seed 0) - mean(last 50,
fp32 seed 1)|`` (the seed-to-seed spread of fp32), or under 1% of the fp32 loss when the two seeds happen to agree
closer than that.

Writes ``benchmarks/results/cpu-precision-{speed,loss}.json`` (machine, load average before and after, every
sample) and prints a Markdown table. The generated data sets of the skeleton and audio recipes are built small
(``runs/bench-data``) on first use.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
DATA = ROOT / "runs" / "bench-data"

#: method -> (recipe, extra CLI arguments, has 4-D (convolution) weights: CNN encoders, a ViT's patch embedding, the
#: skeleton head's temporal convolution — where channels-last can change anything)
CASES: dict[str, tuple[str, list[str], bool]] = {
    "simclr": ("configs/simclr/fashion_mnist.yaml", [], True),
    "byol": ("configs/byol/fashion_mnist.yaml", [], True),
    # the shipped 12-px small crops reach layer4's stride-2 conv at 1 px, which CPU bf16 gets wrong (refused)
    "swav": ("configs/swav/fashion_mnist.yaml", [], True),
    # the smallest small crop that stays ≥ 2 px wide there (17 px → 9 → 5 → 3 → 2)
    "swav_crop18": ("configs/swav/fashion_mnist.yaml", ["--model.init_args.small_crop_size", "18"], True),
    "ijepa": ("configs/ijepa/fashion_mnist.yaml", [], True),
    "dmt_jepa": ("configs/dmt_jepa/fashion_mnist.yaml", [], True),
    "tjepa": ("configs/tjepa/adult.yaml", [], False),
    "skeleton_mae": (
        "configs/skeleton_mae/generated.yaml",
        ["--data.init_args.path", str(DATA / "skeleton-actions"), "--data.init_args.val_size", "100",
         "--data.init_args.knn_bank_size", "400"],
        True,
    ),  # fmt: skip
    "slap": (
        "configs/slap/music_captions.yaml",
        ["--data.init_args.manifest", str(DATA / "music-captions" / "train.csv"), "--data.init_args.test_manifest",
         str(DATA / "music-captions" / "test.csv"), "--data.init_args.val_size", "20", "--data.init_args.knn_bank_size", "100"],
        True,
    ),  # fmt: skip
}

#: setting -> (Lightning precision, method speed options)
SETTINGS: dict[str, tuple[str, dict[str, Any]]] = {
    "fp32": ("32-true", {}),
    "bf16": ("bf16-mixed", {}),
    "bf16_cl": ("bf16-mixed", {"channels_last": True}),
    "compile": ("32-true", {"compile": True}),
    "bf16_compile": ("bf16-mixed", {"compile": True}),
}


def machine() -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "")
    return {
        "cpu": model or platform.processor(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "avx512_bf16": bool(torch.cpu._is_avx512_bf16_supported()),
        "amx_tile": bool(torch.cpu._is_amx_tile_supported()),
        "loadavg": os.getloadavg(),
    }


def build_data() -> None:
    """The generated data sets of the skeleton and audio recipes, small (a few seconds; kept in runs/)."""
    if not (DATA / "skeleton-actions").exists():
        from zoo.data import skeleton_generator

        skeleton_generator.main([str(DATA / "skeleton-actions"), "--train", "1200", "--test", "200", "--frames", "32", "--persons", "1"])
    if not (DATA / "music-captions" / "train.csv").exists():
        from zoo.data import music_captions

        music_captions.main([str(DATA / "music-captions"), "--num-clips", "200", "--seconds", "3", "--renderer", "numpy"])


class _Clock:
    """Per-step wall time (one batch end to the next; the first from the epoch start) and the SSL loss of each step."""

    def __init__(self) -> None:
        import lightning as L

        class Callback(L.Callback):
            def on_train_epoch_start(cb, trainer, module) -> None:  # type: ignore[no-untyped-def]
                self.last, self.last_cpu = time.perf_counter(), time.process_time()

            def on_train_batch_end(cb, trainer, module, outputs, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
                now, cpu = time.perf_counter(), time.process_time()
                self.steps.append(now - self.last)
                self.cpu.append(cpu - self.last_cpu)
                self.last, self.last_cpu = now, cpu
                loss = trainer.callback_metrics.get("train/loss")
                self.losses.append(float(loss) if loss is not None else float("nan"))

        self.steps: list[float] = []
        self.cpu: list[float] = []  # CPU seconds of this process (all its threads) per step
        self.last_cpu = 0.0
        self.losses: list[float] = []
        self.last = 0.0
        self.callback = Callback()


class Method:
    """One recipe: its datamodule (set up once) and a builder of its model under any speed options."""

    def __init__(self, name: str, extra: list[str] = ()) -> None:  # type: ignore[assignment]
        from zoo.cli import ZooCLI

        recipe, args, self.conv = CASES[name]
        self.name = name
        cli = ZooCLI(
            args=["--config", str(ROOT / recipe), *args, *extra, "--trainer.logger", "false", "--trainer.callbacks", "[]",
                  "--trainer.enable_checkpointing", "false", "--trainer.accelerator", "cpu",
                  "--trainer.default_root_dir", tempfile.mkdtemp(prefix=f"zoo-bench-{name}-")],
            run=False,
        )  # fmt: skip
        self.trainer_config = {k: cli.config["trainer"].get(k) for k in ("gradient_clip_val", "gradient_clip_algorithm")}
        self.batch_size = int(cli.config["data"]["init_args"]["batch_size"])
        self.datamodule = cli.datamodule
        self.datamodule.setup("fit")
        self.hparams = {k: v for k, v in cli.model.hparams.items() if not k.startswith("_")}  # "_class_path": LightningCLI's
        self.cls = type(cli.model)
        if "vocabulary" in self.hparams and self.hparams["vocabulary"] is None:
            self.hparams["vocabulary"] = self.datamodule.vocabulary()

    def build(self, seed: int = 0, **overrides: Any) -> Any:
        torch.manual_seed(seed)
        return self.cls(**{**self.hparams, **overrides})

    def fit(self, model: Any, precision: str, max_steps: int, seed: int = 0, epoch_batches: int | None = None) -> _Clock:
        import lightning as L

        L.seed_everything(seed, verbose=False)
        clock = _Clock()
        trainer = L.Trainer(
            accelerator="cpu", devices=1, precision=precision, max_steps=max_steps, max_epochs=-1,
            limit_train_batches=epoch_batches, limit_val_batches=0, num_sanity_val_steps=0, logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            callbacks=[clock.callback], **self.trainer_config,
        )  # fmt: skip
        trainer.fit(model, train_dataloaders=self.datamodule.train_dataloader())
        return clock


def applicable(name: str, setting: str, conv: bool) -> bool:
    return setting != "bf16_cl" or conv


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"


def _summary(samples: list[list[float]], baseline: list[list[float]] | None) -> dict[str, Any]:
    """Median over repeats of each repeat's median step, and the per-repeat ratio to the baseline's same repeat."""
    medians = [statistics.median(x) for x in samples]
    entry: dict[str, Any] = {"median_s": statistics.median(medians), "repeat_medians_s": medians, "steps_s": samples}
    if baseline:
        ratios = [m / statistics.median(b) for m, b in zip(medians, baseline)]
        entry |= {"ratio_vs_fp32": statistics.median(ratios), "ratios": ratios}
    return entry


def speed(names: list[str], settings: list[str], repeats: int, warmup: int, steps: int, save: Any = None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in names:
        method = Method(name)
        chosen = [s for s in settings if applicable(name, s, method.conv)]
        models = {s: method.build(**SETTINGS[s][1]) for s in chosen}
        wall: dict[str, list[list[float]]] = {s: [] for s in chosen}
        cpu: dict[str, list[list[float]]] = {s: [] for s in chosen}
        first: dict[str, list[float]] = {}
        errors: dict[str, str] = {}
        for r in range(repeats):
            for s in chosen if r % 2 == 0 else chosen[::-1]:
                if s in errors:
                    continue
                try:
                    clock = method.fit(models[s], SETTINGS[s][0], warmup + steps)
                except Exception as e:  # a refused setting: recorded, the others go on
                    errors[s] = _one_line(e)
                    print(f"{name} {s}: {errors[s]}", flush=True)
                    continue
                if r == 0:
                    first[s] = clock.steps[:warmup]
                wall[s].append(clock.steps[warmup:])
                cpu[s].append(clock.cpu[warmup:])
                print(f"{name} {s} repeat {r}: {statistics.median(clock.steps[warmup:]):.3f} s/step wall, "
                      f"{statistics.median(clock.cpu[warmup:]):.3f} s/step CPU (warm-up {', '.join(f'{t:.2f}' for t in clock.steps[:warmup])} s)",
                      flush=True)  # fmt: skip
        row: dict[str, Any] = {}
        base_ok = "fp32" in chosen and "fp32" not in errors
        for s in chosen:
            if s in errors:
                row[s] = {"error": errors[s]}
                continue
            row[s] = {
                "wall": _summary(wall[s], wall["fp32"] if base_ok else None),
                "cpu": _summary(cpu[s], cpu["fp32"] if base_ok else None),
                "first_steps_s": first.get(s),
            }
        results[name] = row
        if save:
            save(results)
    return results


def _tail_mean(losses: list[float], n: int = 50) -> float:
    return statistics.fmean(losses[-n:])


def loss_check(names: list[str], settings: list[str], steps: int, batch: int, save: Any = None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in names:
        recipe_batch = Method(name).batch_size
        extra = ["--data.init_args.batch_size", str(min(recipe_batch, batch))]
        if name.startswith("swav"):  # the recipe frees the prototypes after one epoch: here after the first
            extra += ["--model.init_args.freeze_prototypes_steps", "100"]
        method = Method(name, extra)
        runs: dict[str, Any] = {}
        for label, setting, seed in [("fp32_seed0", "fp32", 0), ("fp32_seed1", "fp32", 1)] + [
            (s, s, 0) for s in settings if s != "fp32" and applicable(name, s, method.conv)
        ]:
            precision, options = SETTINGS[setting]
            try:
                clock = method.fit(method.build(seed, **options), precision, steps, seed, epoch_batches=100)
            except Exception as e:
                runs[label] = {"error": _one_line(e)}
                print(f"{name} {label}: {runs[label]['error']}", flush=True)
                continue
            runs[label] = {"losses": clock.losses, "tail_mean": _tail_mean(clock.losses), "median_step_s": statistics.median(clock.steps[2:]),
                           "median_step_cpu_s": statistics.median(clock.cpu[2:])}
            print(f"{name} {label}: last-50 mean loss {runs[label]['tail_mean']:.4f}", flush=True)
        base = runs["fp32_seed0"]["tail_mean"]
        spread = abs(base - runs["fp32_seed1"]["tail_mean"])
        tolerance = max(2 * spread, 0.01 * abs(base))
        for label, run in runs.items():
            if label.startswith("fp32") or "error" in run:
                continue
            run["difference"] = run["tail_mean"] - base
            run["within_noise"] = bool(abs(run["difference"]) < tolerance and all(map(_finite, run["losses"])))
        results[name] = {"batch_size": min(recipe_batch, batch), "steps": steps, "fp32_seed_spread": spread, "tolerance": tolerance, "runs": runs}
        if save:
            save(results)
    return results


def _finite(x: float) -> bool:
    return x == x and abs(x) != float("inf")


def speed_table(results: dict[str, Any], settings: list[str], clock: str) -> str:
    """Median s/step (ratio to fp32) per method and setting, by wall time or by the process's CPU time."""
    lines = ["| method | " + " | ".join(settings) + " |", "|---" * (len(settings) + 1) + "|"]
    for name, row in results.items():
        cells = []
        for s in settings:
            entry = row.get(s)
            if entry is None:
                cells.append("n/a")
            elif "error" in entry:
                cells.append("refused")
            else:
                e = entry[clock]
                ratio = f" ({e['ratio_vs_fp32']:.2f}×)" if "ratio_vs_fp32" in e and s != "fp32" else ""
                cells.append(f"{e['median_s']:.3f}{ratio}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def loss_table(results: dict[str, Any]) -> str:
    lines = ["| method | batch | fp32 s0 | fp32 s1 | tolerance | setting: last-50 mean (diff, within noise) |", "|---|---|---|---|---|---|"]
    for name, r in results.items():
        runs = r["runs"]
        others = []
        for label, run in runs.items():
            if label.startswith("fp32"):
                continue
            others.append(f"{label}: refused" if "error" in run else f"{label}: {run['tail_mean']:.4f} ({run['difference']:+.4f}, {'yes' if run['within_noise'] else 'NO'})")
        lines.append(
            f"| {name} | {r['batch_size']} | {runs['fp32_seed0']['tail_mean']:.4f} | {runs['fp32_seed1']['tail_mean']:.4f} | "
            f"{r['tolerance']:.4f} | {'; '.join(others)} |"
        )
    return "\n".join(lines)


def combined_table(out: Path) -> str:
    """One table from every saved result in ``out``: per method and setting, the median CPU and wall s/step with
    their ratios to fp32 (speed runs), and whether the loss stayed within noise of fp32 (loss runs)."""
    speed_rows: dict[str, dict[str, Any]] = {}
    loss_rows: dict[str, dict[str, Any]] = {}
    loads = []
    for path in sorted(out.glob("cpu-precision-*.json")):
        record = json.loads(path.read_text())
        loads += [record["machine"]["loadavg"][0], record["machine"].get("loadavg_end", [0])[0]]
        target = loss_rows if "-loss" in path.name else speed_rows
        for name, row in record["results"].items():
            target.setdefault(name, {}).update(row if target is speed_rows else {"loss": row})
    lines = ["| method | setting | CPU s/step (× fp32) | wall s/step (× fp32) | first steps, s | loss within noise of fp32 |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for name in CASES:
        row, loss = speed_rows.get(name, {}), loss_rows.get(name, {}).get("loss")
        for s in SETTINGS:
            entry = row.get(s)
            verdict = ""
            if loss and s in loss["runs"] and s != "fp32":
                run = loss["runs"][s]
                verdict = "refused" if "error" in run else (
                    f"{'yes' if run['within_noise'] else 'NO'} ({run['difference']:+.3f}; tolerance {loss['tolerance']:.3f})"
                )
            elif loss and s == "fp32":
                verdict = f"seeds 0/1: {loss['runs']['fp32_seed0']['tail_mean']:.3f} / {loss['runs']['fp32_seed1']['tail_mean']:.3f}"
            if entry is None and not verdict:
                continue
            if entry is None:
                cells = ["", "", ""]
            elif "error" in entry:
                cells = ["refused (" + entry["error"].split(":")[0] + ")", "", ""]
            else:
                def fmt(e: dict[str, Any], setting: str = s) -> str:
                    return f"{e['median_s']:.3f}" + (f" ({e['ratio_vs_fp32']:.2f}×)" if "ratio_vs_fp32" in e and setting != "fp32" else "")

                first = ", ".join(f"{t:.1f}" for t in entry.get("first_steps_s") or [])
                cells = [fmt(entry["cpu"]), fmt(entry["wall"]), first]
            lines.append(f"| {name} | {s} | " + " | ".join(cells) + f" | {verdict} |")
    load = f"load average {min(loads):.1f}–{max(loads):.1f} during the runs" if loads else ""
    return load + "\n\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per repeat (compilation happens here)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per repeat")
    parser.add_argument("--loss", action="store_true", help="compare the loss curves instead of timing steps")
    parser.add_argument("--loss-steps", type=int, default=200)
    parser.add_argument("--loss-batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--tag", default="", help="suffix of the JSON file name (runs of different settings side by side)")
    parser.add_argument("--table", action="store_true", help="print one table of every saved result in --out, then exit")
    args = parser.parse_args(argv)
    if args.table:
        print(combined_table(Path(args.out)))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    if any(m in ("skeleton_mae", "slap") for m in args.methods):
        build_data()
    info = machine()
    start = time.time()
    kind = "loss" if args.loss else "speed"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"cpu-precision-{kind}{'-' + args.tag if args.tag else ''}.json"

    def save(results: dict[str, Any]) -> None:  # after every method, so a long run that stops keeps what it measured
        info["loadavg_end"] = os.getloadavg()
        record = {"machine": info, "args": vars(args), "wall_s": time.time() - start, "results": results}
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record, indent=1))
        tmp.replace(path)

    if args.loss:
        results = loss_check(args.methods, args.settings, args.loss_steps, args.loss_batch, save)
        table = loss_table(results)
    else:
        results = speed(args.methods, args.settings, args.repeats, args.warmup, args.steps, save)
        table = "\n\n".join(f"{c} time per step:\n\n" + speed_table(results, args.settings, c) for c in ("wall", "cpu"))
    save(results)
    record = {"wall_s": time.time() - start}
    load = f"load average {info['loadavg'][0]:.1f} at the start, {info['loadavg_end'][0]:.1f} at the end"
    print(f"\n{info['cpu']}, {info['cores']} cores, torch {info['torch']} ({info['cpu_capability']}, "
          f"avx512_bf16={info['avx512_bf16']}, amx={info['amx_tile']}); {load}; {record['wall_s']:.0f} s\n")  # fmt: skip
    print(table)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
