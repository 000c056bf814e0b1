"""``python -m benchmarks.imagefolder_bench``: SimCLR on a folder of JPEG photos, three data paths, same model.

Contenders (same ResNet-18 SimCLR model, loss and optimizer; only the data path differs):

- **zoo**: :class:`~zoo.data.image_files.ImageFilesDataModule` (workers decode, bound the stored size and pad) and
  the method's device-side views (crop + antialiased resize + flip + colour, batched);
- **lightly**: ``LightlyDataset`` with lightly's ``SimCLRTransform`` in the workers (PIL decode + torchvision);
- **torchvision**: ``ImageFolder`` with torchvision v2 transforms in the workers (two views per image);
- **zoo-decode** (``--no-step`` only): zoo's loader without the views, i.e. the CPU workers' whole share when the
  views run on a GPU.

Each measures samples/s of decode + views + one training step (``--no-step``: decode + views only) over
``--batches`` batches after one warm-up batch, ``--repeats`` times; the table gives the median and the min-max
spread. The folder of ``--images`` photos (~500×375, JPEG quality 90) is generated once from the real photos that
ship with scikit-learn and from upsampled Fashion-MNIST when installed: random crops, rescales and flips.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

VIEW = {"output_size": 224, "brightness": 0.8, "contrast": 0.8, "saturation": 0.8, "hue": 0.2, "blur_prob": 0.0}


def make_folder(folder: Path, count: int, seed: int = 0) -> Path:
    """``count`` JPEGs (~500×375, q90) in 10 class folders, made once (kept if the folder already holds them)."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    if folder.is_dir() and len(list(folder.glob("*/*.jpg"))) >= count:
        return folder
    rng = np.random.default_rng(seed)
    sources = [Image.fromarray(p) for p in load_sample_images().images]
    fashion = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
    if fashion.exists():
        from zoo.data.images import read_idx

        grey = read_idx(fashion)[:200]
        sources += [Image.fromarray(g).convert("RGB").resize((280, 280), Image.BICUBIC) for g in grey]
    for i in range(count):
        src = sources[int(rng.integers(len(sources)))]
        w, h = src.size
        cw, ch = int(w * rng.uniform(0.5, 1.0)), int(h * rng.uniform(0.5, 1.0))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        out = (int(rng.integers(400, 601)), int(rng.integers(300, 451)))
        img = src.crop((x, y, x + cw, y + ch)).resize(out, Image.BICUBIC)
        if rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        (folder / f"c{i % 10}").mkdir(parents=True, exist_ok=True)
        img.save(folder / f"c{i % 10}" / f"{i:05d}.jpg", "JPEG", quality=90)
    return folder


def build_model(device: str):
    from zoo.methods.simclr import SimCLR

    torch.manual_seed(0)
    model = SimCLR(encoder={"name": "resnet18", "in_chans": 3}, views=VIEW, temperature=0.2).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return model, optimizer


def zoo_loader(folder: Path, args: argparse.Namespace):
    from zoo.data.image_files import ImageFilesDataModule

    dm = ImageFilesDataModule(root=str(folder), batch_size=args.batch_size, num_workers=args.workers, max_side=512, knn_bank_size=0)
    return dm.train_dataloader()


def lightly_loader(folder: Path, args: argparse.Namespace):
    from lightly.data import LightlyDataset
    from lightly.transforms import SimCLRTransform

    transform = SimCLRTransform(input_size=224, cj_strength=1.0, gaussian_blur=0.0)
    dataset = LightlyDataset(input_dir=str(folder), transform=transform)
    return torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True, num_workers=args.workers, drop_last=True)


class _TwoViews:
    def __init__(self, transform) -> None:
        self.transform = transform

    def __call__(self, image):
        return self.transform(image), self.transform(image)


def torchvision_loader(folder: Path, args: argparse.Namespace):
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import v2

    transform = v2.Compose([
        v2.PILToTensor(), v2.RandomResizedCrop(224, antialias=True), v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8), v2.RandomGrayscale(p=0.2),
        v2.ToDtype(torch.float32, scale=True),
    ])  # fmt: skip
    dataset = ImageFolder(str(folder), transform=_TwoViews(transform))
    return torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True, num_workers=args.workers, drop_last=True)


LOADERS = {"zoo": zoo_loader, "lightly": lightly_loader, "torchvision": torchvision_loader, "zoo-decode": zoo_loader}


def views_of(library: str, batch, model, device: str) -> list[torch.Tensor]:
    if library == "zoo":
        images, sizes = batch["image"].to(device), batch["image_size"].to(device)
        return model.make_inputs({"image": images, "image_size": sizes})["views"]
    if library == "zoo-decode":  # the workers' share alone: what the CPU does when the views run on a GPU
        return [batch["image"]]
    if library == "lightly":
        return [v.to(device) for v in batch[0]]
    return [v.to(device) for v in batch[0]]


def run_once(library: str, folder: Path, args: argparse.Namespace) -> float:
    model, optimizer = build_model(args.device)
    model.train()
    loader = iter(LOADERS[library](folder, args))
    seen = 0
    start = None
    for i in range(args.batches + 1):  # batch 0 warms up (workers start, first allocations)
        if i == 1:
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
        batch = next(loader)
        views = views_of(library, batch, model, args.device)
        if not args.no_step:
            out = model.ssl_step({"views": views})
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()
        if i >= 1:
            seen += views[0].shape[0]
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    del loader
    return seen / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, default=Path("benchmarks/results/imagefolder-data"))
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-step", action="store_true", help="decode + views only, no training step")
    parser.add_argument("--libraries", nargs="+", default=["zoo", "lightly", "torchvision"], choices=list(LOADERS),
                        help="zoo-decode (with --no-step): zoo's loader without the device-side views")
    parser.add_argument("--out", type=Path, default=None, help="write the table here (markdown)")
    args = parser.parse_args(argv)
    if "zoo-decode" in args.libraries and not args.no_step:
        parser.error("zoo-decode measures the loader alone: use it with --no-step")
    folder = make_folder(args.folder, args.images)
    what = "decode + views" if args.no_step else "decode + views + step"
    lines = [
        f"SimCLR ResNet-18, output 224, batch {args.batch_size}, {args.workers} workers, {args.device}, {what}; "
        f"{args.batches} batches × {args.repeats} repeats, samples/s",
        "",
        "| data path | median | min | max | vs lightly |",
        "|---|---|---|---|---|",
    ]
    results = {}
    for library in args.libraries:
        results[library] = [run_once(library, folder, args) for _ in range(args.repeats)]
        print(library, [round(r, 2) for r in results[library]], file=sys.stderr, flush=True)
    base = statistics.median(results["lightly"]) if "lightly" in results else None
    for library, values in results.items():
        median = statistics.median(values)
        ratio = f"{median / base:.2f}×" if base else "-"
        lines.append(f"| {library} | {median:.1f} | {min(values):.1f} | {max(values):.1f} | {ratio} |")
    table = "\n".join(lines)
    print(table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
