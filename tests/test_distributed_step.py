"""Every method: two optimizer steps through Lightning's DDP on 2 gloo processes (CPU), each rank with half of each
global batch, give the same losses and the same weights — online networks, EMA targets, prototypes, and SwAV's
queue — as 1 process on the whole batch.

Both runs go through ``Trainer.fit`` (DDP wrapping and gradient averaging, the method's optimizer and schedule, its
hooks: EMA update after the optimizer step, prototype freezing, queue). Each global batch's views and masks are
drawn once and split over the ranks (a real run draws them per rank from the rank's seed). BN and dropout run in
eval mode: SyncBN, which makes BN exact across ranks, needs a GPU; the GPU presets turn it on.
"""

from __future__ import annotations

import os
from functools import partial
from typing import Any

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from tests.distributed import run_distributed
from tests.method_cases import CASES, take

GLOBAL_BATCH = 8
STEPS = 2
#: cases and overrides: SwAV's queue holds one global batch, so it is full (and in the Sinkhorn) at step 2
RUNS: dict[str, dict[str, Any]] = {
    "simclr": {}, "byol": {}, "swav": {"queue_length": GLOBAL_BATCH, "queue_start_epoch": 0},
    "ijepa": {}, "dmt_jepa": {}, "tjepa": {}, "skeleton_mae": {}, "slap": {}, "slap_infonce": {},
    # negative control: NT-Xent without the gather sees only in-rank negatives, a different objective
    "simclr_no_gather": {"gather_distributed": False},
}  # fmt: skip


def case_of(run: str):
    return CASES["simclr" if run == "simclr_no_gather" else run]


class _EvalModeRecorder(L.Callback):
    """BN/dropout in eval mode for every step (SyncBN needs a GPU); records each step's loss."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        pl_module.eval()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        self.losses.append(float(outputs["loss"]))


def fit_steps(run: str, state: dict[str, torch.Tensor], data: dict[str, Any], world_size: int) -> dict[str, Any]:
    model = case_of(run).build(**RUNS[run])
    model.load_state_dict(state)
    recorder = _EvalModeRecorder()
    # rank r gets the samples r, r + W, … of each global batch (Lightning's own sampler would shuffle)
    samples = range(GLOBAL_BATCH * STEPS)
    sampler = DistributedSampler(samples, world_size, rank=int(os.environ.get("RANK", 0)), shuffle=False) if world_size > 1 else None
    loader = DataLoader(samples, batch_size=GLOBAL_BATCH // world_size, sampler=sampler, collate_fn=partial(_collate, data))
    trainer = L.Trainer(
        accelerator="cpu", devices=world_size, strategy="ddp" if world_size > 1 else "auto", max_steps=STEPS,
        callbacks=[recorder], logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0, use_distributed_sampler=False,
    )  # fmt: skip
    trainer.fit(model, loader)
    queue = getattr(model, "queue", None)
    return {"losses": recorder.losses, "state": {k: v.clone() for k, v in model.state_dict().items()}, "queue": queue}


def _collate(data: dict[str, Any], indices: list[int]) -> dict[str, Any]:
    return take(data, torch.tensor(indices))


def _rank_worker(rank: int, world_size: int, port: int, jobs: list[tuple[str, dict, dict]]) -> dict[str, Any]:
    # the process group exists (tests.distributed); these variables make Lightning treat the processes as launched
    # by torchrun instead of launching its own
    os.environ.update(
        TORCHELASTIC_RUN_ID="zoo-test", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world_size),
        RANK=str(rank), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world_size), GROUP_RANK="0", NODE_RANK="0",
    )  # fmt: skip
    return {run: fit_steps(run, state, data, world_size) for run, state, data in jobs}


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory):
    jobs = []
    for run in RUNS:
        case = case_of(run)
        model = case.build(**RUNS[run])
        data = case.batch(model, GLOBAL_BATCH * STEPS, 0)
        jobs.append((run, {k: v.clone() for k, v in model.state_dict().items()}, data))
    ranks = run_distributed(_rank_worker, tmp_path_factory.mktemp("ddp"), 29500 + os.getpid() % 1000, jobs)
    return {run: (state, data, [r[run] for r in ranks]) for run, state, data in jobs}


@pytest.mark.parametrize("run", [r for r in RUNS if r != "simclr_no_gather"])
def test_two_process_steps_equal_one_process_on_the_global_batch(run, two_process_results):
    initial, data, ranks = two_process_results[run]
    single = fit_steps(run, initial, data, world_size=1)
    assert len(single["losses"]) == STEPS
    # Lightning's logged loss is each rank's mean over its half; DDP optimises their average
    rank_mean = [sum(r["losses"][s] for r in ranks) / 2 for s in range(STEPS)]
    assert rank_mean == pytest.approx(single["losses"], rel=1e-5, abs=1e-6)
    moved = set()
    for key, value in single["state"].items():
        assert torch.equal(ranks[0]["state"][key], ranks[1]["state"][key]), f"{key} differs between the ranks"
        update, expected = ranks[0]["state"][key].double() - initial[key].double(), value.double() - initial[key].double()
        if not value.is_floating_point():
            assert torch.equal(ranks[0]["state"][key], value), key
            continue
        scale = expected.abs().max().item()
        if scale > 0:
            moved.add(key)
        torch.testing.assert_close(update, expected, rtol=1e-3, atol=1e-4 * scale + 1e-8, msg=lambda m: f"{key}: {m}")  # noqa: B023 (called within this iteration)
    # the comparison is only worth something if the steps trained: every weight matrix of the trained networks
    # moved, and so did every EMA target (a wrong gather would otherwise hide behind weights that never change)
    model = case_of(run).build(**RUNS[run])
    weights = {n for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2 and not n.startswith("probe.")}
    module_names = {id(m): name for name, m in model.named_modules()}
    targets = {
        f"{module_names[id(target)]}.{n}" for target, _ in getattr(model, "_ema_pairs", [])
        for n, p in target.named_parameters() if p.ndim >= 2
    }  # fmt: skip
    assert weights and weights <= moved, sorted(weights - moved)
    assert targets <= moved, sorted(targets - moved)
    if single["queue"] is not None:  # rank r's queue holds its samples r, r + W, … of the last global batch
        for r, result in enumerate(ranks):
            torch.testing.assert_close(result["queue"], single["queue"][:, r::2], rtol=1e-4, atol=1e-6)


def test_the_comparison_detects_a_loss_that_is_not_exact_across_ranks(two_process_results):
    initial, data, ranks = two_process_results["simclr_no_gather"]
    single = fit_steps("simclr_no_gather", initial, data, world_size=1)
    # without the gather each rank contrasts against its own half: lower loss, different update
    assert sum(r["losses"][0] for r in ranks) / 2 < single["losses"][0] - 0.05
    key = "projector.layers.0.weight" if "projector.layers.0.weight" in initial else next(k for k in initial if k.startswith("projector") and k.endswith("weight"))
    update = ranks[0]["state"][key] - initial[key]
    expected = single["state"][key] - initial[key]
    assert not torch.allclose(update, expected, rtol=1e-2, atol=1e-4 * expected.abs().max().item())
