"""``zoo weights``: rebuild shipped checkpoints from their recipes, as listed in ``configs/weights.yaml``.

    zoo weights                          every checkpoint: prepare data, fit, evaluate + export, figures, then zoo cards
    zoo weights simclr-fashion-mnist     one (or several) of them
    zoo weights --list                   the names, with the commands each runs (--dry-run: the same, per step)
    zoo weights NAME --resume            continue an interrupted fit from its run directory's last.ckpt
    zoo weights NAME --skip-fit          evaluate, export and draw from the run directory's last.ckpt as it is
    zoo weights --jobs 2                 two checkpoints at a time, each with half the cores (logs in the run folder)

Every step is the public command a user would type (``zoo data build``, ``zoo fit``, ``zoo evaluate --export``), run
as a child process and echoed first, so the card of each checkpoint records the exact ``zoo fit`` command, the
machine, the seed and the wall time. The export goes through ``zoo evaluate --export``, which replaces only zoo's
files in ``checkpoints/<name>`` (and only after the run finished and the reloaded export embedded identically); the
figures are then drawn next to them and the card rewritten to show them (:func:`zoo.hub.rewrite_record`).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from zoo.cli.errors import ArgumentParser, CLIError

MANIFEST = Path(__file__).resolve().parents[2] / "configs" / "weights.yaml"
USAGE = "zoo weights [NAME ...] [--list] [--dry-run] [--resume | --skip-fit] [--jobs N] [--data-dir KEY=PATH] [--out DIR] [--runs DIR]"


def parser() -> Any:
    p = ArgumentParser(prog="zoo weights", usage_hint=USAGE, description="Rebuild shipped checkpoints from their recipes (configs/weights.yaml).")
    p.add_argument("names", nargs="*", metavar="NAME", help="checkpoints to rebuild (default: all in the manifest)")
    p.add_argument("--manifest", default=None, help="the recipe list (default: configs/weights.yaml of this checkout)")
    p.add_argument("--out", default="checkpoints", help="folder of the Hub checkpoint folders (default checkpoints)")
    p.add_argument("--runs", default="runs/weights", help="folder of the zoo fit run directories (default runs/weights)")
    p.add_argument("--data-dir", action="append", default=[], metavar="KEY=PATH", help="a data folder the manifest names as {KEY}")
    p.add_argument("--list", action="store_true", help="list the checkpoints and their commands, run nothing")
    p.add_argument("--dry-run", action="store_true", help="print every step's command, run nothing")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue each fit from its run directory's last.ckpt")
    mode.add_argument("--skip-fit", action="store_true", help="use the run directory's last.ckpt as it is (no training)")
    p.add_argument("--jobs", type=int, default=1, help="checkpoints at a time, each with cores/jobs torch threads and its output in RUNS/NAME.log")
    p.add_argument("--no-cards", action="store_true", help="do not rewrite MODEL_CARD.md at the end")
    p.add_argument("--map-points", type=int, default=3000, help="test rows in the t-SNE map (default 3000)")
    return p


def read_manifest(path: Path) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise CLIError(f"{path}: no such manifest (--manifest: the YAML listing the checkpoints' recipes)")
    try:
        manifest = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise CLIError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    entries = manifest.get("checkpoints")
    if not isinstance(entries, dict) or not entries:
        raise CLIError(f"{path}: needs a 'checkpoints:' mapping of name → recipe")
    for name, entry in entries.items():
        for key in ("fit", "evaluate"):
            if not isinstance((entry or {}).get(key), list):
                raise CLIError(f"{path}: checkpoints.{name}.{key} must be a list of command-line arguments")
    return manifest


def fill(args: list[Any], data_dirs: dict[str, str], where: str) -> list[str]:
    """The arguments with ``{key}`` replaced by the data folders."""
    out = []
    for arg in map(str, args):
        try:
            out.append(arg.format(**data_dirs))
        except KeyError as e:
            raise CLIError(f"{where}: {arg!r} names the data folder {e}, which neither data_dirs nor --data-dir {e.args[0]}=PATH gives") from None
    return out


def plan(name: str, entry: dict[str, Any], data_dirs: dict[str, str], args: Any) -> list[tuple[str, list[str]]]:
    """The (step, zoo arguments) of one checkpoint, in order."""
    run = Path(args.runs) / name
    out = Path(args.out) / name
    steps: list[tuple[str, list[str]]] = []
    for i, prep in enumerate(entry.get("prepare") or []):
        creates = prep.get("creates")
        if creates and Path(creates).exists():
            continue
        steps.append(("prepare", fill(prep["args"], data_dirs, f"checkpoints.{name}.prepare[{i}]")))
    if not args.skip_fit:
        fit = ["fit", *fill(entry["fit"], data_dirs, f"checkpoints.{name}.fit"), "--trainer.default_root_dir", str(run)]
        steps.append(("fit", [*fit, "--resume" if args.resume else "--overwrite", "--trainer.enable_progress_bar", "false"]))
    evaluate = ["evaluate", str(run / "checkpoints" / "last.ckpt"), *fill(entry["evaluate"], data_dirs, f"checkpoints.{name}.evaluate"),
                "--export", str(out), "--output", str(run / "results.json")]  # fmt: skip
    if entry.get("inference_only"):
        evaluate.append("--inference-only")
    steps.append(("evaluate", evaluate))
    return steps


def run_zoo(step: str, name: str, zoo_args: list[str], log: Path | None = None, threads: int | None = None) -> None:
    """Run ``zoo <zoo_args>`` as a child process (its output to ``log`` when given, else here), with ``threads``
    torch threads when given."""
    line = f"\n[{name}] {step}: zoo {shlex.join(zoo_args)}"
    print(line if log is None else f"[{name}] {step} (output: {log})", flush=True)
    env = None if threads is None else {**os.environ, "OMP_NUM_THREADS": str(threads)}
    with log.open("a", encoding="utf-8") if log is not None else contextlib.nullcontext() as out:
        if out is not None:
            out.write(line + "\n")
            out.flush()
        code = subprocess.call([sys.executable, "-m", "zoo.cli", *zoo_args], env=env, stdout=out, stderr=None if out is None else subprocess.STDOUT)
    if code != 0:
        where = f"its output is in {log}" if log is not None else "its output is above"
        raise CLIError(f"{name}: the {step} step exited with {code} ({where}); nothing after it ran")


def draw_figures(name: str, run: Path, out: Path, points: int) -> None:
    from zoo.downstream import Pretrained
    from zoo.downstream.figures import embedding_map, training_curve
    from zoo.hub import rewrite_record

    training_curve(run, out / "training_curve.png", title=f"{name}: training")
    embedding_map(Pretrained.load(out), out / "embedding_map.png", limit=points, title=f"{name}: t-SNE of test embeddings")
    replaced = rewrite_record(out)
    print(f"[{name}] figures: {out / 'training_curve.png'}, {out / 'embedding_map.png'} (card rewritten: {', '.join(replaced)})", flush=True)


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.jobs < 1:
        raise CLIError(f"--jobs must be >= 1, got {args.jobs}")
    manifest_path = Path(args.manifest) if args.manifest else MANIFEST
    manifest = read_manifest(manifest_path)
    entries: dict[str, Any] = manifest["checkpoints"]
    unknown = [n for n in args.names if n not in entries]
    if unknown:
        raise CLIError(f"unknown checkpoint {', '.join(map(repr, unknown))}; {manifest_path} lists: {', '.join(entries)}")
    data_dirs = {str(k): str(v) for k, v in (manifest.get("data_dirs") or {}).items()}
    for item in args.data_dir:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CLIError(f"--data-dir {item!r}: expected KEY=PATH (e.g. fashion_mnist=/data/fashion-mnist)")
        data_dirs[key] = value
    names = args.names or list(entries)
    plans = {name: plan(name, entries[name] or {}, data_dirs, args) for name in names}
    if args.list or args.dry_run:
        for name, steps in plans.items():
            print(name)
            for step, zoo_args in steps:
                print(f"  {step:9s} zoo {shlex.join(zoo_args)}")
            if args.dry_run:
                print(f"  {'figures':9s} {Path(args.out) / name}/training_curve.png, embedding_map.png; card rewritten")
        return 0
    timings: dict[str, float] = {}
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else None
    figures_lock = threading.Lock()  # the figures are drawn in this process: one at a time

    def rebuild(name: str) -> None:
        start = time.perf_counter()
        log = None
        if args.jobs > 1:
            log = Path(args.runs) / f"{name}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
        for step, zoo_args in plans[name]:
            run_zoo(step, name, zoo_args, log, threads)
        with figures_lock:
            draw_figures(name, Path(args.runs) / name, Path(args.out) / name, args.map_points)
        timings[name] = time.perf_counter() - start

    if args.jobs == 1:
        for name in plans:
            rebuild(name)
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(args.jobs) as pool:
            failures = [f.exception() for f in [pool.submit(rebuild, name) for name in plans]]
        failed = [e for e in failures if e is not None]
        if failed:
            raise failed[0] if len(failed) == 1 else CLIError("; ".join(str(e) for e in failed))
    if not args.no_cards:
        run_zoo("cards", "zoo", ["cards", "--checkpoints", args.out])
    for name, seconds in timings.items():
        print(f"{name}: rebuilt in {seconds / 60:.1f} min → {Path(args.out) / name}")
    return 0
