"""``zoo evaluate``: score trained encoders (and encoders zoo did not train) with the downstream protocols, beside
their baselines, in one table; optionally write the results and export the model with them.

    zoo evaluate runs/simclr/checkpoints/last.ckpt --baselines random,raw --export checkpoints/simclr-fashion-mnist
    zoo evaluate checkpoints/tjepa-adult --protocol tabular --baselines raw --seeds 0 1 2
    zoo evaluate checkpoints/simclr-fashion-mnist timm:resnet18 --protocol knn --limit-train 5000 --limit-test 1000

The argument parsing here imports nothing heavy (``zoo evaluate --help`` answers at once); the work is in
:mod:`zoo.downstream`.
"""

from __future__ import annotations

import sys
from typing import Any

USAGE = ("zoo evaluate SRC [SRC ...] [--protocol knn,linear,...] [--baselines random,raw] [--data DATA] "
         "[--data-dir DIR] [--export DIR] [--output FILE] (--help: all options)")  # fmt: skip
#: kept in step with zoo.downstream.protocols.PROTOCOLS (tests/cli/test_evaluate.py checks it) so --help needs no torch
PROTOCOL_NAMES = ("knn", "linear", "retrieval", "tabular", "finetune")
BASELINES = ("random", "raw")
EPILOG = """\
SRC: a zoo Hub folder or repo id, a `zoo fit` checkpoint (.ckpt), timm:NAME (random weights),
timm:NAME:/path/weights.safetensors, or a local timm folder (config.json + model.safetensors). Several SRCs share
one table; the first zoo model's training record gives the data unless --data is given.

protocols (default per modality: image, skeleton: knn,linear; tabular: tabular; audio: retrieval,knn):
  knn        kNN accuracy (cosine, k=200, T=0.1; bank: the train split)
  linear     linear-probe accuracy (logistic regression, L-BFGS, standardised frozen features)
  retrieval  audio-text retrieval R@k, zero-shot accuracy, modality gap (SLAP)
  tabular    T-JEPA protocol: frozen tokens + MLP (seeds), raw-feature MLP and HistGradientBoosting as baselines
  finetune   end-to-end fine-tuning accuracy (skeletons: STRL head, SGD)

--data: a datamodule YAML (a recipe with a data: key, or class_path/init_args), a class path, or a dataset name
(fashion-mnist, mnist, cifar10, ... adult, california, breast_cancer). Needed for timm sources. --data-dir moves the
data (training records hold the paths of the machine that trained the model)."""


def _csv(choices: tuple[str, ...], what: str) -> Any:
    def parse(text: str) -> list[str]:
        import argparse

        names = [t.strip() for t in text.split(",") if t.strip()]
        unknown = [n for n in names if n not in choices]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(unknown) or repr(text)}; {what}s: {', '.join(choices)}")
        return names

    return parse


def parser() -> Any:
    import argparse

    from zoo.cli.errors import ArgumentParser

    p = ArgumentParser(prog="zoo evaluate", usage_hint=USAGE, description="Evaluate encoders with the downstream protocols, beside their baselines.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("sources", nargs="+", metavar="SRC", help="what to evaluate (see below)")
    p.add_argument("--protocol", type=_csv(PROTOCOL_NAMES, "protocol"), default=None, help="comma-separated protocols (default: per modality)")
    p.add_argument("--baselines", type=_csv(BASELINES, "baseline"), default=[], help="random (same architecture, random init) and/or raw (the inputs)")
    p.add_argument("--data", default=None, help="datamodule YAML, class path or dataset name (default: the training record's)")
    p.add_argument("--data-dir", default=None, help="where the data is on this machine (replaces the record's paths)")
    p.add_argument("--split", default="test", choices=("test", "val"), help="the split scored (default test)")
    p.add_argument("--bank-split", default="train", choices=("train", "knn_bank", "val"), help="kNN bank / linear-probe training split")
    p.add_argument("--limit-train", type=int, default=None, metavar="N", help="first N rows of the train/bank split (quick runs)")
    p.add_argument("--limit-test", type=int, default=None, metavar="N", help="first N rows of the scored split (quick runs)")
    p.add_argument("--knn-k", type=int, default=200)
    p.add_argument("--knn-temperature", type=float, default=0.1)
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="tabular: head seeds (default 0 1 2); finetune: default 0")
    p.add_argument("--random-seeds", type=int, nargs="+", default=[0], metavar="SEED",
                   help="seeds of the random-init baseline's weights; several: mean ± std over them (default 0)")
    p.add_argument("--epochs", type=int, default=None, help="finetune epochs (default 10); tabular: max head epochs (default 200)")
    p.add_argument("--patience", type=int, default=None, help="tabular: epochs without a better val metric before the head stops (default 16)")
    p.add_argument("--output", "-o", default=None, help="write the result entries as JSON here")
    p.add_argument("--export", default=None, metavar="DIR", help="save the (first) zoo model with its results as a Hub folder, reloaded and checked")
    p.add_argument("--inference-only", action="store_true", help="--export without what from_pretrained rebuilds (EMA targets)")
    return p


