"""Evaluate a trained checkpoint the way `make demo` reports it, export it, and check the exported folder.

    python -m zoo.demo --checkpoint runs/simclr-fashion-mnist/checkpoints/last.ckpt \
        --export-dir checkpoints/simclr-fashion-mnist

1. kNN accuracy (cosine, k = 200, exp(sim / 0.1) weights; Wu et al. 2018) on the official test split with the
   training split as the memory bank, and linear-probe accuracy (logistic regression on the frozen, standardised
   training embeddings; :mod:`zoo.eval.linear`), for three embeddings: the trained encoder, the same architecture at
   random initialisation (same config, seed 0), and raw pixels (the baseline any representation should approach).
2. Export to a Hub folder (config.json + model.safetensors + README.md card with these numbers).
3. Reload with ``zoo.from_pretrained`` and check that its embeddings equal the trained model's, bit for bit.

Exit status 1 if the reloaded embeddings differ.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

KNN_K = 200
KNN_TEMPERATURE = 0.1


def build_datamodule(checkpoint: dict[str, Any]) -> Any:
    from zoo.data.images import ImageDataModule

    hparams = {k: v for k, v in checkpoint["datamodule_hyper_parameters"].items() if not k.startswith("_")}
    datamodule = ImageDataModule(**hparams)
    datamodule.setup()
    return datamodule


@torch.no_grad()
def embed_all(model: torch.nn.Module, images: Tensor, batch_size: int = 1024) -> Tensor:
    model.eval()
    return torch.cat([model.embed(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


def knn_accuracy(bank: Tensor, bank_labels: Tensor, queries: Tensor, query_labels: Tensor, num_classes: int) -> float:
    from zoo.eval.knn import knn_predict

    predicted = knn_predict(queries, bank, bank_labels, num_classes, k=KNN_K, temperature=KNN_TEMPERATURE)
    return (predicted == query_labels).float().mean().item()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo.demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="runs/simclr-fashion-mnist/checkpoints/last.ckpt")
    parser.add_argument("--export-dir", default="checkpoints/simclr-fashion-mnist")
    parser.add_argument("--inference-only", action="store_true", help="leave EMA targets out of the export (BYOL, SLAP)")
    args = parser.parse_args(argv)

    import zoo
    from zoo.hub import PretrainedLoadError, load_checkpoint_model

    start = time.perf_counter()
    checkpoint_path = Path(args.checkpoint)
    try:
        trained, checkpoint = load_checkpoint_model(checkpoint_path)
    except (FileNotFoundError, PretrainedLoadError) as e:
        print(f"zoo.demo: error: {e}; train first: zoo fit --config configs/simclr/fashion_mnist.yaml", file=sys.stderr)
        return 2
    if "datamodule_hyper_parameters" not in checkpoint:
        print(f"{checkpoint_path}: has no datamodule settings; was it written by `zoo fit`?", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    random_init = type(trained)(**trained.init_args())

    datamodule = build_datamodule(checkpoint)
    bank_images, bank_labels = (torch.from_numpy(a) for a in datamodule.arrays("train"))
    test_images, test_labels = (torch.from_numpy(a) for a in datamodule.arrays("test"))
    num_classes = datamodule.num_classes
    print(f"kNN (k={KNN_K}, T={KNN_TEMPERATURE}, cosine): bank = {len(bank_images)} train images, queries = "
          f"{len(test_images)} test images of {datamodule.dataset}")

    from zoo.eval.linear import linear_probe_accuracy

    results: dict[str, tuple[float, float]] = {}
    trained_test_embeddings = None
    embeddings = {
        f"{type(trained).__name__}, trained": (embed_all(trained, bank_images), embed_all(trained, test_images)),
        "random init": (embed_all(random_init, bank_images), embed_all(random_init, test_images)),
        "raw pixels": (bank_images.flatten(1).float(), test_images.flatten(1).float()),
    }
    trained_test_embeddings = next(iter(embeddings.values()))[1]
    for name, (bank, test) in embeddings.items():
        results[name] = (
            knn_accuracy(bank, bank_labels, test, test_labels, num_classes),
            linear_probe_accuracy(bank, bank_labels, test, test_labels, num_classes),
        )

    record = trained.training_record()
    epochs, steps = record.get("epochs_completed"), record.get("global_step")
    print()
    print(f"| embedding ({epochs} epochs, {steps} steps) | test kNN accuracy | test linear-probe accuracy |")
    print("| --- | --- | --- |")
    for name, (knn, linear) in results.items():
        print(f"| {name} | {knn:.4f} | {linear:.4f} |")

    metrics = dict(record.get("metrics") or {})
    for name, (knn, linear) in results.items():
        metrics[f"test/knn_acc ({name}; k={KNN_K}, bank = train split)"] = round(knn, 4)
        metrics[f"test/linear_acc ({name}; logistic regression on the train split)"] = round(linear, 4)
    export_dir = Path(args.export_dir)
    trained.save_pretrained(export_dir, model_card_kwargs={"metrics": metrics}, inference_only=args.inference_only)
    reloaded = zoo.from_pretrained(export_dir)
    same = torch.equal(embed_all(reloaded, test_images), trained_test_embeddings)
    print()
    print(f"exported to {export_dir}/ ({', '.join(sorted(p.name for p in export_dir.iterdir()))})")
    print(f"zoo.from_pretrained({str(export_dir)!r}) embeddings identical to the trained model's: {'yes' if same else 'NO'}")
    print(f"evaluation took {time.perf_counter() - start:.0f} s")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
