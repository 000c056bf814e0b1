import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import zoo
from zoo.hub import PretrainedLoadError, read_record, rewrite_record
from zoo.methods.simclr import SimCLR


@pytest.fixture
def model(tiny_encoder):
    torch.manual_seed(0)
    m = SimCLR(encoder=tiny_encoder, projector_out_dim=16, num_classes=4, temperature=0.2)
    # move BN running stats away from their init so the round trip covers buffers too
    m.train()
    m.embed(torch.rand(8, 1, 8, 8))
    return m.eval()


@pytest.fixture
def saved(model, tmp_path):
    model.save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def test_folder_layout_and_config(saved):
    assert sorted(os.listdir(saved)) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((saved / "config.json").read_text())
    assert config["method"] == "simclr" and config["zoo_version"] == zoo.__version__
    assert config["temperature"] == 0.2 and config["num_classes"] == 4
    assert config["encoder"]["model_kwargs"]["channels"] == [8, 16, 32, 64]
    card = (saved / "README.md").read_text()
    assert "library_name: zoo" in card and "## Metrics" in card and "zoo.from_pretrained" in card


def test_round_trip_gives_identical_embeddings(model, saved):
    images = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8)
    for loaded in (zoo.from_pretrained(saved), SimCLR.from_pretrained(saved)):
        assert isinstance(loaded, SimCLR) and not loaded.training
        assert torch.equal(loaded.embed(images), model.embed(images))
        for key, value in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key


def test_missing_weights_file(saved):
    (saved / "model.safetensors").unlink()
    with pytest.raises(PretrainedLoadError, match="no model.safetensors"):
        zoo.from_pretrained(saved)


def test_pickle_weights_are_refused(saved):
    (saved / "model.safetensors").unlink()
    torch.save({}, saved / "pytorch_model.bin")
    with pytest.raises(PretrainedLoadError, match="pytorch_model.bin"):
        zoo.from_pretrained(saved)


def test_missing_and_mismatched_tensors_are_listed(saved):
    state = load_file(saved / "model.safetensors")
    state.pop("projector.0.weight")
    state["projector.3.weight"] = torch.zeros(3, 3)
    save_file(state, saved / "model.safetensors")
    with pytest.raises(PretrainedLoadError, match=r"missing 1 tensor.*projector\.0\.weight.*shape mismatch.*projector\.3\.weight"):
        zoo.from_pretrained(saved)


def test_config_that_does_not_match_the_weights(saved):
    config = json.loads((saved / "config.json").read_text())
    config["projector_out_dim"] = 32
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(PretrainedLoadError, match="shape mismatch"):
        zoo.from_pretrained(saved)


def test_unknown_method_and_unknown_keys(saved):
    config = json.loads((saved / "config.json").read_text())
    (saved / "config.json").write_text(json.dumps({**config, "method": "nope"}))
    with pytest.raises(PretrainedLoadError, match="nope"):
        zoo.from_pretrained(saved)
    (saved / "config.json").write_text(json.dumps({**config, "not_an_arg": 1}))
    with pytest.raises(PretrainedLoadError, match="not_an_arg"):
        zoo.from_pretrained(saved)


