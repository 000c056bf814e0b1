"""``zoo embed``: the command line over :mod:`zoo.embed` (argparse here, the logic there)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

USAGE = "zoo embed --pretrained DIR_OR_REPO_OR_CKPT INPUT --output FILE [options] (--help: all options)"


def _data_arg(text: str) -> tuple[str, Any]:
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, yaml.safe_load(value) if value else None


def parser() -> argparse.ArgumentParser:
    from zoo.cli.errors import ArgumentParser

    p = ArgumentParser(
        prog="zoo embed", usage_hint=USAGE,
        description="Embed images, table rows or a datamodule split with a zoo model; write safetensors or parquet.",
        epilog="INPUT: an image folder (class subfolders give labels) or a path[,label] list; a CSV/parquet table "
        "for a tabular model; skeleton files or an audio manifest (read as the model's training data was); or a split name (train, val, test, knn_bank, predict) of --data, or, without --data, "
        "of the data the model was trained on (rebuilt from its training record).",
    )
    p.add_argument("input", help="image folder / list, table, or split name")
    p.add_argument("--pretrained", required=True, help="a zoo Hub folder or repo id, or a .ckpt written by `zoo fit`")
    p.add_argument("--output", "-o", required=True, help="the file to write (.safetensors or .parquet)")
    p.add_argument("--format", choices=("safetensors", "parquet"), default=None, help="default: from the output's suffix")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--data", default=None, help="a datamodule YAML (a recipe or class_path/init_args) or class path, for a split INPUT")
    p.add_argument("--data-arg", type=_data_arg, action="append", default=[], metavar="KEY=VALUE",
                   help="a datamodule init arg (YAML value), over --data or the training record; repeatable")
    p.add_argument("--image-size", type=int, default=None, help="image side (default: the encoder's or the training record's)")
    p.add_argument("--crop-fraction", type=float, default=None, help="centre crop of the shorter side (default: the training record's, else 0.875)")
    p.add_argument("--split", choices=("train", "val", "test", "knn_bank"), default=None,
                   help="skeleton files: which split of them (default test)")
    p.add_argument("--labels", choices=("auto", "folders", "none"), default="auto", help="image folder: class subfolders or unlabelled")
    p.add_argument("--on-bad-file", choices=("error", "skip"), default="error",
                   help="an image that cannot be decoded: stop naming it (error) or leave its row out and list it (skip); "
                   "other inputs always stop at a bad file")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader workers decoding files")
    p.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu, cuda, cuda:N, mps")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return p


def main(argv: list[str]) -> int:
    from pathlib import Path

    args = parser().parse_args(argv)
    from zoo import embed

    fmt = embed.output_format(args.output, args.format)
    out = embed.check_output(args.output, args.overwrite)  # before the model loads: fails in a second
    device = embed.resolve_device(args.device)
    if not args.pretrained.endswith(".ckpt") and Path(args.pretrained).is_file():
        raise ValueError(f"--pretrained {args.pretrained}: a file that is not a .ckpt; give a Hub folder, a repo id or a zoo fit checkpoint")
    model = embed.load_model(args.pretrained)
    inp = embed.build_input(
        model, args.input, data=args.data, data_overrides=dict(args.data_arg), image_size=args.image_size,
        crop_fraction=args.crop_fraction, labels=args.labels, split=args.split, batch_size=args.batch_size,
        num_workers=args.num_workers, on_bad_file=args.on_bad_file,
    )
    result = embed.embed_input(model, inp, device, progress=not args.quiet and sys.stderr.isatty())
    result.metadata["pretrained"] = args.pretrained
    if not args.overwrite and out.exists():  # written by someone else while this ran
        raise ValueError(f"{out} appeared while embedding; choose another --output or pass --overwrite")
    embed.write_embeddings(result, out, fmt)
    warning = embed.skipped_warning(result)
    if warning:
        print(f"zoo embed: warning: {warning}", file=sys.stderr)
    print(embed.summary(result, out, fmt))
    return 0
