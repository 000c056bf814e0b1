"""T-JEPA's downstream protocol for tabular encoders (Thimonier et al. 2025, §4.2), as a reusable evaluator.

The **frozen target encoder** maps each row to its R + D output tokens [R + D, h]; an **adapter** turns them into a
vector — ``mean`` (mean over tokens → h), ``per_token`` (a learned linear map per token, h → 4, then concatenated) or
``flatten`` ((R + D)·h) — and an **MLP** is trained on top with AdamW and early stopping on a **separate validation
split** (the release validated on the test split; here val and test are disjoint and test is read once, at the
best validation epoch). Baselines on the same split: the same MLP on the raw preprocessed features (categoricals
one-hot), and sklearn's ``HistGradientBoosting`` (native categorical support) as the gradient-boosted-trees reference.

Metrics: accuracy (classification), RMSE of the standardised target (regression; the datamodule standardises with
the train split's mean and std), as in the paper's tables.

Python::

    from zoo.downstream.tabular import evaluate_tabular
    result = evaluate_tabular(model, datamodule, adapter="flatten", seeds=(0, 1, 2))
    print(result.markdown())

Command line (the ``tabular`` protocol of :mod:`zoo.downstream.protocols`)::

    zoo evaluate checkpoints/tjepa-adult --protocol tabular --baselines raw --seeds 0 1 2
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

ADAPTERS = ("mean", "per_token", "flatten")


@dataclass
class HeadConfig:
    """The downstream MLP and its training (T-JEPA: AdamW, at most 200 epochs, early stopping on validation)."""

    hidden_dim: int = 256
    num_layers: int = 2  # hidden layers
    dropout: float = 0.1
    lr: float = 1e-3
    weight_decay: float = 1e-5
    batch_size: int = 256
    max_epochs: int = 200
    patience: int = 16  # epochs without a better validation metric before stopping
    per_token_dim: int = 4  # output width of the per-token adapter


# ---- adapters and head ------------------------------------------------------------------------------------------------
class PerTokenLinear(nn.Module):
    """A separate Linear(h → k) for each of the T tokens, outputs concatenated: [N, T, h] → [N, T·k]."""

    def __init__(self, num_tokens: int, dim: int, out_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_tokens, dim, out_dim) / math.sqrt(dim))
        self.bias = nn.Parameter(torch.zeros(num_tokens, out_dim))

    def forward(self, tokens: Tensor) -> Tensor:
        return (torch.einsum("ntd,tdk->ntk", tokens, self.weight) + self.bias).flatten(1)


def make_adapter(adapter: str, num_tokens: int, dim: int, per_token_dim: int = 4) -> tuple[nn.Module, int]:
    """(adapter module on [N, T, h] tokens, its output width)."""
    if adapter == "mean":
        return _Lambda(lambda t: t.mean(dim=1)), dim
    if adapter == "flatten":
        return nn.Flatten(1), num_tokens * dim
    if adapter == "per_token":
        return PerTokenLinear(num_tokens, dim, per_token_dim), num_tokens * per_token_dim
    raise ValueError(f"unknown adapter {adapter!r}; valid: {', '.join(ADAPTERS)}")


class _Lambda(nn.Module):
    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)


def mlp(in_dim: int, out_dim: int, config: HeadConfig) -> nn.Sequential:
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(config.num_layers):
        layers += [nn.Linear(dim, config.hidden_dim), nn.ReLU(), nn.Dropout(config.dropout)]
        dim = config.hidden_dim
    layers.append(nn.Linear(dim, out_dim))
    return nn.Sequential(*layers)


def _metric(task: str, outputs: Tensor, y: Tensor) -> float:
    """Accuracy (higher is better) or RMSE (lower is better)."""
    if task == "classification":
        return (outputs.argmax(1) == y).float().mean().item()
    return torch.sqrt(F.mse_loss(outputs.squeeze(1), y)).item()


def _better(task: str, new: float, best: float | None) -> bool:
    return best is None or (new > best if task == "classification" else new < best)


def train_head(
    build: Callable[[], nn.Module], task: str, data: dict[str, tuple[Tensor, Tensor]], config: HeadConfig, seed: int
) -> dict[str, float]:
    """Train the model ``build()`` makes on ``data["train"]`` with early stopping on ``data["val"]``; the test metric
    is computed once, with the weights of the best validation epoch. The model is built after seeding, so its
    initial weights depend on ``seed`` only, not on what used the global generator before."""
    torch.manual_seed(seed)
    model = build()
    x_train, y_train = data["train"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    loss_fn = F.cross_entropy if task == "classification" else (lambda out, y: F.mse_loss(out.squeeze(1), y))

    @torch.no_grad()
    def predict(x: Tensor) -> Tensor:
        model.eval()
        return torch.cat([model(x[i : i + 4096]) for i in range(0, len(x), 4096)])

    best, best_state, best_epoch, epoch = None, None, -1, 0
    for epoch in range(config.max_epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        for start in range(0, len(order), config.batch_size):
            idx = order[start : start + config.batch_size]
            loss = loss_fn(model(x_train[idx]), y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        val = _metric(task, predict(data["val"][0]), data["val"][1])
        if _better(task, val, best):
            best, best_state, best_epoch = val, copy.deepcopy(model.state_dict()), epoch
        elif epoch - best_epoch >= config.patience:
            break
    assert best_state is not None
    model.load_state_dict(best_state)
    test = _metric(task, predict(data["test"][0]), data["test"][1])
    return {"val": float(best), "test": test, "best_epoch": best_epoch, "epochs": epoch + 1}


# ---- inputs -----------------------------------------------------------------------------------------------------------
@torch.no_grad()
def encode_tokens(model: Any, features: Tensor, batch_size: int = 2048) -> Tensor:
    """The frozen encoder's output tokens [N, T, h] (``model.embed_tokens``; fp32, eval mode)."""
    model.eval()
    return torch.cat([model.embed_tokens(features[i : i + batch_size]).float() for i in range(0, len(features), batch_size)])


