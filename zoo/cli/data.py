"""`zoo data`: build a generated data set, or write image files as litdata shards."""

from __future__ import annotations

import argparse
import sys

from zoo.cli.errors import ArgumentParser


def optimize(argv: list[str]) -> int:
    from zoo.data.streaming import check_files, check_output_dir, optimize_images, resolve_source

    parser = ArgumentParser(
        prog="zoo data optimize",
        description="Write images as litdata shards for StreamingImageDataModule (needs `pip install 'zoo-ssl[stream]'`).",
        usage_hint="zoo data optimize SOURCE OUT [--data-dir DIR] [--split train|test] (--help: all options)",
    )
    parser.add_argument("source", help="an image folder (class subfolders or flat), a path[,label] list, or a dataset name")
    parser.add_argument("output", help="a new folder (or a URL litdata writes to, e.g. s3://bucket/train)")
    parser.add_argument("--data-dir", default=None, help="the dataset's files, for a dataset name (cifar10, stl10, ...)")
    parser.add_argument("--split", default="train", choices=["train", "test"], help="split of a dataset name")
    parser.add_argument("--root", default=None, help="folder the paths of a list are relative to (default: its folder)")
    parser.add_argument("--num-workers", type=int, default=1)
    parser.add_argument("--chunk-bytes", default="64MB", help="shard size")
    parser.add_argument(
        "--on-bad-file", default="error", choices=["error", "skip"],
        help="a file that does not decode: stop naming it (error) or leave it out and report it (skip)",
    )  # fmt: skip
    parser.add_argument("--no-check", action="store_true", help="store files without decoding them first (faster)")
    args = parser.parse_args(argv)
    check_output_dir(args.output)  # before reading the source: fail fast
    source = resolve_source(args.source, args.data_dir, args.split, args.root)
    skipped: list[str] = []
    if not args.no_check:
        source, skipped = check_files(source, args.num_workers, args.on_bad_file)
    out = optimize_images(source, args.output, args.num_workers, args.chunk_bytes)
    ignored = f" ({source.ignored} non-image files ignored)" if source.ignored else ""
    if skipped:
        shown = "; ".join(skipped[:3]) + ("; ..." if len(skipped) > 3 else "")
        print(f"zoo data optimize: warning: skipped {len(skipped)} files that do not decode: {shown}", file=sys.stderr)
    classes = f", {len(source.classes)} classes" if source.classes else ""
    print(f"wrote {len(source)} images{classes} as litdata shards to {out}{ignored}")
    return 0


def main(argv: list[str]) -> int:
    import importlib

    if argv[:1] == ["optimize"]:
        return optimize(argv[1:])
    builders = {"skeleton-actions": "zoo.data.skeleton_generator", "music-captions": "zoo.data.music_captions"}
    # after `build DATASET`, --help is the builder's (its options), not this parser's
    parser = argparse.ArgumentParser(
        prog="zoo data", description="Build a generated dataset, or write litdata shards (zoo data optimize).",
        exit_on_error=False, add_help=len(argv) < 2,
    )
    parser.add_argument("action", choices=["build", "optimize"])
    parser.add_argument("dataset", choices=sorted(builders))
    if argv in (["-h"], ["--help"]):
        parser.print_help()
        return 0
    try:
        if len(argv) < 2:  # argparse would exit on a missing positional even with exit_on_error=False
            raise argparse.ArgumentError(None, "expected: build DATASET DIR")
        args, rest = parser.parse_known_args(argv)
    except argparse.ArgumentError as e:  # one line through main(), like every other user error
        raise ValueError(
            f"{e}; usage: zoo data build {{{','.join(sorted(builders))}}} DIR [options] | zoo data optimize SOURCE OUT"
        ) from None
    return importlib.import_module(builders[args.dataset]).main(rest)
