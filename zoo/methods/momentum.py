"""``MomentumMethod``: methods with an exponential-moving-average (EMA) target network (BYOL, SLAP, the JEPAs).

BYOL (Grill et al. 2020, arXiv 2006.07733, §3.1 and Appendix A): after each optimizer step the target ξ follows the
online weights θ as ξ ← τξ + (1 − τ)θ, with τ_k = 1 − (1 − τ_base)(cos(πk/K) + 1)/2 rising from τ_base to 1 over
the K optimizer steps of the run (``ema_tau_schedule="linear"``: the JEPAs' linear rise; :mod:`zoo.schedules`).

- Parameters AND floating-point buffers (BN running statistics) are averaged; integer buffers (BN's batch counter)
  are copied.
- The update runs in ``optimizer_step``, which Lightning calls only when the optimizer really steps, so gradient
  accumulation of k micro-batches gives one EMA update, as one k-times batch would.
- τ depends only on the optimizer step count, and the targets are sub-modules, so both live in the checkpoint and a
  resumed run continues the same schedule.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from zoo import schedules
from zoo.methods.base import SSLMethod


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """ξ ← τξ + (1 − τ)θ over parameters and floating buffers; integer buffers are copied."""
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        t.lerp_(o.detach(), 1.0 - tau)
    for t, o in zip(target.buffers(), online.buffers(), strict=True):
        if t.is_floating_point():
            t.lerp_(o, 1.0 - tau)
        else:
            t.copy_(o)


class MomentumMethod(SSLMethod):
    """Base of the EMA-target methods. A subclass builds its online networks, then calls
    ``self.target_x = self.make_target(self.online_x)`` for each network that has a target."""

    def __init__(
        self, ema_tau_base: float = 0.99, ema_tau_final: float = 1.0, ema_tau_schedule: str = "cosine", **kwargs: Any
    ) -> None:
        """
        Args:
            ema_tau_base: τ at the first step (BYOL: 0.99 for 100-300 epochs, 0.996 for 1000).
            ema_tau_final: τ at the last step (1.0 in BYOL).
            ema_tau_schedule: how τ rises over the run's optimizer steps: ``cosine`` (BYOL) or ``linear`` (the
                JEPAs) (:func:`zoo.schedules.ema_tau`).
            **kwargs: optimisation and evaluation args of :class:`~zoo.methods.base.SSLMethod`.
        """
        super().__init__(**kwargs)
        if not 0.0 <= ema_tau_base <= ema_tau_final <= 1.0:
            raise ValueError(f"need 0 <= ema_tau_base <= ema_tau_final <= 1, got {ema_tau_base}, {ema_tau_final}")
        schedules.check_ema_tau_schedule(ema_tau_schedule)
        self._ema_pairs: list[tuple[nn.Module, nn.Module]] = []

    def make_target(self, online: nn.Module) -> nn.Module:
        """A frozen copy of ``online`` that :meth:`update_targets` moves towards it."""
        target = copy.deepcopy(online)
        target.requires_grad_(False)
        self._ema_pairs.append((target, online))
        return target

    def _target_names(self) -> dict[int, str]:
        names = {id(module): name for name, module in self.named_modules()}
        return {id(target): names[id(target)] for target, _ in self._ema_pairs}

    def hub_omittable_modules(self) -> list[str]:
        """The pre-training heads and the EMA targets that ``embed`` does not run (BYOL's, SLAP's): an
        inference-only Hub export leaves them out. The JEPAs embed with their target encoder, which therefore always
        stays."""
        used = self.embedding_encoder()
        names = self._target_names()
        targets = [names[id(t)] for t, _ in self._ema_pairs if not any(m is used for m in t.modules())]
        return [*super().hub_omittable_modules(), *targets]

    def hub_restore_modules(self, names: list[str]) -> None:
        """Targets left out of a Hub file restart as copies of their online networks, as at initialisation (after
        the heads, which stay as initialised)."""
        target_names = self._target_names()
        by_name = {target_names[id(target)]: (target, online) for target, online in self._ema_pairs}
        super().hub_restore_modules([n for n in names if n not in by_name])
        for name in names:
            if name in by_name:
                target, online = by_name[name]
                target.load_state_dict(online.state_dict())

    def current_tau(self) -> float:
        """τ for the update after the current optimizer step (``ema_tau_schedule`` over the whole run)."""
        hp = self.hparams
        total = schedules.total_steps(self.trainer) if self._trainer is not None else None
        if total is None:
            return hp.ema_tau_base
        return schedules.ema_tau(hp.ema_tau_schedule, self.trainer.global_step, total, hp.ema_tau_base, hp.ema_tau_final)

    def update_targets(self) -> None:
        tau = self.current_tau()
        with self.full_weights():
            for target, online in self._ema_pairs:
                ema_update(target, online, tau)

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        self.update_targets()