def one_hot_features(features: np.ndarray, num_numeric: int, cardinalities: Sequence[int]) -> np.ndarray:
    """Raw-feature MLP input: the scaled numerics and a one-hot block per categorical column."""
    blocks = [features[:, :num_numeric]]
    for j, card in enumerate(cardinalities):
        codes = features[:, num_numeric + j].astype(np.int64).clip(0, card - 1)
        blocks.append(np.eye(card, dtype=np.float32)[codes])
    return np.concatenate(blocks, axis=1).astype(np.float32)


def _standardise(splits: dict[str, Tensor]) -> dict[str, Tensor]:
    """Element-wise standardisation with the train split's statistics (the frozen tokens vary little around a
    per-position mean; an MLP trains poorly on such inputs unscaled)."""
    mean = splits["train"].mean(dim=0, keepdim=True)
    std = splits["train"].std(dim=0, keepdim=True).clamp_min(1e-6)
    return {k: (v - mean) / std for k, v in splits.items()}


# ---- the protocol -----------------------------------------------------------------------------------------------------
@dataclass
class TabularEvalResult:
    dataset: str
    task: str
    metric: str  # "accuracy" or "rmse"
    adapter: str
    runs: dict[str, list[dict[str, float]]] = field(default_factory=dict)  # model name → one entry per seed
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, tuple[float, float]]:
        """model name → (mean, std) of the test metric over seeds (std 0 for one seed)."""
        out = {}
        for name, runs in self.runs.items():
            values = [r["test"] for r in runs]
            out[name] = (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0)
        return out

    def markdown(self) -> str:
        seeds = max((len(r) for r in self.runs.values()), default=0)
        lines = [f"| model | test {self.metric} ({self.dataset}, {seeds} seeds) | wall s |", "| --- | --- | --- |"]
        for name, (mean, std) in self.summary().items():
            lines.append(f"| {name} | {mean:.4f} ± {std:.4f} | {self.seconds.get(name, float('nan')):.0f} |")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "summary": {k: {"mean": m, "std": s} for k, (m, s) in self.summary().items()}}