def test_corrupt_files(saved):
    (saved / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(PretrainedLoadError, match="safetensors"):
        zoo.from_pretrained(saved)
    (saved / "config.json").write_text("{broken")
    with pytest.raises(PretrainedLoadError, match="JSON"):
        zoo.from_pretrained(saved)


def test_not_a_folder(tmp_path):
    with pytest.raises(PretrainedLoadError):
        zoo.from_pretrained(tmp_path / "nothing-here")


def test_failed_save_leaves_the_previous_folder_intact(model, saved, monkeypatch):
    before = (saved / "model.safetensors").read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("zoo.hub.save_model", broken)
    with pytest.raises(OSError, match="disk full"):
        model.save_pretrained(saved)
    assert (saved / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in saved.parent.iterdir()) == ["model"]  # no temporary folder left behind


class _RepoUrl(str):
    """What HfApi.create_repo returns: the repo URL, with its ``repo_id``."""

    repo_id: str


def _repo_url(repo_id: str) -> _RepoUrl:
    url = _RepoUrl(f"https://huggingface.co/{repo_id}")
    url.repo_id = repo_id
    return url


def test_push_to_hub_uploads_the_saved_folder(model, monkeypatch, tmp_path):
    """push_to_hub goes through huggingface_hub up to the upload call; the upload is captured locally."""
    calls = {}

    def fake_create_repo(self, repo_id, **kwargs):
        return _repo_url(repo_id)

    def fake_upload_folder(self, *, repo_id, folder_path, **kwargs):
        calls["repo_id"] = repo_id
        calls["files"] = sorted(os.listdir(folder_path))
        calls["config"] = json.loads(open(os.path.join(folder_path, "config.json")).read())
        return "commit-url"

    monkeypatch.setattr("huggingface_hub.HfApi.create_repo", fake_create_repo)
    monkeypatch.setattr("zoo.hub.hub_unreachable_reason", lambda timeout=3.0: None)  # the Hub is faked: reachable
    monkeypatch.setattr("huggingface_hub.HfApi.upload_folder", fake_upload_folder)
    assert model.push_to_hub("org/simclr-test", token="x") == "commit-url"
    assert calls["repo_id"] == "org/simclr-test"
    assert calls["files"] == ["README.md", "config.json", "model.safetensors"]
    assert calls["config"]["method"] == "simclr"


def test_unreachable_repo_id_is_a_load_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(PretrainedLoadError, match="could not get config.json from the Hub"):
        zoo.from_pretrained("some-org/not-cached-anywhere")


def test_saved_folder_is_readable_by_others(saved):
    # mkdtemp makes a private 0700 folder and safetensors a 0600 file; the saved folder gets the umask permissions
    umask = os.umask(0)
    os.umask(umask)
    assert saved.stat().st_mode & 0o777 == 0o777 & ~umask
    for name in ("config.json", "model.safetensors", "README.md"):
        assert (saved / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_failed_swap_puts_the_previous_folder_back(model, saved, monkeypatch):
    before = (saved / "model.safetensors").read_bytes()
    real_replace = os.replace

    def failing_second_move(src, dst):
        if ".tmp-" in str(src):
            raise OSError("rename failed")
        return real_replace(src, dst)

    monkeypatch.setattr("zoo.hub.os.replace", failing_second_move)
    with pytest.raises(OSError, match="rename failed"):
        model.save_pretrained(saved)
    assert (saved / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in saved.parent.iterdir()) == ["model"]


class _SideEffect:
    """Unpickling this runs code (creates a file): what a malicious pickle would do."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_named_model_safetensors_is_refused_without_running_it(saved, tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"payload": _SideEffect(str(marker))}, saved / "model.safetensors")
    with pytest.raises(PretrainedLoadError, match="not a readable safetensors file"):
        zoo.from_pretrained(saved)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["model.ckpt", "model.pt", "model.pth"])
def test_every_pickle_weight_name_is_refused(saved, name):
    (saved / "model.safetensors").unlink()
    torch.save({}, saved / name)
    with pytest.raises(PretrainedLoadError, match=rf"found {name}, a pickle, which zoo refuses to load"):
        zoo.from_pretrained(saved)


def test_method_class_and_config_disagree(saved):
    config = json.loads((saved / "config.json").read_text())
    (saved / "config.json").write_text(json.dumps({**config, "method": "swav"}))
    with pytest.raises(PretrainedLoadError, match="config.json is for method 'swav', not 'simclr'"):
        SimCLR.from_pretrained(saved)
    # dispatching on the edited method builds a SwAV from SimCLR's args: refused by name, not with a traceback
    with pytest.raises(PretrainedLoadError, match=r"\['projector_layers'\] are not init args of SwAV"):
        zoo.from_pretrained(saved)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"projector_out_dim": "big"}, "config.json does not build a SimCLR"),
        ({"lr": -1.0}, "config.json does not build a SimCLR: invalid optimisation settings"),
        ({"encoder": None}, "shape mismatch"),  # a default ResNet-18 is not the saved tiny encoder
    ],
)
def test_config_values_that_do_not_fit(saved, edit, message):
    config = json.loads((saved / "config.json").read_text())
    (saved / "config.json").write_text(json.dumps({**config, **edit}))
    with pytest.raises(PretrainedLoadError, match=message):
        zoo.from_pretrained(saved)


def test_missing_or_non_object_config(saved):
    (saved / "config.json").write_text("[1, 2]")
    with pytest.raises(PretrainedLoadError, match="not a zoo config"):
        zoo.from_pretrained(saved)
    (saved / "config.json").unlink()
    with pytest.raises(PretrainedLoadError, match="no config.json in this folder"):
        zoo.from_pretrained(saved)


def test_zoo_push_uploads_a_loadable_folder_and_refuses_a_broken_one(saved, monkeypatch, tmp_path, capsys):
    """`zoo push DIR org/repo` up to the upload call (captured locally): the folder is checked with from_pretrained
    first, so a folder that would not load is never published."""
    from zoo.cli import main

    calls = []

    def fake_create_repo(self, repo_id, private=False, exist_ok=False, **kwargs):
        calls.append(("create", repo_id, private, self.token))
        return _repo_url(repo_id)

    def fake_upload_folder(self, *, repo_id, folder_path, **kwargs):
        calls.append(("upload", repo_id, sorted(os.listdir(folder_path)), self.token))
        return f"https://huggingface.co/{repo_id}/commit/abc"

    monkeypatch.setattr("huggingface_hub.HfApi.create_repo", fake_create_repo)
    monkeypatch.setattr("zoo.hub.hub_unreachable_reason", lambda timeout=3.0: None)  # the Hub is faked: reachable
    monkeypatch.setattr("huggingface_hub.HfApi.upload_folder", fake_upload_folder)
    assert main(["push", str(saved), "org/simclr-test", "--private", "--token", "hf_x"]) == 0
    assert calls == [
        ("create", "org/simclr-test", True, "hf_x"),
        ("upload", "org/simclr-test", ["README.md", "config.json", "model.safetensors"], "hf_x"),
    ]
    assert "pushed" in capsys.readouterr().out

    broken = tmp_path / "broken"
    shutil.copytree(saved, broken)
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    calls.clear()
    assert main(["push", str(broken), "org/simclr-test"]) == 2
    assert calls == []
    assert "not a readable safetensors file" in capsys.readouterr().err


# ---- saving into a folder that already has files ---------------------------------------------------------------
def _handmade_checkpoint(model, path):
    """What `zoo fit` writes, as far as `zoo export` reads it."""
    torch.save({"zoo_method": "simclr", "state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    return path


def test_export_refuses_a_folder_of_other_files_and_deletes_nothing(model, tmp_path, capsys):
    from zoo.cli import main

    ckpt = _handmade_checkpoint(model, tmp_path / "last.ckpt")
    folder = tmp_path / "mine"
    (folder / "sub").mkdir(parents=True)
    (folder / "notes.txt").write_text("keep me")
    (folder / "sub" / "data.bin").write_bytes(b"\x00\x01")
    assert main(["export", str(ckpt), str(folder)]) == 2
    err = capsys.readouterr().err
    assert "not empty and is not a zoo Hub folder" in err and err.count("\n") == 1
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt", "sub"]
    assert (folder / "notes.txt").read_text() == "keep me" and (folder / "sub" / "data.bin").read_bytes() == b"\x00\x01"
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(zoo.hub.HubFolderError, match="is a file"):
        model.save_pretrained(tmp_path / "a-file")
    # an empty folder is fine, and nothing is reported as replaced
    (tmp_path / "empty").mkdir()
    assert main(["export", str(ckpt), str(tmp_path / "empty")]) == 0
    assert "replaced" not in capsys.readouterr().out


def test_export_over_an_earlier_save_replaces_only_zoo_files(model, saved, tmp_path, capsys):
    from zoo.cli import main

    (saved / "notes.txt").write_text("keep me")
    (saved / "plots").mkdir()
    (saved / "plots" / "loss.png").write_bytes(b"png")
    with torch.no_grad():
        model.projector[0].weight.add_(1.0)
    ckpt = _handmade_checkpoint(model, tmp_path / "last.ckpt")
    assert main(["export", str(ckpt), str(saved)]) == 0
    assert "replaced model.safetensors, README.md, config.json" in capsys.readouterr().out
    assert sorted(p.name for p in saved.iterdir()) == ["README.md", "config.json", "model.safetensors", "notes.txt", "plots"]
    assert (saved / "notes.txt").read_text() == "keep me" and (saved / "plots" / "loss.png").read_bytes() == b"png"
    assert torch.equal(zoo.from_pretrained(saved).projector[0].weight, model.projector[0].weight)


def test_no_intermediate_state_pairs_a_config_with_other_weights(model, saved, monkeypatch):
    """Every state the folder passes through (one per rename): config.json is either absent or beside the weights
    it was written with; a save killed there is recognised as a zoo folder and the next save completes it."""
    old = {n: (saved / n).read_bytes() for n in ("config.json", "model.safetensors")}
    model.hparams.temperature = 0.3  # same shapes: only the config tells the two saves apart
    with torch.no_grad():
        model.projector[0].weight.add_(1.0)
    states, real_replace = [], os.replace

    def recording_replace(src, dst):
        real_replace(src, dst)
        states.append({n: (saved / n).read_bytes() if (saved / n).exists() else None for n in old})

    monkeypatch.setattr("zoo.hub.os.replace", recording_replace)
    model.save_pretrained(saved)
    new = states[-1]
    assert new["config.json"] != old["config.json"] and new["model.safetensors"] != old["model.safetensors"]
    for state in states:
        if state["config.json"] is not None:
            assert state in (old, new)
    # a save killed after its weights moved in: no config.json, the new weights, its temporaries left by a dead pid
    monkeypatch.setattr("zoo.hub.os.replace", real_replace)
    (saved / "config.json").unlink()
    (saved / ".config.json.old-999999999").write_text("{}")
    assert zoo.hub.is_hub_folder(saved)
    with pytest.raises(PretrainedLoadError, match="no config.json"):
        zoo.from_pretrained(saved)
    assert model.write_pretrained(saved) == ["model.safetensors", "README.md"]
    assert sorted(os.listdir(saved)) == ["README.md", "config.json", "model.safetensors"]
    assert zoo.from_pretrained(saved).hparams.temperature == 0.3


def test_a_failed_rename_puts_every_earlier_file_back(model, saved, monkeypatch):
    before = {n: (saved / n).read_bytes() for n in os.listdir(saved)}
    real_replace = os.replace

    def failing_card_move(src, dst):
        if ".README.md.tmp-" in str(src):  # after the config was set aside and the weights moved in
            raise OSError("rename failed")
        return real_replace(src, dst)

    monkeypatch.setattr("zoo.hub.os.replace", failing_card_move)
    with pytest.raises(OSError, match="rename failed"):
        model.save_pretrained(saved, model_card_kwargs={"title": "other"})
    assert {n: (saved / n).read_bytes() for n in os.listdir(saved)} == before


def test_push_uploads_only_what_zoo_saved(model, saved, monkeypatch):
    from huggingface_hub.utils import filter_repo_objects

    uploaded = {}

    def fake_create_repo(self, repo_id, **kwargs):
        return _repo_url(repo_id)

    def fake_upload_folder(self, *, repo_id, folder_path, allow_patterns=None, ignore_patterns=None, **kwargs):
        files = [str(p.relative_to(folder_path)) for p in Path(folder_path).rglob("*") if p.is_file()]
        uploaded["files"] = sorted(filter_repo_objects(files, allow_patterns=allow_patterns, ignore_patterns=ignore_patterns))
        return "commit-url"

    monkeypatch.setattr("huggingface_hub.HfApi.create_repo", fake_create_repo)
    monkeypatch.setattr("huggingface_hub.HfApi.upload_folder", fake_upload_folder)
    monkeypatch.setattr("zoo.hub.hub_unreachable_reason", lambda timeout=3.0: None)  # the Hub is faked: reachable
    (saved / "secret.txt").write_text("token")
    (saved / "sub").mkdir()
    (saved / "sub" / "config.json").write_text("{}")
    assert model.save_pretrained(saved, push_to_hub=True, repo_id="org/x") == "commit-url"
    assert uploaded["files"] == ["README.md", "config.json", "model.safetensors"]


# ---- the results record and the card made from it -----------------------------------------------------------------

RESULTS = [
    {"protocol": "knn", "metric": "accuracy", "value": 0.7898, "model": "pretrained", "dataset": "fashion-mnist",
     "split": "test", "settings": {"k": 200, "temperature": 0.1, "bank": "train"}},
    {"protocol": "knn", "metric": "accuracy", "value": 0.7855, "model": "raw-input", "dataset": "fashion-mnist",
     "split": "test", "settings": {"k": 200, "temperature": 0.1, "bank": "train"}},
    {"protocol": "linear", "metric": "accuracy", "value": 0.84, "std": 0.0021, "seeds": [0, 1, 2], "model": "pretrained",
     "dataset": "fashion-mnist", "split": "test", "settings": {"classifier": "logistic-regression"}},
    {"protocol": "linear", "metric": "accuracy", "value": 1, "model": "timm:resnet18", "dataset": "fashion-mnist",
     "split": "test", "settings": {"classifier": "logistic-regression"}},
]  # fmt: skip
RECORD = {
    "data": {"class": "ImageDataModule", "dataset": "fashion-mnist", "batch_size": 32},
    "metrics": {"train/loss": 3.3, "train/probe_acc": 0.5, "lr-SGD/decay": 0.01, "val/knn_acc": 0.75, "val/rankme": 78.25},
    "epochs_completed": 2, "global_step": 10, "trainer": {"max_epochs": 2},
}  # fmt: skip


def test_set_results_round_trip(model, tmp_path):
    model._training_record = dict(RECORD)
    model.set_results(RESULTS)
    assert model.training_record()["results"][3]["value"] == 1.0 and model.training_record()["results"][0]["std"] is None
    model.save_pretrained(tmp_path / "m")
    with safe_open(str(tmp_path / "m" / "model.safetensors"), framework="pt") as f:
        metadata = f.metadata()
    assert "results" not in json.loads(metadata["training_record"])  # the results have their own key (CONTRACT §2)
    assert json.loads(metadata["results"]) == model.training_record()["results"]
    loaded = zoo.from_pretrained(tmp_path / "m")
    assert loaded.training_record() == model.training_record() == {**RECORD, "results": model.training_record()["results"]}
    assert read_record(tmp_path / "m") == loaded.training_record()
    model.set_results([])  # replaces: an empty list clears them
    model.save_pretrained(tmp_path / "m")
    assert "results" not in read_record(tmp_path / "m")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"value": "0.79"}, r"results\[1\] \(raw-input knn accuracy\): value '0.79' is not a finite number"),
        ({"value": float("nan")}, r"value nan is not a finite number"),
        ({"metric": "knn_acc (random init; k=200)"}, r"metric 'knn_acc \(random init; k=200\)' is not a name"),
        ({"model": None}, r"results\[1\]: model None is not a name"),
        ({"std": -1.0}, r"std -1.0 is not a finite number >= 0"),
        ({"seeds": [0, "1"]}, r"seeds \[0, '1'\] is not a non-empty list of ints"),
        ({"settings": {"k": object()}}, r"settings are not JSON values"),
        ({"extra": 1}, r"unknown key\(s\) \['extra'\]"),
        ({"value": 0.5, "settings": {"k": 200, "temperature": 0.1, "bank": "train"}, "model": "pretrained"},
         r"results\[1\] \(pretrained knn accuracy\): the same model, protocol, metric, data and settings as results\[0\]"),
    ],
)  # fmt: skip
def test_bad_results_entry_is_one_line_naming_it(change, message):
    from zoo.hub import ResultsError, validate_results

    with pytest.raises(ResultsError, match=message) as info:
        validate_results([RESULTS[0], {**RESULTS[1], **change}])
    assert "\n" not in str(info.value)


def test_results_must_be_a_list_of_complete_entries():
    from zoo.hub import ResultsError, validate_results

    with pytest.raises(ResultsError, match=r"results\[0\] \(pretrained knn accuracy\): missing key\(s\) \['split'\]"):
        validate_results([{k: v for k, v in RESULTS[0].items() if k != "split"}])
    with pytest.raises(ResultsError, match="results must be a list of entries, got dict"):
        validate_results(RESULTS[0])


def test_bad_results_metadata_is_a_load_error(saved):
    tensors = load_file(saved / "model.safetensors")
    save_file(tensors, str(saved / "model.safetensors"), metadata={"format": "pt", "method": "simclr", "results": '[{"value": 1}]'})
    with pytest.raises(PretrainedLoadError, match=r"'results' metadata: results\[0\]: missing key"):
        zoo.from_pretrained(saved)


def test_card_model_index_and_results_table_from_the_record(model, tmp_path):
    from huggingface_hub import ModelCard, metadata_load

    model._training_record = dict(RECORD)
    model.set_results(RESULTS)
    model.update_record(command="zoo fit --config configs/simclr/fashion_mnist.yaml", wall_time_s=754.0, machine="2-core CPU", seeds=[0])
    model.save_pretrained(tmp_path / "m")
    card = ModelCard.load(tmp_path / "m" / "README.md")
    index = [(r.task_type, r.dataset_type, r.dataset_split, r.metric_type, r.metric_name, r.metric_value, r.metric_args) for r in card.data.eval_results]
    assert index == [  # the pretrained entries only; the protocol is in the metric's name, the settings its args
        ("feature-extraction", "fashion-mnist", "test", "accuracy", "knn accuracy", 0.7898, {"k": 200, "temperature": 0.1, "bank": "train"}),
        ("feature-extraction", "fashion-mnist", "test", "accuracy", "linear accuracy", 0.84, {"classifier": "logistic-regression"}),
    ]
    raw = metadata_load(tmp_path / "m" / "README.md")
    assert raw["model-index"][0]["results"][0]["metrics"][0]["name"] == "knn accuracy"
    text = card.text
    assert "| protocol | metric | data | settings | pretrained | raw-input | timm:resnet18 |" in text
    assert "| knn | accuracy | fashion-mnist (test) | k=200, temperature=0.1, bank=train | 0.7898 | 0.7855 | - |" in text
    assert "| linear | accuracy | fashion-mnist (test) | classifier=logistic-regression | 0.84 ± 0.0021 (seeds 0, 1, 2) | - | 1 |" in text
    # the training run's own metrics: named ones, short (no learning rates, no per-step probe values)
    assert "| val/knn_acc | 0.75 |" in text and "| train/loss | 3.3 |" in text and "lr-SGD" not in text and "train/probe_acc" not in text
    assert "```bash\nzoo fit --config configs/simclr/fashion_mnist.yaml\n```" in text
    assert "| wall time | 12.6 min |" in text and "| machine | 2-core CPU |" in text and "| seed(s) | 0 |" in text
    with pytest.raises(ValueError, match="training record 'wall_time_s': expected"):
        model.update_record(wall_time_s="long")


def test_card_shows_the_pictures_that_are_there_and_push_uploads_them(model, saved, monkeypatch):
    from zoo.hub import upload_folder

    assert ".png" not in (saved / "README.md").read_text()
    (saved / "training_curve.png").write_bytes(b"\x89PNG curve")
    model.save_pretrained(saved)  # a re-save keeps the picture (not zoo's to write) and the card now shows it
    card = (saved / "README.md").read_text()
    assert "](training_curve.png)" in card and "embedding_map.png" not in card
    assert (saved / "training_curve.png").read_bytes() == b"\x89PNG curve"
    (saved / "embedding_map.png").write_bytes(b"\x89PNG map")
    rewrite_record(saved)  # the record's card, regenerated in place: both pictures
    assert "](training_curve.png)" in (saved / "README.md").read_text() and "](embedding_map.png)" in (saved / "README.md").read_text()

    uploaded = {}

    def fake_upload_folder(self, *, repo_id, folder_path, allow_patterns=None, **kwargs):
        uploaded["files"] = [p.name for p in Path(folder_path).iterdir() if p.is_file()]
        uploaded["allow"] = allow_patterns
        uploaded["README.md"] = (Path(folder_path) / "README.md").read_text()
        return "commit-url"

    monkeypatch.setattr("huggingface_hub.HfApi.create_repo", lambda self, repo_id, **kw: _repo_url(repo_id))
    monkeypatch.setattr("huggingface_hub.HfApi.upload_folder", fake_upload_folder)
    monkeypatch.setattr("zoo.hub.hub_unreachable_reason", lambda timeout=3.0: None)  # the Hub is faked: reachable
    (saved / "notes.txt").write_text("mine")
    local_card = (saved / "README.md").read_text()
    assert f'zoo.from_pretrained("{saved}")' in local_card
    assert upload_folder(saved, "org/x") == "commit-url"
    assert sorted(uploaded["files"]) == ["README.md", "config.json", "embedding_map.png", "model.safetensors", "training_curve.png"]
    assert set(uploaded["allow"]) == set(uploaded["files"])
    # the pushed card names the repo; the local folder is left as it is
    assert 'zoo.from_pretrained("org/x")' in uploaded["README.md"] and str(saved) not in uploaded["README.md"].split("## Training data")[0]
    assert (saved / "README.md").read_text() == local_card



def test_results_table_puts_the_random_init_baseline_on_its_protocol_row_and_names_its_seeds():
    from zoo.hub import results_table

    common = {"protocol": "knn", "metric": "accuracy", "dataset": "fashion-mnist", "split": "test"}
    results = [
        {**common, "model": "pretrained", "value": 0.85, "settings": {"k": 200}},
        {**common, "model": "random-init", "value": 0.25, "std": 0.01, "settings": {"k": 200, "init_seeds": [0, 1, 2]}},
        {**common, "model": "raw-input", "value": 0.78, "settings": {"k": 200}},
    ]
    lines = results_table(results).splitlines()
    assert lines[0] == "| protocol | metric | data | settings | pretrained | random-init | raw-input |"
    assert len([line for line in lines if line.startswith("| knn |")]) == 1
    assert lines[-1].startswith("Baselines: random-init: the same architecture and config, untrained (weight seeds 0, 1, 2; mean ± std over them)")
    # a baseline's own settings (here its input) leave the row to a note under the table
    tabular = [{**e, "protocol": "tabular", "settings": {"adapter": "flatten", **({"input": "one-hot"} if e["model"] == "raw-input" else {})}} for e in results]
    table = results_table(tabular).splitlines()
    assert [line for line in table if line.startswith("| tabular |")] == [
        "| tabular | accuracy | fashion-mnist (test) | adapter=flatten | 0.85 | 0.25 ± 0.01 | 0.78 |"
    ]
    assert table[-1] == "Settings of one model only: raw-input: input=one-hot."
    # a model evaluated under two settings keeps one row per settings
    twice = results + [{**results[0], "value": 0.9, "settings": {"k": 20}}]
    assert [line.split(" | ")[3:5] for line in results_table(twice).splitlines() if line.startswith("| knn |")] == [["k=200", "0.85"], ["k=20", "0.9"]]
    # a fine-tune's wall time is recorded beside its settings but does not split the row
    tuned = [{**e, "protocol": "finetune", "settings": {"epochs": 10, "seconds": s}} for e, s in zip(results, (272.2, 364.3, 3.1))]
    assert [line for line in results_table(tuned).splitlines() if line.startswith("| finetune |")] == [
        "| finetune | accuracy | fashion-mnist (test) | epochs=10 | 0.85 | 0.25 ± 0.01 | 0.78 |"
    ]
