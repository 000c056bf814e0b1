"""The whole CLI path on 2 processes (DDP, gloo, CPU) for every method: `zoo fit` with validation and mid-epoch
checkpoints, an interrupted run resumed to the same weights as an uninterrupted one, `zoo test`, `zoo predict`
(one embeddings file, every sample once, in dataset order), `zoo export` → ``zoo.from_pretrained``; and a NaN loss on
one rank stopping both ranks with the one-line message.

Starting Python and importing zoo costs seconds per process, so one pair of gloo processes runs the CLI in-process
(``zoo.cli.main``) for every method, as torchrun-launched ranks would; the runs stop deterministically (a callback
raises after the mid-epoch checkpoint). SimCLR also goes through the real `zoo` command, Lightning launching the
second process, with a real SIGKILL mid-epoch. Every run's cwd is a temporary folder and its config path absolute.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from safetensors.torch import load_file

import zoo
from tests.conftest import TINY_ENCODER
from tests.distributed import run_distributed
from zoo.cli import main
from zoo.eval.suite import EvaluationSuite
from zoo.methods.simclr import SimCLR

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
STEPS_PER_EPOCH, CHECKPOINT_EVERY, INTERRUPT_AT = 4, 2, 7  # 2 epochs; the last checkpoint before step 7 is mid-epoch
PREDICT_BATCHES = 2
TINY_HEADS = {"projector_hidden_dim": 16, "projector_out_dim": 8}
TINY_VIT = {"img_size": 8, "patch_size": 2, "in_chans": 1, "embed_dim": 16, "depth": 1, "num_heads": 2}
JEPA = ["--model.init_args.encoder", json.dumps(TINY_VIT), "--model.init_args.masking", json.dumps({"min_keep": 2}),
        "--model.init_args.predictor_dim", "16"]  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """One method's recipe with tiny overrides; ``batch`` is the per-rank batch size."""

    name: str
    config: Path
    overrides: tuple[str, ...]
    datamodule: str
    batch: int

    def args(self, stage: str, root: Path, *extra: str, callbacks: tuple[dict, ...] = (), model: str | None = None) -> list[str]:
        """``zoo <stage>`` arguments writing under ``root`` (absolute, in a temporary folder)."""
        callbacks = list(callbacks)
        if stage == "fit":
            callbacks.append({
                "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                "init_args": {"dirpath": str(root / "checkpoints"), "every_n_train_steps": CHECKPOINT_EVERY,
                              "save_last": True, "enable_version_counter": False},
            })  # fmt: skip
        return [
            # a class_path given after init_args would drop the ones its own signature does not list
            stage, "--config", str(self.config), *(["--model.class_path", model] if model else []), *self.overrides,
            "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
            "--trainer.max_epochs", "2", "--trainer.limit_train_batches", str(STEPS_PER_EPOCH),
            "--trainer.limit_val_batches", "2", "--trainer.limit_test_batches", "2",
            "--trainer.limit_predict_batches", str(PREDICT_BATCHES), "--trainer.num_sanity_val_steps", "1",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--trainer.logger", "false", "--trainer.default_root_dir", str(root),
            "--trainer.callbacks", json.dumps(callbacks), "--data.init_args.batch_size", str(self.batch), *extra,
        ]  # fmt: skip