def evaluate_tabular(
    model: Any,
    datamodule: Any,
    adapter: str = "flatten",
    seeds: Sequence[int] = (0, 1, 2),
    head: HeadConfig | None = None,
    baselines: bool = True,
    boosting_rounds: int = 1000,
    boosting_threads: int = 1,
    limits: dict[str, int | None] | None = None,
) -> TabularEvalResult:
    """Frozen ``model`` (anything with ``embed_tokens``; None: baselines only) → ``adapter`` → MLP, and
    (``baselines``) MLP on raw features and HistGradientBoosting, each trained once per seed on the datamodule's
    train split, early-stopped on its val split and scored on its test split. ``limits``: at most this many first
    rows of a split (``{"train": 2000, "test": 1000}``; quick runs).

    ``boosting_threads``: OpenMP threads of the boosting baseline; 1 by default because its many short parallel
    regions spin-wait badly on a busy machine, and single-threaded it is already the fastest of the three."""
    if adapter not in ADAPTERS:
        raise ValueError(f"unknown adapter {adapter!r}; valid: {', '.join(ADAPTERS)}")
    head = head or HeadConfig()
    datamodule.setup()
    task = datamodule.task
    schema = datamodule.feature_schema
    num_numeric, cardinalities = len(schema["numeric"]), list(schema["cardinalities"])
    arrays = {s: datamodule.arrays(s) for s in ("train", "val", "test")}
    for split, limit in (limits or {}).items():
        if limit is not None and split in arrays:
            arrays[split] = tuple(a[:limit] for a in arrays[split])  # type: ignore[assignment]
    if task == "classification":
        targets = {s: torch.from_numpy(y).long() for s, (_, y) in arrays.items()}
        out_dim = int(datamodule.num_classes)
    else:
        targets = {s: torch.from_numpy(y).float() for s, (_, y) in arrays.items()}
        out_dim = 1
    name = getattr(datamodule, "dataset", None) or str(getattr(datamodule, "path", "table"))
    result = TabularEvalResult(name, task, "accuracy" if task == "classification" else "rmse", adapter)

    def timed(label: str, fn: Any) -> None:
        start = time.perf_counter()
        result.runs[label] = [fn(seed) for seed in seeds]
        result.seconds[label] = time.perf_counter() - start

    if baselines:
        raw = {s: torch.from_numpy(one_hot_features(x, num_numeric, cardinalities)) for s, (x, _) in arrays.items()}
        raw_data = {s: (raw[s], targets[s]) for s in raw}
        timed("MLP, raw features", lambda seed: train_head(lambda: mlp(raw["train"].shape[1], out_dim, head), task, raw_data, head, seed))

    if model is not None:
        _frozen_encoder_runs(model, arrays, targets, task, out_dim, adapter, head, timed, result)

    if baselines:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=boosting_threads, user_api="openmp"):
            timed("HistGradientBoosting", lambda seed: _hist_gradient_boosting(
                arrays, task, num_numeric, len(cardinalities), seed, boosting_rounds
            ))
    return result


def _frozen_encoder_runs(model: Any, arrays: dict[str, Any], targets: dict[str, Tensor], task: str, out_dim: int,
                         adapter: str, head: HeadConfig, timed: Any, result: TabularEvalResult) -> None:  # fmt: skip
    start = time.perf_counter()
    tokens = _standardise({s: encode_tokens(model, torch.from_numpy(x)) for s, (x, _) in arrays.items()})
    encode_seconds = time.perf_counter() - start
    num_tokens, dim = tokens["train"].shape[1:]
    token_data = {s: (tokens[s], targets[s]) for s in tokens}

    def build() -> nn.Module:
        adapter_module, width = make_adapter(adapter, num_tokens, dim, head.per_token_dim)
        return nn.Sequential(adapter_module, mlp(width, out_dim, head))

    label = f"MLP on frozen {type(model).__name__} ({adapter})"
    timed(label, lambda seed: train_head(build, task, token_data, head, seed))
    result.seconds[label] += encode_seconds


def _hist_gradient_boosting(
    arrays: dict[str, tuple[np.ndarray, np.ndarray]], task: str, num_numeric: int, num_categorical: int, seed: int, rounds: int = 1000
) -> dict[str, float]:
    """sklearn HistGradientBoosting (learning rate 0.05, native categoricals) for ``rounds`` rounds; the number of
    rounds used for test is the one with the best val metric (staged predictions: early stopping on val)."""
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
    )

    categorical = [False] * num_numeric + [True] * num_categorical
    cls = HistGradientBoostingClassifier if task == "classification" else HistGradientBoostingRegressor
    model = cls(max_iter=rounds, learning_rate=0.05, early_stopping=False, categorical_features=categorical or None, random_state=seed)
    (x_tr, y_tr), (x_val, y_val), (x_te, y_te) = arrays["train"], arrays["val"], arrays["test"]
    model.fit(x_tr, y_tr)

    def score(pred: np.ndarray, y: np.ndarray) -> float:
        return float((pred == y).mean()) if task == "classification" else float(np.sqrt(np.mean((pred - y) ** 2)))

    # pick the number of boosting rounds on the val split only, then score test at that round
    val_scores = [score(p, y_val) for p in model.staged_predict(x_val)]
    best = int(np.argmax(val_scores) if task == "classification" else np.argmin(val_scores))
    test_pred = next(p for i, p in enumerate(model.staged_predict(x_te)) if i == best)
    return {"val": val_scores[best], "test": score(test_pred, y_te), "best_epoch": best, "epochs": len(val_scores)}