def main(argv: list[str]) -> int:
    import json
    import time
    from pathlib import Path

    from zoo.cli.errors import CLIError

    args = parser().parse_args(argv)
    for flag in ("limit_train", "limit_test", "knn_k", "epochs", "patience"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise CLIError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    from zoo.atomic import check_writable

    # the protocols take minutes: an output that cannot be written fails now, not after them
    if args.output:
        check_writable(Path(args.output).resolve().parent)
    if args.export:
        check_writable(Path(args.export).resolve().parent)
    if args.data_dir is not None and not Path(args.data_dir).expanduser().exists():
        raise CLIError(f"--data-dir {args.data_dir}: no such folder")

    from zoo.downstream import Pretrained
    from zoo.downstream.protocols import (
        DEFAULT_PROTOCOLS,
        PROTOCOLS,
        over_init_seeds,
        run,
    )
    from zoo.downstream.report import export_with_results, table

    start = time.perf_counter()
    loaded: list[Any] = []
    for src in args.sources:
        p = Pretrained.load(src, data=args.data, data_dir=args.data_dir, like=loaded[0] if loaded else None)
        if len(args.sources) > 1 and p.name == "pretrained":
            p.name = src  # several models in one table: each row names its source
        loaded.append(p)
    modality = loaded[0].modality
    protocols = args.protocol or list(DEFAULT_PROTOCOLS.get(modality, ("knn",)))
    for p in loaded:
        for name in protocols:
            why = PROTOCOLS[name].applies(p)
            if why:
                raise CLIError(f"--protocol {name}: {why} ({p.source})")
    settings: dict[str, Any] = {
        "k": args.knn_k, "temperature": args.knn_temperature, "bank_split": args.bank_split, "split": args.split,
        "limit_train": args.limit_train, "limit_test": args.limit_test,
    }  # fmt: skip
    if args.seeds:
        settings["seeds"] = tuple(args.seeds)
    if args.epochs:
        settings["epochs"] = settings["max_epochs"] = args.epochs
    if args.patience:
        settings["patience"] = args.patience

    subjects: list[Any] = [[p] for p in loaded]
    for baseline in args.baselines:
        if baseline == "random":
            subjects.append([loaded[0].random_init(seed) for seed in args.random_seeds])
        else:
            subjects.append([loaded[0].raw_inputs()])
    results: list[dict[str, Any]] = []
    for name in protocols:
        for group in subjects:
            kind = group[0].name.split("-")[0]
            if group[0].name in ("random-init", "raw-input") and kind not in PROTOCOLS[name].baselines:
                continue
            runs = [run(p, name, **settings) for p in group]
            results.extend(over_init_seeds(runs, args.random_seeds) if group[0].name == "random-init" else runs[0])
    print(table(results))
    if len(loaded) > 1 and args.baselines:
        print(f"(baselines: {' and '.join(args.baselines)} of the first SRC, {loaded[0].source}: its architecture with random weights / its data's inputs)")
    if args.output:
        from zoo.atomic import write_atomic

        write_atomic(args.output, json.dumps(results, indent=2) + "\n")
        print(f"results -> {args.output}")
    if args.export:
        target = loaded[0]
        own = [{**r, "model": "pretrained"} if r["model"] == target.name else r for r in results
               if r["model"] in (target.name, "random-init", "raw-input", "hist-gradient-boosting")]  # fmt: skip
        export_with_results(target, own, args.export, inference_only=args.inference_only)
        print(f"exported to {args.export}/; zoo.from_pretrained({args.export!r}) embeds a test batch identically")
    print(f"took {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return 0
