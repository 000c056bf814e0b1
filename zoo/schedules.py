"""Learning-rate and EMA-momentum schedules, per optimizer step: the one place every method and the fine-tuner
read them from.

- lr: linear warm-up, then cosine decay to ``min_lr_ratio`` (SimCLR §B.1, BYOL §C: "cosine decay schedule without
  restarts", Loshchilov & Hutter 2017) or step decay (÷10 at fractions of the run; SkeletonMAE's fine-tuning recipe).
- EMA τ of a target network, from ``tau_base`` to ``tau_final`` over the run: ``cosine``, BYOL §3.1:
  τ_k = 1 − (1 − τ_base)(cos(πk/K) + 1)/2; ``linear``, I-JEPA's and T-JEPA's ``momentum_scheduler``:
  τ_k = τ_base + (τ_final − τ_base)·k/K.

Lengths are in optimizer steps, from the Trainer (:func:`run_steps`), so gradient accumulation and ``max_steps``
count once, and a resumed run (same ``global_step``) continues the same curve.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

LR_SCHEDULES = ("cosine", "step")
EMA_TAU_SCHEDULES = ("cosine", "linear")


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0) -> float:
    """lr multiplier: linear warm-up from 1/warmup to 1, then cosine decay to ``min_lr_ratio`` at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_step_decay(step: int, warmup_steps: int, milestones: Sequence[int], gamma: float = 0.1) -> float:
    """lr multiplier: linear warm-up from 1/warmup to 1, then ×``gamma`` at each milestone step passed."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return gamma ** sum(step >= m for m in milestones)


def ema_tau(schedule: str, step: int, total_steps: int, tau_base: float, tau_final: float = 1.0) -> float:
    """EMA coefficient after optimizer step ``step`` of ``total_steps``: ``tau_base`` → ``tau_final`` (``cosine`` or
    ``linear``); constant at ``tau_final`` past the end."""
    progress = min(1.0, step / max(1, total_steps))
    if schedule == "cosine":
        return tau_final - (tau_final - tau_base) * (math.cos(math.pi * progress) + 1) / 2
    check_ema_tau_schedule(schedule)
    return tau_base + (tau_final - tau_base) * progress


def check_ema_tau_schedule(schedule: str) -> None:
    if schedule not in EMA_TAU_SCHEDULES:
        raise ValueError(f"unknown ema_tau_schedule {schedule!r}; choose one of {', '.join(EMA_TAU_SCHEDULES)}")


# ---- lengths from a Lightning Trainer ---------------------------------------------------------------------------------
def total_steps(trainer: Any) -> int | None:
    """Optimizer steps of the whole run (honours ``max_steps``, ``max_epochs``, ``limit_train_batches`` and gradient
    accumulation); None when the run has no end."""
    estimated = trainer.estimated_stepping_batches
    return int(estimated) if math.isfinite(estimated) else None


def run_steps(trainer: Any, warmup_epochs: float) -> tuple[int, int]:
    """``(total_steps, warmup_steps)`` of a run about to fit: the warm-up is ``warmup_epochs`` epochs of optimizer
    steps (fractions allowed), at most the whole run. An endless run has no schedule: refused."""
    total = total_steps(trainer)
    if total is None:
        raise ValueError("the warm-up/cosine schedule needs a finite run: set trainer max_epochs or max_steps")
    total = max(1, total)
    if trainer.train_dataloader is None:
        # Lightning sets the train loader up after configure_optimizers when only max_steps is given
        trainer.fit_loop.setup_data()
    batches = trainer.num_training_batches  # per rank, after limit_train_batches; inf for an unsized loader
    per_epoch = max(1, math.ceil(batches / trainer.accumulate_grad_batches)) if math.isfinite(batches) else total
    return total, min(total, round(warmup_epochs * per_epoch))


def lr_scheduler(
    optimizer: torch.optim.Optimizer,
    trainer: Any,
    warmup_epochs: float,
    schedule: str = "cosine",
    min_lr_ratio: float = 0.0,
    milestones: Sequence[float] = (),
) -> dict[str, Any]:
    """Lightning's ``lr_scheduler`` entry (stepped every optimizer step) for a warm-up + ``cosine`` or ``step``
    schedule; ``milestones`` are fractions of the run (so a short run keeps the recipe's shape)."""
    total, warmup = run_steps(trainer, warmup_epochs)
    factor: Callable[[int], float]
    if schedule == "cosine":
        factor = lambda step: warmup_cosine(step, warmup, total, min_lr_ratio)  # noqa: E731
    elif schedule == "step":
        steps = [round(f * total) for f in milestones]
        factor = lambda step: warmup_step_decay(step, warmup, steps)  # noqa: E731
    else:
        raise ValueError(f"unknown lr schedule {schedule!r}; choose one of {', '.join(LR_SCHEDULES)}")
    return {"scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, factor), "interval": "step"}
