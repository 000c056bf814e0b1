"""The evaluation protocols ``zoo evaluate`` runs on a :class:`~zoo.downstream.pretrained.Pretrained` (a trained
model, a timm encoder, or a baseline: ``random_init()``, ``raw_inputs()``).

Each protocol declares the modalities it applies to and returns a list of result entries in the schema of the
``"results"`` record (``protocol``, ``metric``, ``value``, ``std``, ``seeds``, ``model``, ``dataset``, ``split``,
``settings``). The metric maths is in :mod:`zoo.eval` (kNN, linear probe, retrieval, modality gap); the tabular
protocol's head training is :mod:`zoo.downstream.tabular`.

- ``knn``: weighted kNN (cosine, exp(sim / T); Wu et al. 2018) of the test split against a labelled bank (the train
  split by default), k = 200, T = 0.1 (lightly / solo-learn benchmarks).
- ``linear``: multinomial logistic regression on the standardised frozen train-split embeddings, fitted to
  convergence by L-BFGS (:mod:`zoo.eval.linear`); test accuracy.
- ``retrieval``: audio–text retrieval R@k (both directions), median rank, zero-shot accuracy (best prompt template)
  and the modality gap on the test split (SLAP §4.3).
- ``tabular``: T-JEPA's downstream protocol: frozen encoder tokens → adapter → MLP early-stopped on the val split, per
  seed; the raw-input baseline is the same MLP on one-hot raw features, plus HistGradientBoosting.
- ``finetune``: the encoder trained end to end with a classification head on the train split (Lightning), test
  accuracy.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from zoo.downstream.pretrained import Pretrained


def result(protocol: str, metric: str, value: float, p: Pretrained, split: str, settings: dict[str, Any],
           std: float | None = None, seeds: Sequence[int] | None = None) -> dict[str, Any]:  # fmt: skip
    """One entry of the results record."""
    return {
        "protocol": protocol, "metric": metric, "value": round(float(value), 6),
        "std": None if std is None else round(float(std), 6), "seeds": None if seeds is None else list(seeds),
        "model": p.name, "dataset": dataset_name(p), "split": split, "settings": settings,
    }  # fmt: skip


def dataset_name(p: Pretrained) -> str:
    """The data's name for the record (a results-entry name: ``generated-skeleton-actions``): the dataset, else what
    the source files say."""
    from zoo.hub import dataset_name as record_name

    dm = p.datamodule()
    hparams = {k: v for k, v in dict(getattr(dm, "hparams", {}) or {}).items()}
    return record_name(hparams) or type(dm).__name__


def _limit(x: Any, n: int | None) -> Any:
    return x if n is None else x[:n]


@dataclass(frozen=True)
class Protocol:
    name: str
    modalities: tuple[str, ...]
    run: Callable[..., list[dict[str, Any]]]
    summary: str
    #: baselines it can score: "random" (the architecture at random init), "raw" (the inputs themselves)
    baselines: tuple[str, ...] = ("random", "raw")

    def applies(self, p: Pretrained) -> str | None:
        """Why this protocol cannot run on ``p`` (one phrase), or None."""
        if p.modality not in self.modalities:
            return f"applies to {', '.join(self.modalities)} models, not {p.modality}"
        return None


# ---- kNN and linear probe ---------------------------------------------------------------------------------------------
def _classes(p: Pretrained, labels: Tensor) -> int:
    num = getattr(p.datamodule(), "num_classes", None)
    if not num or labels.is_floating_point() or int(labels.min()) < 0:
        raise ValueError(f"{p.source}: {type(p.datamodule()).__name__} has no class labels; knn and linear need them")
    return int(num)


def run_knn(p: Pretrained, k: int = 200, temperature: float = 0.1, bank_split: str = "train", split: str = "test",
            limit_train: int | None = None, limit_test: int | None = None, **_: Any) -> list[dict[str, Any]]:  # fmt: skip
    from zoo.eval.knn import knn_predict

    bank, bank_labels = p.embed_all(bank_split, limit_train)
    queries, labels = p.embed_all(split, limit_test)
    classes = _classes(p, bank_labels)
    predicted = knn_predict(queries, bank, bank_labels, classes, k=k, temperature=temperature)
    accuracy = (predicted == labels).float().mean().item()
    settings = {"k": k, "temperature": temperature, "similarity": "cosine", "weighted": True, "bank": bank_split,
                "bank_size": len(bank), "queries": len(queries)}  # fmt: skip
    return [result("knn", "accuracy", accuracy, p, split, settings)]


def run_linear(p: Pretrained, l2: float = 1e-4, max_iter: int = 300, bank_split: str = "train", split: str = "test",
               limit_train: int | None = None, limit_test: int | None = None, **_: Any) -> list[dict[str, Any]]:  # fmt: skip
    from zoo.eval.linear import linear_probe_accuracy

    train, train_labels = p.embed_all(bank_split, limit_train)
    test, labels = p.embed_all(split, limit_test)
    accuracy = linear_probe_accuracy(train, train_labels, test, labels, _classes(p, train_labels), l2=l2, max_iter=max_iter)
    settings = {"classifier": "logistic regression (L-BFGS, standardised features)", "l2": l2, "max_iter": max_iter, "train": bank_split,
                "train_size": len(train)}  # fmt: skip
    return [result("linear", "accuracy", accuracy, p, split, settings)]


# ---- audio–text retrieval ---------------------------------------------------------------------------------------------
@torch.no_grad()
def run_retrieval(p: Pretrained, split: str = "test", limit_test: int | None = None, batch_size: int = 64, **_: Any) -> list[dict[str, Any]]:
    from torch.utils.data import DataLoader, Subset

    from zoo.data.audio_text import collate_audio_text
    from zoo.eval.retrieval import RetrievalCollector

    model = p.model
    if not hasattr(model, "audio_space"):
        raise ValueError(f"{p.name}: {type(model).__name__} has no shared audio–text space (retrieval needs a SLAP model)")
    dataset = p.datamodule().dataset(split, train=False)
    if limit_test is not None:
        dataset = Subset(dataset, range(min(limit_test, len(dataset))))
    model.eval()
    collector = RetrievalCollector()
    has_labels = False
    for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=collate_audio_text):
        collector.update(model.audio_space(batch["audio"]), model.text_space(batch["caption"]), batch.get("label"))
        has_labels = has_labels or "label" in batch
    classes = None
    if model.hparams.class_names and has_labels:
        classes = [model.text_space([t.format(c) for c in model.hparams.class_names]) for t in model.prompts]
    metrics = collector.compute(classes)
    settings = {"pairs": len(dataset), "one_to_one": True, "prompts": list(model.prompts) if classes else None}
    names = {"a2t_R@{k}": "a2t_recall@{k}", "t2a_R@{k}": "t2a_recall@{k}"}
    out = []
    for key, value in metrics.items():
        metric = key
        for old, new in names.items():
            for k in (1, 5, 10):
                if key == old.format(k=k):
                    metric = new.format(k=k)
        out.append(result("retrieval", metric, value, p, split, settings))
    return out


# ---- tabular ----------------------------------------------------------------------------------------------------------
def run_tabular(p: Pretrained, seeds: Sequence[int] = (0, 1, 2), adapter: str = "flatten", max_epochs: int = 200,
                patience: int = 16, boosting_rounds: int = 1000, limit_train: int | None = None,
                limit_test: int | None = None, **_: Any) -> list[dict[str, Any]]:  # fmt: skip
    from zoo.downstream.pretrained import RawInputs
    from zoo.downstream.tabular import HeadConfig, evaluate_tabular

    head = HeadConfig(max_epochs=max_epochs, patience=patience)
    raw = isinstance(p.model, RawInputs)
    if not raw and not hasattr(p.model, "embed_tokens"):
        raise ValueError(f"{p.name}: {type(p.model).__name__} has no embed_tokens (the tabular protocol reads encoder tokens)")
    outcome = evaluate_tabular(
        None if raw else p.model, p.datamodule(), adapter, seeds, head, baselines=raw, boosting_rounds=boosting_rounds,
        limits={"train": limit_train, "test": limit_test},
    )  # fmt: skip
    settings = {"adapter": adapter, "head": "mlp", "hidden_dim": head.hidden_dim, "num_layers": head.num_layers,
                "max_epochs": max_epochs, "patience": patience, "early_stopping": "val"}  # fmt: skip
    out = []
    for label, (mean, std) in outcome.summary().items():
        name, extra = p.name, {}
        if label == "HistGradientBoosting":
            name, extra = "hist-gradient-boosting", {"head": "hist-gradient-boosting", "rounds": boosting_rounds}
        elif raw:
            extra = {"input": "one-hot raw features"}
        entry = result("tabular", outcome.metric, mean, p, "test", {**settings, **extra}, std=std if len(seeds) > 1 else None, seeds=seeds)
        entry["model"] = name
        out.append(entry)
    return out


# ---- fine-tuning ------------------------------------------------------------------------------------------------------
def run_finetune(p: Pretrained, epochs: int = 10, lr: float = 0.1, seeds: Sequence[int] = (0,), limit_train: int | None = None,
                 limit_test: int | None = None, **_: Any) -> list[dict[str, Any]]:  # fmt: skip
    """The encoder and a classification head trained end to end (SGD, step schedule) on the train split, tested on
    the test split. The fine-tuner is :func:`finetuner` (the one place this module builds one)."""
    from torch.utils.data import DataLoader, TensorDataset

    train_x, train_y = p.inputs("train")
    test_x, test_y = p.inputs("test")
    train_x, train_y, test_x, test_y = _limit(train_x, limit_train), _limit(train_y, limit_train), _limit(test_x, limit_test), _limit(test_y, limit_test)
    classes = _classes(p, train_y)
    key = p.input_key

    def collate(rows: list[tuple[Tensor, Tensor]]) -> dict[str, Tensor]:
        return {key: torch.stack([r[0] for r in rows]), "label": torch.stack([r[1] for r in rows])}

    def loader(x: Tensor, y: Tensor, shuffle: bool) -> DataLoader:
        return DataLoader(TensorDataset(x, y), batch_size=64, shuffle=shuffle, collate_fn=collate)

    from zoo.downstream.finetune import seeded_test_accuracies

    start = time.perf_counter()
    with _quiet_lightning():
        values, _ = seeded_test_accuracies(
            lambda seed: finetuner(p, classes, lr=lr, input_shape=tuple(train_x.shape[1:])), seeds,
            {"train_dataloaders": loader(train_x, train_y, True)}, {"dataloaders": loader(test_x, test_y, False)},
            {"max_epochs": epochs, "accelerator": "cpu"},
        )  # fmt: skip
    settings = {"epochs": epochs, "lr": lr, "optimizer": "sgd", "train_size": len(train_x), "seconds": round(time.perf_counter() - start, 1)}
    std = statistics.stdev(values) if len(values) > 1 else None
    return [result("finetune", "accuracy", statistics.fmean(values), p, "test", settings, std=std, seeds=list(seeds) if len(seeds) > 1 else None)]


@contextmanager
def _quiet_lightning() -> Iterator[None]:
    """The table is the output: no Trainer banners (GPU/TPU lines, tips) or notes about the val loop it skips."""
    import logging
    import warnings

    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.WARNING)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*val_dataloader.*")
            warnings.filterwarnings("ignore", message=".*LeafSpec.*")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def finetuner(p: Pretrained, num_classes: int, lr: float, input_shape: tuple[int, ...]) -> Any:
    """The :class:`~zoo.downstream.finetune.FineTuner` that fine-tunes a copy of ``p``'s model with the method's own
    head (SkeletonMAE: STRL) and its SGD + step recipe; for the raw-input baseline, a linear classifier on the raw
    inputs. ``p`` itself is left as it was."""
    import copy

    from zoo.downstream.finetune import FineTuner
    from zoo.downstream.pretrained import RawInputs

    recipe = {"optimizer": "sgd", "lr": lr, "weight_decay": 5e-4, "lr_schedule": "step", "warmup_epochs": 1.0, "label_smoothing": 0.1}
    if isinstance(p.model, RawInputs):
        return FineTuner(p.model, num_classes, mode="linear", baseline="raw-input", input_shape=list(input_shape), **recipe)
    head = {"head": "method", "head_kwargs": {"num_frames": int(input_shape[1]), "hidden_dim": 64}}
    return FineTuner(copy.deepcopy(p.model).train(), num_classes, mode="finetune", **head, **recipe)


def over_init_seeds(runs: list[list[dict[str, Any]]], seeds: Sequence[int]) -> list[dict[str, Any]]:
    """The random-init baseline's entries of several weight seeds (one list per seed, in the same order) as one
    entry per metric: the mean, the std over the seeds (None for one seed), the seeds in ``settings["init_seeds"]``.
    Its cosine kNN is fragile (a random encoder's embeddings are nearly collinear), so a spread says more than one
    seed's number."""
    out = []
    for group in zip(*runs):
        values = [e["value"] for e in group]
        entry = dict(group[0])
        entry["value"] = round(statistics.fmean(values), 6)
        if len(values) > 1:
            entry["std"] = round(statistics.stdev(values), 6)
        entry["settings"] = {**entry["settings"], "init_seeds": list(seeds)}
        out.append(entry)
    return out


PROTOCOLS: dict[str, Protocol] = {
    "knn": Protocol("knn", ("image", "tabular", "skeleton", "audio"), run_knn, "kNN accuracy (k=200, T=0.1, cosine; bank: train split)"),
    "linear": Protocol("linear", ("image", "tabular", "skeleton", "audio"), run_linear, "linear-probe accuracy (L-BFGS logistic regression)"),
    "retrieval": Protocol("retrieval", ("audio",), run_retrieval, "audio–text retrieval R@k, zero-shot accuracy, modality gap", ("random",)),
    "tabular": Protocol("tabular", ("tabular",), run_tabular, "T-JEPA protocol: frozen tokens + MLP vs raw-feature MLP and boosting"),
    "finetune": Protocol("finetune", ("skeleton",), run_finetune, "end-to-end fine-tuning accuracy (SGD, STRL head)"),
}
#: what ``zoo evaluate`` runs when no --protocol is given
DEFAULT_PROTOCOLS = {"image": ("knn", "linear"), "tabular": ("tabular",), "skeleton": ("knn", "linear"), "audio": ("retrieval", "knn")}


def run(p: Pretrained, protocol: str, **settings: Any) -> list[dict[str, Any]]:
    """Run one protocol on ``p``; ValueError naming the protocol when it does not apply."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; protocols: {', '.join(PROTOCOLS)}")
    spec = PROTOCOLS[protocol]
    why = spec.applies(p)
    if why:
        raise ValueError(f"protocol {protocol} {why} ({p.source})")
    return spec.run(p, **settings)
