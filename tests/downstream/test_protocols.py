"""Every protocol that applies, on every method's tiny case (tests/method_cases.py), with real datamodules of each
modality: the results schema, sane values, and the baselines each protocol takes (timm's test over list_models())."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from tests.method_cases import CASES
from zoo.downstream.pretrained import Pretrained
from zoo.downstream.protocols import PROTOCOLS, run
from zoo.hub import validate_results

KEYS = {"protocol", "metric", "value", "std", "seeds", "model", "dataset", "split", "settings"}
#: the smallest settings under which each protocol still does its whole job
QUICK = {"seeds": (0,), "max_epochs": 2, "patience": 1, "boosting_rounds": 5, "epochs": 1, "k": 20, "limit_train": 200, "limit_test": 60, "max_iter": 30}
#: one case per modality also scores the baselines (they do not depend on the method)
BASELINE_CASES = ("simclr", "tjepa", "slap")


@pytest.fixture(scope="module")
def datamodules(tmp_path_factory):
    from zoo.data.audio_text import AudioTextDataModule
    from zoo.data.images import ImageDataModule
    from zoo.data.skeleton import SkeletonDataModule
    from zoo.data.skeleton_generator import write_actions_dataset
    from zoo.data.tabular import TabularDataModule

    root = tmp_path_factory.mktemp("downstream")
    rng = np.random.default_rng(0)
    n = 240
    frame = pd.DataFrame({"a": rng.random(n), "b": rng.random(n), "c": rng.random(n), "d": rng.integers(0, 3, n).astype(str), "e": rng.integers(0, 2, n).astype(str)})
    frame["y"] = ((frame["a"] + frame["b"] > 1) ^ (frame["d"] == "0")).astype(int)
    tables = TabularDataModule(frame=frame, target="y", categorical_columns=["d", "e"], batch_size=32, knn_bank_size=0)
    write_actions_dataset(root / "skeletons", train=60, test=24, seed=0, max_frames=8, num_persons=1)
    skeletons = SkeletonDataModule(str(root / "skeletons"), data_format="generated", num_frames=8, num_persons=1, val_size=6, knn_bank_size=20)
    sr, rows = 8000, []
    for i in range(16):
        t = np.arange(4000) / sr
        sf.write(str(root / f"c{i}.wav"), (0.3 * np.sin(2 * np.pi * (200 + 60 * i) * t)).astype(np.float32), sr)
        rows.append(f"c{i}.wav,a {'fast loud piano' if i % 2 else 'slow soft organ'} tune {i},{'piano' if i % 2 else 'organ'}")
    (root / "train.csv").write_text("audio_path,caption,label\n" + "\n".join(rows[:12]) + "\n")
    (root / "test.csv").write_text("audio_path,caption,label\n" + "\n".join(rows[12:]) + "\n")
    audio = AudioTextDataModule(str(root / "train.csv"), str(root / "test.csv"), sample_rate=sr, clip_seconds=0.5, batch_size=4, knn_bank_size=12)
    images = ImageDataModule(dataset="digits", val_size=100, knn_bank_size=100)
    return {"image": images, "tabular": tables, "skeleton": skeletons, "audio": audio}


def _pretrained(case: str, datamodules: dict) -> Pretrained:
    c = CASES[case]
    probe = get_modality(c)
    overrides = {"feature_schema": datamodules["tabular"].feature_schema} if probe == "tabular" else {}
    model = c.build(**overrides).eval()
    return Pretrained(model, {}, f"tests:{case}", _datamodule=datamodules[probe])


def get_modality(case) -> str:
    from zoo.downstream.pretrained import MODALITIES
    from zoo.registry import get_method

    return MODALITIES[get_method(case.method).input_key]


def _check(entries: list[dict], protocol: str, model: str) -> None:
    assert entries, f"{protocol} returned nothing"
    validate_results(entries)  # what `zoo evaluate --export` writes into the record: every entry must pass
    for e in entries:
        assert set(e) == KEYS and e["protocol"] == protocol and e["split"] == "test"
        assert e["model"] in (model, "hist-gradient-boosting")
        assert isinstance(e["value"], float) and math.isfinite(e["value"]) and e["metric"] and " " not in e["metric"]
        if e["metric"] == "accuracy" or "recall" in e["metric"]:
            assert 0.0 <= e["value"] <= 1.0


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_applicable_protocol_runs_on_every_method(case, datamodules):
    p = _pretrained(case, datamodules)
    applicable = [name for name, spec in PROTOCOLS.items() if spec.applies(p) is None]
    assert applicable, f"no protocol applies to {case}"
    for name in applicable:
        _check(run(p, name, **QUICK), name, "pretrained")
        for baseline in PROTOCOLS[name].baselines if case in BASELINE_CASES else ():
            b = p.random_init(0) if baseline == "random" else p.raw_inputs()
            _check(run(b, name, **QUICK), name, b.name)
    others = [name for name in PROTOCOLS if name not in applicable]
    for name in others:
        with pytest.raises(ValueError, match=f"protocol {name} applies to"):
            run(p, name)


def test_knn_and_linear_measure_something(datamodules):
    """Raw digits pixels are a strong baseline (kNN ~.97): the protocols must find it, and chance for labels that
    carry no information about the inputs."""
    p = _pretrained("simclr", datamodules).raw_inputs()
    knn = run(p, "knn", k=20)[0]
    linear = run(p, "linear")[0]
    assert knn["value"] > 0.9 and linear["value"] > 0.9
    assert knn["settings"]["bank_size"] == len(datamodules["image"].arrays("train")[0])
    limited = run(p, "knn", k=20, limit_train=300, limit_test=50)[0]
    assert limited["settings"]["bank_size"] == 300 and limited["settings"]["queries"] == 50


def test_finetune_leaves_the_evaluated_model_untouched(datamodules):
    p = _pretrained("skeleton_mae", datamodules)
    before = {k: v.clone() for k, v in p.model.state_dict().items()}
    _check(run(p, "finetune", epochs=1, limit_train=60), "finetune", "pretrained")
    assert all(torch.equal(before[k], v) for k, v in p.model.state_dict().items())
    assert not p.model.training
    _check(run(p.raw_inputs(), "finetune", epochs=1, limit_train=60), "finetune", "raw-input")  # a linear classifier on raw coordinates