def plans(data: Path) -> list[Plan]:
    images = "zoo.data.images.ImageDataModule"
    return [
        Plan("simclr", CONFIGS / "simclr" / "digits.yaml", ("--model.init_args.encoder", json.dumps(TINY_ENCODER)), images, 8),
        # G-SimCLR batching: both ranks need the pseudo-labels of the global batch size (one autoencoder + k-means,
        # cached once) and disjoint slices of each global batch of one image per pseudo-class
        Plan("gsimclr", CONFIGS / "simclr" / "digits.yaml", (
            "--model.init_args.encoder", json.dumps(TINY_ENCODER), "--data.init_args.pseudo_label_batches",
            json.dumps({"autoencoder_epochs": 1, "cache_dir": str(data / "pseudo-labels")}),
        ), images, 8),
        Plan("byol", CONFIGS / "byol" / "digits.yaml", (
            "--model.init_args.encoder", json.dumps(TINY_ENCODER), *_flags(TINY_HEADS), "--model.init_args.predictor_hidden_dim", "16",
        ), images, 8),
        Plan("swav", CONFIGS / "swav" / "digits.yaml", (
            "--model.init_args.encoder", json.dumps(TINY_ENCODER), *_flags(TINY_HEADS),
            "--model.init_args.num_prototypes", "12", "--model.init_args.freeze_prototypes_steps", "1",
        ), images, 8),
        Plan("ijepa", CONFIGS / "ijepa" / "digits.yaml", tuple(JEPA), images, 8),
        Plan("dmt_jepa", CONFIGS / "dmt_jepa" / "digits.yaml", tuple(JEPA), images, 8),
        Plan("tjepa", CONFIGS / "tjepa" / "breast_cancer.yaml", (
            "--model.init_args.encoder", json.dumps({"embed_dim": 16, "depth": 1, "num_heads": 2, "ff_dim": 16, "num_reg_tokens": 2}),
            "--model.init_args.predictor_dim", "8", "--model.init_args.predictor_depth", "1",
        ), "zoo.data.tabular.TabularDataModule", 16),
        Plan("skeleton_mae", CONFIGS / "skeleton_mae" / "generated.yaml", (
            "--model.init_args.encoder", json.dumps({"layout": "ntu25", "in_channels": 3, "embed_dim": 8, "depth": 2}),
            "--data.init_args.path", str(data / "skeleton"), "--data.init_args.num_frames", "8",
            "--data.init_args.val_size", "16", "--data.init_args.knn_bank_size", "32",
        ), "zoo.data.skeleton.SkeletonDataModule", 8),
        Plan("slap", CONFIGS / "slap" / "tiny.yaml", (
            "--data.init_args.manifest", str(data / "music" / "train.csv"),
            "--data.init_args.test_manifest", str(data / "music" / "test.csv"),
            "--data.init_args.val_size", "8", "--data.init_args.knn_bank_size", "8",
            # nn.Dropout draws from the global RNG, whose state a checkpoint does not hold: with it a resumed run
            # drops other units than the uninterrupted one (the predictor's dropout is SLAP's only one here)
            "--model.init_args.predictor_dropout", "0.0",
        ), "zoo.data.audio_text.AudioTextDataModule", 2),
    ]  # fmt: skip


def _flags(values: dict[str, Any]) -> list[str]:
    return [item for key, value in values.items() for item in (f"--model.init_args.{key}", str(value))]


