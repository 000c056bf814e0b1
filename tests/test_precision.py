"""Every method trains a few steps under bf16-mixed autocast on the CPU, drawing its own views and masks, with a
finite loss that stays close to the fp32 loss of the same step (16-mixed needs a GPU: the GPU presets cover it)."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from tests.method_cases import CASES, take

BATCH = 8
STEPS = 3


class _LossRecorder(L.Callback):
    """Each step's loss, and the dtypes the model's linear and convolution layers computed in (bf16 proves that
    autocast really ran)."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.dtypes: set[torch.dtype] = set()

    def on_fit_start(self, trainer, pl_module) -> None:  # type: ignore[no-untyped-def]
        for module in pl_module.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)):
                module.register_forward_hook(lambda m, args, out: self.dtypes.add(out.dtype))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        self.losses.append(float(outputs["loss"]))


def fit(case_name: str, precision: str) -> _LossRecorder:
    case = CASES[case_name]
    model = case.build()
    data = case.raw_batch(BATCH * STEPS, 0)
    loader = DataLoader(range(BATCH * STEPS), batch_size=BATCH, collate_fn=lambda idx: take(data, torch.tensor(idx)))
    recorder = _LossRecorder()
    L.seed_everything(0, verbose=False)
    trainer = L.Trainer(
        accelerator="cpu", devices=1, precision=precision, max_steps=STEPS, callbacks=[recorder], logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(model, loader)
    return recorder


@pytest.mark.parametrize("case_name", list(CASES))
def test_bf16_mixed_steps_have_finite_losses_close_to_fp32(case_name):
    bf16 = fit(case_name, "bf16-mixed")
    assert len(bf16.losses) == STEPS and all(torch.isfinite(torch.tensor(bf16.losses)))
    assert torch.bfloat16 in bf16.dtypes
    fp32 = fit(case_name, "32-true")
    assert fp32.dtypes == {torch.float32}
    # same seed, same views and masks: the first step differs only by bf16 rounding (8 bits of mantissa)
    assert bf16.losses[0] == pytest.approx(fp32.losses[0], rel=0.05, abs=0.02)
