"""``python -m benchmarks.independent_knn CHECKPOINT ... --data-dir DIR``: a kNN check of Fashion-MNIST image
checkpoints that shares no evaluation code with zoo.

zoo's own numbers (``zoo evaluate``: zoo.eval.knn over zoo's datamodule) are checked against a second path written
from scratch here: the four IDX ``.gz`` files read with gzip + numpy, the images handed to ``model.embed`` as uint8
``[N, 1, 28, 28]`` (the only zoo code that runs is the model itself), and scikit-learn's brute-force cosine
``KNeighborsClassifier`` (k = 200, train split as bank). Two votes are reported: scikit-learn's majority vote, and
the temperature-weighted vote of the kNN protocol (InstDisc; Wu et al. 2018: each of the k neighbours votes
``exp(cos / T)``, T = 0.1), computed from scikit-learn's neighbour lists. Raw pixels (flattened, /255) are the
baseline row. Prints a Markdown table; ``--output FILE`` writes it as JSON too.
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

import numpy as np

FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (images: magic 2051, [N, H, W]; labels: magic 2049, [N]) as uint8, read from scratch."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[:4], "big")
    ndim = magic & 0xFF
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_split(data_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = (read_idx(data_dir / name) for name in FILES[split])
    return images[:, None], labels.astype(np.int64)


def embed(model, images: np.ndarray, batch: int = 1000) -> np.ndarray:
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            out.append(model.embed(torch.from_numpy(images[i : i + batch].copy())).float().numpy())
    return np.concatenate(out)


def knn_accuracies(bank: np.ndarray, bank_labels: np.ndarray, query: np.ndarray, labels: np.ndarray, k: int, t: float) -> tuple[float, float]:
    """(majority-vote accuracy, temperature-weighted-vote accuracy) of cosine kNN."""
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute").fit(bank, bank_labels)
    distance, index = knn.kneighbors(query)
    classes = int(bank_labels.max()) + 1
    rows = np.arange(len(query))[:, None].repeat(k, 1)
    counts = np.zeros((len(query), classes))
    np.add.at(counts, (rows, bank_labels[index]), 1.0)
    # scikit-learn's own majority vote (KNeighborsClassifier.predict: the most frequent label, ties to the lowest)
    majority = float((knn.classes_[counts.argmax(1)] == labels).mean())
    votes = np.zeros((len(query), classes))
    np.add.at(votes, (rows, bank_labels[index]), np.exp((1.0 - distance) / t))  # cosine similarity = 1 - distance
    weighted = float((votes.argmax(1) == labels).mean())
    return majority, weighted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="*", help="Hub folders (checkpoints/<name>) to check")
    parser.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--k", type=int, default=200)
    parser.add_argument("--temperature", type=float, default=0.1)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    data_dir = Path(args.data_dir)
    train_x, train_y = load_split(data_dir, "train")
    test_x, test_y = load_split(data_dir, "test")
    rows = []
    start = time.perf_counter()
    majority, weighted = knn_accuracies(train_x.reshape(len(train_x), -1) / 255.0, train_y, test_x.reshape(len(test_x), -1) / 255.0, test_y, args.k, args.temperature)
    rows.append({"model": "raw pixels", "majority": majority, "weighted": weighted, "seconds": round(time.perf_counter() - start, 1)})
    if args.checkpoints:
        import zoo

        for folder in args.checkpoints:
            start = time.perf_counter()
            model = zoo.from_pretrained(folder).float().eval()
            majority, weighted = knn_accuracies(embed(model, train_x), train_y, embed(model, test_x), test_y, args.k, args.temperature)
            rows.append({"model": folder, "majority": majority, "weighted": weighted, "seconds": round(time.perf_counter() - start, 1)})
    print(f"| model | kNN majority vote (k={args.k}) | kNN weighted vote (k={args.k}, T={args.temperature}) |")
    print("| --- | --- | --- |")
    for row in rows:
        print(f"| {row['model']} | {row['majority']:.4f} | {row['weighted']:.4f} |")
    if args.output:
        Path(args.output).write_text(json.dumps({"k": args.k, "temperature": args.temperature, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