class Interrupt(L.Callback):
    """Stops the run the way a crash would, after the mid-epoch checkpoint and before the next one (Lightning runs
    ModelCheckpoint after user callbacks), on every rank at the same step."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step >= self.step:
            raise Interrupted(f"interrupted at step {trainer.global_step}")


class Interrupted(RuntimeError):
    pass


class NaNOnOneRankSimCLR(SimCLR):
    """SimCLR whose loss goes NaN from ``bad_step`` on, on rank ``bad_rank`` only."""

    def __init__(self, bad_step: int = 2, bad_rank: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bad_step, self.bad_rank = bad_step, bad_rank

    def ssl_step(self, batch: dict[str, Any]):  # type: ignore[no-untyped-def]
        out = super().ssl_step(batch)
        if self.global_step >= self.bad_step and self.global_rank == self.bad_rank:
            out.loss = out.loss * float("nan")
        return out


# ---- the evaluation suite's cross-rank gather, on a known evaluation set -------------------------------------------
NUM_CLASSES = 3


def _suite_data() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(NUM_CLASSES, 6, generator=g) * 2
    bank_labels, query_labels = torch.arange(24) % NUM_CLASSES, torch.arange(16) % NUM_CLASSES
    return {
        "bank": centres[bank_labels] + torch.randn(24, 6, generator=g), "bank_labels": bank_labels,
        "queries": centres[query_labels] + torch.randn(16, 6, generator=g), "query_labels": query_labels,
        "logits": torch.randn(16, NUM_CLASSES, generator=g),
    }  # fmt: skip


def _evaluate_suite(suite: EvaluationSuite, data: dict[str, torch.Tensor], bank_rows: torch.Tensor, query_rows: torch.Tensor) -> dict[str, float]:
    for rows in bank_rows.split(5):  # a few batches, the last one short
        suite.update_bank(data["bank"][rows], data["bank_labels"][rows])
    for rows in query_rows.split(3):
        suite.update(data["queries"][rows], data["query_labels"][rows], data["logits"][rows])
    return {k: float(v) for k, v in suite.compute().items()}


def _suite_on_a_shard(rank: int, world_size: int, data: dict[str, torch.Tensor]) -> list[dict[str, float]]:
    suite = EvaluationSuite(NUM_CLASSES, knn_k=5)
    shard = slice(rank, None, world_size)  # DistributedSampler's interleaved shard
    epochs = []
    for _ in range(2):  # the suite is reset between epochs (on_validation_epoch_end), and its states restored
        epochs.append(_evaluate_suite(suite, data, torch.arange(24)[shard], torch.arange(16)[shard]))
        suite.reset()
    return epochs


def _cli(args: list[str]) -> dict[str, Any]:
    err, start, cpu = io.StringIO(), time.perf_counter(), time.process_time()
    with contextlib.redirect_stderr(err):
        try:
            rc = main(args)
        except Interrupted:
            rc = "interrupted"
    return {"rc": rc, "stderr": err.getvalue(), "seconds": time.perf_counter() - start, "cpu": time.process_time() - cpu}


def _csv_logger(root: Path, name: str) -> dict[str, Any]:
    return {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(root), "name": name}}


def _rank_worker(rank: int, world_size: int, port: int, workdir: str, jobs: list[Plan], nan_plan: Plan) -> None:
    # the process group exists (tests.distributed); these variables make Lightning treat the processes as launched by
    # torchrun instead of launching its own
    os.environ.update(
        TORCHELASTIC_RUN_ID="zoo-test", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world_size),
        RANK=str(rank), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world_size), GROUP_RANK="0", NODE_RANK="0",
    )  # fmt: skip
    os.chdir(workdir)
    torch.save(_suite_on_a_shard(rank, world_size, _suite_data()), Path(workdir, f"suite.rank{rank}.pt"))
    for plan in jobs:
        root = Path(workdir, plan.name)
        final = str(root / "resumed" / "checkpoints" / "last.ckpt")
        writer = {"class_path": "zoo.eval.EmbeddingWriter", "init_args": {"output_path": str(root / "embeddings.safetensors")}}
        runs = {
            "reference": plan.args("fit", root / "reference", "--trainer.logger", json.dumps(_csv_logger(root, "reference"))),
            "interrupted": plan.args("fit", root / "interrupted", callbacks=({"class_path": f"{__name__}.Interrupt", "init_args": {"step": INTERRUPT_AT}},)),
            "resumed": plan.args("fit", root / "resumed", "--ckpt_path", str(root / "interrupted" / "checkpoints" / "last.ckpt")),
            "test": plan.args("test", root / "test", "--ckpt_path", final, "--trainer.logger", json.dumps(_csv_logger(root, "test"))),
            "predict": plan.args("predict", root / "predict", "--ckpt_path", final, callbacks=(writer,)),
        }  # fmt: skip
        steps: dict[str, Any] = {}
        for stage, args in runs.items():
            steps[stage] = _cli(args)
            if steps[stage]["rc"] not in (0, "interrupted"):
                break
        torch.save(steps, Path(workdir, f"{plan.name}.rank{rank}.pt"))
    # resume the `zoo` command's SIGKILLed run (see the fixture)
    killed = Path(workdir, "zoo-command", "killed", "checkpoints", "last.ckpt")
    resumed = _cli(jobs[0].args("fit", Path(workdir, "zoo-command", "resumed"), "--ckpt_path", str(killed)))
    torch.save(resumed, Path(workdir, f"zoo-command.rank{rank}.pt"))
    nan = _cli(nan_plan.args("fit", Path(workdir, "nan"), model=f"{__name__}.NaNOnOneRankSimCLR"))
    torch.save(nan, Path(workdir, f"nan.rank{rank}.pt"))


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> tuple[Path, list[Plan]]:
    from zoo.data.music_captions import build
    from zoo.data.skeleton_generator import write_actions_dataset

    data = tmp_path_factory.mktemp("data")
    write_actions_dataset(data / "skeleton", train=96, test=32, seed=0, max_frames=8, num_persons=1)
    build(data / "music", num_clips=40, seconds=1.0, sample_rate=8000, captions_per_clip=1, test_fraction=0.25, renderer="numpy")
    work = tmp_path_factory.mktemp("runs")
    jobs = plans(data)
    # the real `zoo` command on 2 processes (Lightning launches rank 1 itself), each rank SIGKILLing itself mid-epoch
    # after the step-6 checkpoint: no teardown, no final checkpoint. The ranks below resume it.
    (work / "zoo-command").mkdir()
    kill = {"class_path": "tests.faults.KillAtStep", "init_args": {"step": INTERRUPT_AT}}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    killed = subprocess.run(
        [*_zoo_command(), *jobs[0].args("fit", work / "zoo-command" / "killed", callbacks=(kill,))],
        cwd=work / "zoo-command", env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    (work / "zoo-command" / "killed.json").write_text(json.dumps({"rc": killed.returncode, "stderr": killed.stderr[-3000:]}))
    try:  # each job's results are saved as it ends: a failure or hang fails the tests of the jobs it reached
        run_distributed(_rank_worker, work, 29500 + os.getpid() % 1000, str(work), jobs, jobs[0], timeout=600)
    except Exception as e:  # noqa: BLE001 - reported by _results
        (work / "failure.txt").write_text(str(e)[-5000:])
    return work, jobs


def _results(work: Path, name: str) -> list[dict[str, Any]]:
    files = [work / f"{name}.rank{r}.pt" for r in range(2)]
    if not all(f.exists() for f in files):
        failure = (work / "failure.txt").read_text() if (work / "failure.txt").exists() else ""
        pytest.fail(f"the 2-process run did not reach {name!r}: {failure}")
    return [torch.load(f, weights_only=False) for f in files]


def _assert_same_weights(expected: dict[str, Any], final: dict[str, Any]) -> None:
    assert final["global_step"] == expected["global_step"] == 2 * STEPS_PER_EPOCH
    assert final["state_dict"].keys() == expected["state_dict"].keys()
    different = [k for k, v in expected["state_dict"].items() if not torch.equal(final["state_dict"][k], v)]
    assert not different, f"{len(different)} of {len(expected['state_dict'])} tensors differ, e.g. {different[:5]}"
    assert expected["lr_schedulers"] == final["lr_schedulers"]


@pytest.mark.parametrize("method", ["simclr", "gsimclr", "byol", "swav", "ijepa", "dmt_jepa", "tjepa", "skeleton_mae", "slap"])
def test_two_process_cli_path(method, two_processes, tmp_path):
    work, jobs = two_processes
    plan = next(p for p in jobs if p.name == method)
    ranks = _results(work, method)
    for rank, steps in enumerate(ranks):
        failed = {stage: out["stderr"][-3000:] for stage, out in steps.items() if out["rc"] not in (0, "interrupted")}
        assert not failed, f"rank {rank}: {failed}"
        assert list(steps) == ["reference", "interrupted", "resumed", "test", "predict"]
        assert steps["interrupted"]["rc"] == "interrupted"
    root = work / method

    # the interrupted run left a mid-epoch checkpoint (epoch 1, 2 of its 4 batches); resumed from it, the run ends
    # with the uninterrupted run's weights, EMA targets, queues and schedule
    interrupted = torch.load(root / "interrupted" / "checkpoints" / "last.ckpt", weights_only=True)
    assert (interrupted["global_step"], interrupted["epoch"]) == (6, 1)
    expected = torch.load(root / "reference" / "checkpoints" / "last.ckpt", weights_only=True)
    final = torch.load(root / "resumed" / "checkpoints" / "last.ckpt", weights_only=True)
    _assert_same_weights(expected, final)

    # validation ran on both processes after each epoch, and test after fit
    assert final["zoo_training_record"]["trainer"]["world_size"] == 2
    val = _logged(root / "reference", "val/rankme")
    assert len(val) == 2 and all(v > 0 for v in val), val  # one value per epoch
    for name in ("val/embedding_std", "val/knn_acc", "test/rankme", "test/knn_acc") + (("val/a2t_R@1", "test/a2t_R@1") if method == "slap" else ()):
        assert _logged(root / name.split("/")[0].replace("val", "reference"), name), name

    # predict: one file from both ranks, each sample once, in dataset order; the exported model embeds the same rows
    # in one process to the same values
    written = load_file(root / "embeddings.safetensors")
    rows = 2 * PREDICT_BATCHES * plan.batch
    assert torch.equal(written["index"], torch.arange(rows))
    assert not list(root.glob("embeddings.rank*"))
    assert main(["export", str(root / "resumed" / "checkpoints" / "last.ckpt"), str(tmp_path / "hub")]) == 0
    model = zoo.from_pretrained(tmp_path / "hub").eval()
    inputs = _predict_inputs(plan, final, rows)
    with torch.no_grad():
        embeddings = model.embed_batch(inputs)
    torch.testing.assert_close(written["embedding"], embeddings.float(), rtol=1e-4, atol=1e-5)
    if "label" in inputs:
        assert torch.equal(written["label"], inputs["label"])


def _logged(run: Path, name: str) -> list[float]:
    """The values of ``name`` in the CSV log under ``run``."""
    import csv

    rows = list(csv.DictReader(next(run.rglob("metrics.csv")).open()))
    return [float(row[name]) for row in rows if row.get(name)]


def _predict_inputs(plan: Plan, checkpoint: dict[str, Any], rows: int) -> dict[str, Any]:
    """The first ``rows`` samples of the predict split, one batch, rebuilt from the checkpoint's datamodule args."""
    import importlib

    module, name = plan.datamodule.rsplit(".", 1)
    hparams = {k: v for k, v in checkpoint["datamodule_hyper_parameters"].items() if not k.startswith("_")}
    datamodule = getattr(importlib.import_module(module), name)(**{**hparams, "batch_size": rows})
    datamodule.setup("predict")
    return next(iter(datamodule.predict_dataloader()))


