"""The two pictures a zoo card shows (:data:`zoo.hub.FIGURE_FILES`), as PNG files in a Hub folder:

    training_curve.png   the run's training loss and its online validation metrics (kNN, linear probe) per epoch,
                         read from the Lightning CSV log(s) of the ``zoo fit`` run directory
    embedding_map.png    a 2-D t-SNE (scikit-learn) of test-split embeddings, one colour per class (a colour scale
                         for a regression target)

matplotlib is an optional dependency (``pip install 'zoo-ssl[figures]'``); it is imported when a figure is drawn,
with the Agg backend, so nothing needs a display.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import Any

from zoo.atomic import write_atomic
from zoo.errors import DataError

#: validation metrics drawn on the curve's right axis when the log has them (in this order)
VAL_METRICS = {"val/knn_acc": "online kNN accuracy", "val/probe_acc": "online linear-probe accuracy"}
LOSS_METRIC = "train/loss"


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise DataError("drawing the card's figures needs matplotlib: pip install 'zoo-ssl[figures]' (or matplotlib)") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def metrics_files(run_dir: str | Path) -> list[Path]:
    """The Lightning CSV logs of a ``zoo fit`` run directory, oldest version first (a resumed run logs to a new
    ``version_N``)."""
    run_dir = Path(run_dir)
    files = sorted(run_dir.glob("**/version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[-1]))
    if not files:
        files = sorted(run_dir.glob("**/metrics.csv"))
    if not files:
        raise DataError(f"{run_dir}: no metrics.csv (the CSV log a zoo fit run writes under its run directory)")
    return files


def epoch_curves(run_dir: str | Path) -> dict[str, dict[int, float]]:
    """{metric: {epoch: value}} from the run's CSV logs: the mean of the logged training loss over each epoch's
    logged steps, and the validation metrics as logged at each epoch's end. When a resumed run logs an epoch again
    (the checkpoint's epoch restarted mid-way), the later log wins."""
    losses: dict[int, list[float]] = defaultdict(list)
    curves: dict[str, dict[int, float]] = defaultdict(dict)
    for path in metrics_files(run_dir):
        seen: dict[int, list[float]] = defaultdict(list)
        with path.open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                if not row.get("epoch"):
                    continue
                epoch = int(float(row["epoch"]))
                if row.get(LOSS_METRIC):
                    seen[epoch].append(float(row[LOSS_METRIC]))
                for key in VAL_METRICS:
                    if row.get(key):
                        curves[key][epoch] = float(row[key])
        losses.update(seen)
    curves[LOSS_METRIC] = {e: sum(v) / len(v) for e, v in sorted(losses.items()) if v}
    return {k: dict(sorted(v.items())) for k, v in curves.items() if v}


def training_curve(run_dir: str | Path, out: str | Path, title: str = "") -> Path:
    """Draw ``training_curve.png``: mean training loss per epoch (left axis) and the online validation metrics
    (right axis), epochs counted from 1."""
    curves = epoch_curves(run_dir)
    if LOSS_METRIC not in curves:
        raise DataError(f"{run_dir}: its metrics.csv logs no {LOSS_METRIC}")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    loss = curves[LOSS_METRIC]
    ax.plot([e + 1 for e in loss], list(loss.values()), color="tab:red", marker="o", ms=3, label="training loss (epoch mean)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss", color="tab:red")
    handles, labels = ax.get_legend_handles_labels()
    shown = [k for k in VAL_METRICS if k in curves]
    if shown:
        right = ax.twinx()
        for key, colour in zip(shown, ("tab:blue", "tab:green")):
            right.plot([e + 1 for e in curves[key]], list(curves[key].values()), color=colour, marker="s", ms=3, label=f"val: {VAL_METRICS[key]}")
        right.set_ylabel("validation accuracy")
        h, lab = right.get_legend_handles_labels()
        handles, labels = handles + h, labels + lab
    ax.legend(handles, labels, loc="center right", fontsize=8)
    ax.set_title(title or "training curve", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, out)


def tsne_2d(embeddings: Any, seed: int = 0) -> Any:
    """[N, 2] t-SNE coordinates (scikit-learn, PCA initialisation, perplexity 30 or N/4 for small N) of
    L2-normalised embeddings: the cosine geometry the kNN protocol scores."""
    import numpy as np
    from sklearn.manifold import TSNE

    x = np.asarray(embeddings, dtype=np.float32)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 4)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, learning_rate="auto").fit_transform(x)


def embedding_map(pretrained: Any, out: str | Path, split: str = "test", limit: int = 3000, seed: int = 0, title: str = "") -> Path:
    """Draw ``embedding_map.png``: a t-SNE of the embeddings of the first ``limit`` rows of ``split`` of the
    pretrained model's data (:class:`zoo.downstream.Pretrained`), coloured by class (a colour bar for a regression
    target)."""
    import numpy as np

    embeddings, labels = pretrained.embed_all(split, limit)
    if len(embeddings) < 5:
        raise DataError(f"{pretrained.source}: the {split} split has {len(embeddings)} rows; a map needs at least 5")
    xy = tsne_2d(embeddings.numpy(), seed)
    y = labels.numpy()
    plt = _pyplot()
    categorical = np.issubdtype(y.dtype, np.integer) and y.ndim == 1
    classes = np.unique(y) if categorical else np.array([])
    # up to 10 classes: the legend inside the map; up to 60: distinct colours and the legend beside it
    fig, ax = plt.subplots(figsize=(6.4 if len(classes) <= 10 else 8.4, 5.6), dpi=100)
    if categorical:
        names = getattr(pretrained.datamodule(), "class_names", None)
        if len(classes) <= 10:
            palette = [plt.get_cmap("tab10")(i) for i in range(10)]
        else:
            palette = [plt.get_cmap(name)(i) for name in ("tab20", "tab20b", "tab20c") for i in range(20)]
        for i, c in enumerate(classes):
            keep = y == c
            label = names[int(c)] if names is not None and int(c) < len(names) else str(int(c))
            ax.scatter(xy[keep, 0], xy[keep, 1], s=4, color=palette[i % len(palette)], label=label, alpha=0.8, linewidths=0)
        if len(classes) <= 10:
            ax.legend(markerscale=3, fontsize=7, loc="best")
        elif len(classes) <= len(palette):
            ax.legend(markerscale=3, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=1 if len(classes) <= 30 else 2)
    else:
        values = y.reshape(len(y), -1)[:, 0].astype(float)
        points = ax.scatter(xy[:, 0], xy[:, 1], s=4, c=values, cmap="viridis", alpha=0.8, linewidths=0)
        fig.colorbar(points, ax=ax, label="target")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"t-SNE of {len(xy)} {split} embeddings", fontsize=10)
    fig.tight_layout()
    return _save(fig, out)


def _save(fig: Any, out: str | Path) -> Path:
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    out = Path(out)
    write_atomic(out, buffer.getvalue())
    return out
