"""Evaluate a trained SkeletonMAE checkpoint on the held-out test split, export it, and check the exported folder
(the skeleton counterpart of ``zoo.demo``).

    python -m zoo.demo_skeleton --checkpoint runs/skeleton_mae-generated/checkpoints/last.ckpt \\
        --export-dir checkpoints/skeleton_mae-generated [--table runs/skeleton-table.jsonl]

1. ``trainer.test`` on the checkpoint's datamodule: test/knn_acc (bank = the kNN-bank part of the train split),
   test/probe_acc (the online probe), test/rankme; plus test kNN accuracy of the same architecture at random
   initialisation (seed 0) and of the raw (normalised) coordinates; and for all three a converged linear probe
   (standardised features, L-BFGS multinomial logistic regression, scikit-learn) fitted on the kNN-bank samples.
2. Export to a Hub folder with these numbers (and, with ``--table``, the linear-probe / fine-tune rows that
   ``python -m zoo.finetune_skeleton --output`` appended) on the card. ``zoo export`` writes the same folder but
   its card carries only the metrics logged during ``fit`` (validation), not held-out test numbers.
3. Reload with ``zoo.from_pretrained`` and check that its embeddings equal the trained model's, bit for bit.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import lightning as L
import torch
from torch import Tensor


@torch.no_grad()
def embed_all(model: torch.nn.Module, skeletons: Tensor, batch_size: int = 256) -> Tensor:
    model.eval()
    return torch.cat([model.embed(skeletons[i : i + batch_size]) for i in range(0, len(skeletons), batch_size)])


def lbfgs_probe(train: Tensor, train_labels: Tensor, test: Tensor, test_labels: Tensor) -> float:
    """Test accuracy of a multinomial logistic regression on standardised features, fitted to convergence."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
    probe.fit(train.numpy(), train_labels.numpy())
    return float(probe.score(test.numpy(), test_labels.numpy()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo.demo_skeleton", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="runs/skeleton_mae-generated/checkpoints/last.ckpt")
    parser.add_argument("--export-dir", default="checkpoints/skeleton_mae-generated")
    parser.add_argument("--table", help="JSON lines written by `python -m zoo.finetune_skeleton --output`")
    args = parser.parse_args(argv)

    import zoo
    from zoo.data.skeleton import SkeletonDataModule
    from zoo.eval.knn import knn_predict
    from zoo.hub import load_checkpoint_model

    start = time.perf_counter()
    trained, checkpoint = load_checkpoint_model(args.checkpoint)
    if "datamodule_hyper_parameters" not in checkpoint:
        print(f"{args.checkpoint}: has no datamodule settings; was it written by `zoo fit`?", file=sys.stderr)
        return 2
    record = trained.training_record()  # from the checkpoint, before a test trainer is attached
    datamodule = SkeletonDataModule(**{k: v for k, v in checkpoint["datamodule_hyper_parameters"].items() if not k.startswith("_")})
    datamodule.setup()

    tested = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    metrics = {k: round(float(v), 4) for k, v in tested.test(trained, datamodule=datamodule, verbose=False)[0].items()}
    trained.trainer = None  # detach: the record must describe the fit, not this test run

    bank, test = datamodule.dataset("knn_bank"), datamodule.dataset("test")
    k, temperature, classes = trained.hparams.knn_k, trained.hparams.knn_temperature, datamodule.num_classes
    torch.manual_seed(0)
    random_init = type(trained)(**trained.init_args())
    for name, embed in (("random init", lambda x: embed_all(random_init, x)), ("raw coordinates", lambda x: x.flatten(1))):
        predicted = knn_predict(embed(test.skeletons), embed(bank.skeletons), bank.labels, classes, k=k, temperature=temperature)
        metrics[f"test/knn_acc ({name})"] = round((predicted == test.labels).float().mean().item(), 4)
    for name, embed in (("trained", lambda x: embed_all(trained, x)), ("random init", lambda x: embed_all(random_init, x)),
                        ("raw coordinates", lambda x: x.flatten(1))):  # fmt: skip
        metrics[f"test/linear_acc ({name}, L-BFGS)"] = round(lbfgs_probe(embed(bank.skeletons), bank.labels, embed(test.skeletons), test.labels), 4)
    if args.table:
        for line in Path(args.table).read_text().splitlines():
            row = json.loads(line)
            what = "linear probe" if row["mode"] == "linear" else "STRL fine-tune"
            metrics[f"test/acc ({what}, {row['backbone']}, {row['epochs']} epochs)"] = row["test_acc"]
    for name, value in metrics.items():
        print(f"| {name} | {value:.4f} |")

    record["metrics"] = {**(record.get("metrics") or {}), **metrics}
    trained._training_record = record
    export_dir = Path(args.export_dir)
    trained.save_pretrained(export_dir)
    reloaded = zoo.from_pretrained(export_dir)
    same = torch.equal(embed_all(reloaded, test.skeletons), embed_all(trained, test.skeletons))
    print(f"exported to {export_dir}/; reloaded embeddings identical: {'yes' if same else 'NO'}; "
          f"took {time.perf_counter() - start:.0f} s")  # fmt: skip
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
