"""zoo.schedules: the lr and EMA-τ schedules equal the papers' formulas and, step for step, the values the methods
and fine-tuners computed before the schedules were shared (the reference copies below), so shipped checkpoints
train on exactly as before."""

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from zoo import schedules
from zoo.registry import get_method

REPO = Path(__file__).resolve().parents[1]


# ---- the pre-sharing implementations, verbatim (methods/momentum.py, tjepa.py, ijepa.py, finetune_skeleton.py) ----
def old_cosine_tau(step, total_steps, tau_base, tau_final=1.0):
    progress = min(1.0, step / max(1, total_steps))
    return tau_final - (tau_final - tau_base) * (math.cos(math.pi * progress) + 1) / 2


def old_linear_tau(step, total_steps, tau_base, tau_final=1.0):
    progress = min(1.0, step / max(1, total_steps))
    return tau_base + (tau_final - tau_base) * progress


def old_ijepa_tau(step, total, tau_base, tau_final):
    progress = min(1.0, step / max(1, int(total))) if math.isfinite(total) else 0.0
    return tau_base + (tau_final - tau_base) * progress


def old_skeleton_factor(step, warmup, steps):
    if step < warmup:
        return (step + 1) / warmup
    return 0.1 ** sum(step >= s for s in steps)


#: the τ schedule each EMA method ran before ``ema_tau_schedule`` existed
OLD_TAU = {"byol": old_cosine_tau, "slap": old_cosine_tau, "tjepa": old_linear_tau, "ijepa": old_ijepa_tau, "dmt_jepa": old_ijepa_tau}


def test_warmup_then_cosine_is_the_papers_curve():
    factors = [schedules.warmup_cosine(s, warmup_steps=4, total_steps=14) for s in range(15)]
    assert factors[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    # SGDR without restarts after the warm-up: ½(1 + cos(π t/T))
    assert factors[4:] == pytest.approx([0.5 * (1 + math.cos(math.pi * t / 10)) for t in range(11)], abs=1e-12)
    assert schedules.warmup_cosine(14, 4, 14, min_lr_ratio=0.1) == pytest.approx(0.1)
    assert schedules.warmup_cosine(0, 0, 10) == 1.0


def test_warmup_then_step_decay_matches_the_skeleton_recipe():
    milestones = [round(f * 110) for f in (90 / 110, 100 / 110)]
    new = [schedules.warmup_step_decay(s, 5, milestones) for s in range(120)]
    assert new == [old_skeleton_factor(s, 5, milestones) for s in range(120)]
    assert new[4] == 1.0 and new[89] == 1.0 and new[90] == pytest.approx(0.1) and new[100] == pytest.approx(0.01)


@pytest.mark.parametrize("total", [1, 7, 100, 12345])
def test_ema_tau_equals_the_papers_formulas_and_the_old_values(total):
    for k in range(0, total + 3, max(1, total // 50)):
        cosine = schedules.ema_tau("cosine", k, total, 0.99, 1.0)
        linear = schedules.ema_tau("linear", k, total, 0.996, 1.0)
        # bit-identical to what the methods computed before
        assert cosine == old_cosine_tau(k, total, 0.99) and linear == old_linear_tau(k, total, 0.996)
        assert linear == old_ijepa_tau(k, float(total), 0.996, 1.0)
        # BYOL §3.1: τ = 1 − (1 − τ_base)(cos(πk/K) + 1)/2; I-JEPA: linear τ_base → 1
        kk = min(k, total)
        assert cosine == pytest.approx(1 - 0.01 * (math.cos(math.pi * kk / total) + 1) / 2, abs=1e-15)
        assert linear == pytest.approx(0.996 + 0.004 * kk / total, abs=1e-15)
    assert schedules.ema_tau("cosine", 50, 100, 0.9, tau_final=0.95) == pytest.approx(0.925)
    with pytest.raises(ValueError, match="unknown ema_tau_schedule 'exp'"):
        schedules.ema_tau("exp", 0, 10, 0.9)


def _trainer(step, total):
    return SimpleNamespace(global_step=step, estimated_stepping_batches=total)


def _shipped_configs() -> dict[str, dict]:
    """The config.json files shipped before ema_tau_schedule existed: those still in checkpoints/ (the re-saved ones:
    their fixtures in old_configs) and the zoo 0.1 I-JEPA and DMT-JEPA checkpoints kept in legacy_checkpoints."""
    fixtures = REPO / "tests" / "fixtures"
    paths = {p.parent.name: p for p in sorted((REPO / "checkpoints").glob("*/config.json"))}
    paths |= {p.parent.name: p for p in sorted((fixtures / "legacy_checkpoints").glob("*/config.json"))}
    configs = {
        name: json.loads((fixtures / "old_configs" / f"{name}.json" if (fixtures / "old_configs" / f"{name}.json").is_file() else p).read_text())
        for name, p in paths.items()
    }
    return {name: c for name, c in configs.items() if c["method"] in OLD_TAU and "ema_tau_schedule" not in c}


def test_every_shipped_ema_method_is_covered():
    assert {c["method"] for c in _shipped_configs().values()} == set(OLD_TAU)


@pytest.mark.parametrize("folder", sorted(_shipped_configs()))
def test_shipped_configs_keep_their_ema_schedule_step_for_step(folder):
    """Every shipped EMA checkpoint's config.json (written before ema_tau_schedule existed) builds a model whose τ
    at each step of a run is the one its method computed before."""
    config = dict(_shipped_configs()[folder])
    method = config.pop("method")
    assert "ema_tau_schedule" not in config
    config.pop("zoo_version", None)
    model = get_method(method)(**config)
    base, final = config["ema_tau_base"], config.get("ema_tau_final", 1.0)
    total = 997
    for step in (0, 1, 2, 250, 498, 996, 997, 1200):
        model._trainer = _trainer(step, total)
        assert model.current_tau() == OLD_TAU[method](step, total, base, final), (method, step)
    model._trainer = None
    assert model.current_tau() == base


def test_an_unknown_ema_schedule_is_refused_at_init():
    from tests.method_cases import CASES

    with pytest.raises(ValueError, match="unknown ema_tau_schedule 'cosin'; choose one of cosine, linear"):
        CASES["byol"].build(ema_tau_schedule="cosin")
    assert CASES["tjepa"].build(ema_tau_schedule="cosine").hparams.ema_tau_schedule == "cosine"


@pytest.mark.parametrize(
    ("batches", "accumulate", "max_steps", "warmup_epochs", "expected"),
    [
        (10, 1, None, 1.0, (30, 10)),  # 3 epochs of 10 steps
        (10, 2, None, 1.5, (15, 8)),  # accumulation: 5 optimizer steps per epoch; round(7.5) = 8
        (10, 1, 4, 1.0, (4, 4)),  # warm-up never longer than the run
        (float("inf"), 1, 20, 0.5, (20, 10)),  # unsized loader: an "epoch" is the run
    ],
)
def test_run_steps_counts_optimizer_steps(batches, accumulate, max_steps, warmup_epochs, expected):
    total = max_steps if max_steps else 3 * math.ceil(batches / accumulate)
    trainer = SimpleNamespace(
        estimated_stepping_batches=total, train_dataloader=object(), num_training_batches=batches,
        accumulate_grad_batches=accumulate,
    )
    assert schedules.run_steps(trainer, warmup_epochs) == expected


def test_an_endless_run_has_no_schedule():
    trainer = SimpleNamespace(estimated_stepping_batches=float("inf"))
    with pytest.raises(ValueError, match="needs a finite run"):
        schedules.run_steps(trainer, 1.0)
    assert schedules.total_steps(trainer) is None
