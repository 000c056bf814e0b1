"""`zoo export`, `zoo push` and `zoo cards`: a checkpoint as Hub, timm or ONNX files, the upload, and MODEL_CARD.md."""

from __future__ import annotations

from pathlib import Path

from zoo.cli.errors import ArgumentParser, CLIError


def export(argv: list[str]) -> int:
    from zoo.atomic import check_writable

    parser = ArgumentParser(prog="zoo export", description="Turn a zoo model into a Hub folder, a timm Hub folder or ONNX graphs.")
    parser.add_argument("checkpoint", help="a .ckpt written by `zoo fit` (any format) or a zoo Hub folder (timm, onnx)")
    parser.add_argument("directory", help="output folder: new, empty, or an earlier export of the same format (its own files are replaced, others kept)")
    parser.add_argument(
        "--format", choices=("hub", "timm", "onnx"), default="hub",
        help="hub: zoo Hub folder; timm: the image encoder as a timm Hub folder; onnx: embed as ONNX graphs (checked in onnxruntime)",
    )
    parser.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"), help="image size when the training record lacks it (timm, onnx)")
    parser.add_argument(
        "--inference-only", action="store_true",
        help="leave out what from_pretrained rebuilds (BYOL/SLAP EMA targets): a smaller folder with the same embeddings",
    )
    args = parser.parse_args(argv)
    check_writable(Path(args.directory).resolve().parent)  # before loading: names the folder, not a temp name
    if args.format != "hub":
        from zoo.export import export_format

        print(export_format(args.format, args.checkpoint, args.directory, input_size=args.input_size))
        return 0
    from zoo.hub import export_checkpoint

    out = export_checkpoint(args.checkpoint, args.directory, inference_only=args.inference_only)
    print(f"exported {args.checkpoint} -> {out.directory}" + (f" (replaced {', '.join(out.replaced)})" if out.replaced else ""))
    return 0


def push(argv: list[str]) -> int:
    from zoo.hub import upload_folder

    parser = ArgumentParser(prog="zoo push", description="Upload a zoo Hub folder to the Hugging Face Hub.")
    parser.add_argument("directory", help="a zoo Hub folder (--format timm: or a .ckpt)")
    parser.add_argument("repo_id", help="e.g. my-org/simclr-fashion-mnist")
    parser.add_argument("--format", choices=("hub", "timm"), default="hub", help="timm: push the image encoder with timm's push_to_hf_hub")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--token", default=None, help="defaults to the cached `hf auth login` token")
    args = parser.parse_args(argv)
    if args.format == "timm":
        from zoo.export.timm import push_timm

        commit = push_timm(args.directory, args.repo_id, private=args.private, token=args.token)
    else:
        commit = upload_folder(args.directory, args.repo_id, private=args.private, token=args.token)
    print(f"pushed {args.directory} -> {commit}")
    return 0


def cards(argv: list[str]) -> int:
    import argparse

    from zoo.atomic import write_atomic
    from zoo.cards import migrate_checkpoint, render_model_card

    parser = ArgumentParser(
        prog="zoo cards", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write MODEL_CARD.md from the checkpoints' config.json and the training records and results in their "
        "model.safetensors metadata.\n\n"
        "  zoo cards             rewrite MODEL_CARD.md\n"
        "  zoo cards --check     exit 1 if MODEL_CARD.md is not what the checkpoints say (the tests run this)\n"
        "  zoo cards --migrate   once: turn legacy prose metric keys (test/knn_acc (…)) into structured results in each\n"
        "                        checkpoint's record and card (weights and config.json unchanged), then rewrite",
    )
    parser.add_argument("--checkpoints", default="checkpoints", help="folder of Hub checkpoint folders")
    parser.add_argument("--output", default="MODEL_CARD.md")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="only compare; exit 1 when the file is out of date")
    mode.add_argument("--migrate", action="store_true", help="structure the legacy metric keys of every checkpoint first")
    args = parser.parse_args(argv)
    checkpoints = Path(args.checkpoints)
    if not checkpoints.is_dir():
        raise CLIError(f"{checkpoints}: not a folder (--checkpoints: the folder of Hub checkpoint folders)")
    if args.migrate:
        for folder in sorted(p for p in checkpoints.iterdir() if p.is_dir()):
            count = migrate_checkpoint(folder)
            print(f"{folder}: {f'{count} results entries from legacy metric keys' if count else 'nothing to migrate'}")
    text = render_model_card(checkpoints)
    output = Path(args.output)
    if args.check:
        if not output.is_file() or output.read_text(encoding="utf-8") != text:
            print(f"{output} is out of date with {args.checkpoints}/: run `zoo cards`")
            return 1
        print(f"{output} is up to date")
        return 0
    write_atomic(output, text)
    print(f"wrote {output} ({text.count('](checkpoints/')} checkpoints)")
    return 0