def test_nan_on_one_rank_stops_both_with_the_message(two_processes):
    work, _ = two_processes
    ranks = _results(work, "nan")
    message = "zoo fit: error: NaNOnOneRankSimCLR: loss is nan on rank 1 (of 2) at global step 2 (epoch 0, batch 2)"
    assert [r["rc"] for r in ranks] == [1, 1]
    assert ranks[0]["stderr"].strip().splitlines()[-1].startswith(message), ranks[0]["stderr"][-2000:]
    assert "error:" not in ranks[1]["stderr"]  # said once, by rank 0
    # stopped before the bad step's update: the last checkpoint is the one of step 2, written before it
    assert torch.load(work / "nan" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2


def _zoo_command() -> list[str]:
    script = Path(sys.executable).with_name("zoo")
    return [str(script)] if script.exists() else [shutil.which("zoo") or "zoo"]


def test_zoo_command_killed_mid_epoch_resumes_to_the_uninterrupted_weights(two_processes):
    """The real `zoo` command on 2 processes, SIGKILLed mid-epoch, then resumed from its last checkpoint: the same
    weights as the uninterrupted 2-process run with the same arguments (simclr/reference)."""
    work, _ = two_processes
    killed = json.loads((work / "zoo-command" / "killed.json").read_text())
    assert killed["rc"] == -9, killed["stderr"]  # SIGKILL: no teardown ran
    last = torch.load(work / "zoo-command" / "killed" / "checkpoints" / "last.ckpt", weights_only=True)
    assert (last["global_step"], last["epoch"]) == (6, 1)
    for rank, out in enumerate(_results(work, "zoo-command")):
        assert out["rc"] == 0, f"rank {rank}: {out['stderr'][-3000:]}"
    expected = torch.load(work / "simclr" / "reference" / "checkpoints" / "last.ckpt", weights_only=True)
    _assert_same_weights(expected, torch.load(work / "zoo-command" / "resumed" / "checkpoints" / "last.ckpt", weights_only=True))


def test_evaluation_suite_under_ddp_computes_the_metrics_of_the_whole_evaluation_set(two_processes):
    """Each rank sees its shard of the evaluation set, and compute() gives every rank the metrics of the whole set."""
    work, _ = two_processes
    data = _suite_data()
    ranks = _results(work, "suite")
    # one process on the same rows; kNN, probe accuracy and the std do not depend on the order of the rows, and
    # neither does RankMe (singular values)
    expected = _evaluate_suite(EvaluationSuite(NUM_CLASSES, knn_k=5), data, torch.arange(24), torch.arange(16))
    assert set(expected) == {"knn_acc", "probe_acc", "rankme", "embedding_std"}
    for epochs in ranks:
        for metrics in epochs:
            assert metrics.keys() == expected.keys()
            for name, value in expected.items():
                assert metrics[name] == pytest.approx(value, rel=1e-5), name
    # a shard alone gives other values: the comparison above would catch a suite that does not gather
    alone = _evaluate_suite(EvaluationSuite(NUM_CLASSES, knn_k=5), data, torch.arange(24)[0::2], torch.arange(16)[0::2])
    assert alone["rankme"] != pytest.approx(expected["rankme"], rel=1e-5)
