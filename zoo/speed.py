"""bf16 CPU training where the CPU makes it fast, chosen from the CPU itself (the ``cpu_bf16`` trainer preset).

``CPUPrecision`` is a Lightning precision plugin. With ``precision="auto"`` it trains under bf16 autocast
(Lightning's ``bf16-mixed``) on CPUs that compute bf16 natively — x86 with AVX512-BF16 or AMX — and in fp32
elsewhere, where bf16 is emulated and slower than fp32. Under bf16 it also puts convolution weights and image
inputs in channels-last memory format (``channels_last="auto"``), the layout oneDNN's bf16 convolutions run
fastest in. It pays for convolutional encoders; small ViTs and the tabular transformer were slower under bf16, and
SimCLR's loss left fp32's seed-to-seed noise after 200 steps, so the plain ``cpu`` preset stays fp32. The
measurements, per method: ``benchmarks/cpu_precision.py`` and README.md ("CPU precision and speed"). Lightning takes the precision either from ``--trainer.precision`` or from a plugin, never both:
with ``cpu_bf16``, force a setting through the plugin, ``--trainer.plugins.init_args.precision 32-true``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from typing import Any

import torch
from lightning.pytorch.plugins.precision import Precision

PRECISIONS = ("auto", "bf16-mixed", "32-true")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX tiles), so that oneDNN's bf16 kernels beat
    fp32. Other CPUs (AVX2-only x86, most ARM builds of torch) emulate bf16 and would train slower under it."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


class CPUPrecision(Precision):
    """bf16 autocast (+ channels-last convolutions) where the CPU has native bf16, fp32 where it has not.

    Args:
        precision: ``"auto"`` (bf16-mixed with native bf16, else 32-true), or force ``"bf16-mixed"`` / ``"32-true"``.
        channels_last: under bf16, convert the method's convolutions and image inputs to channels-last
            (:meth:`zoo.methods.base.SSLMethod.use_channels_last`); ``"auto"`` = whenever bf16 is on. Ignored in fp32.
    """

    def __init__(self, precision: str = "auto", channels_last: bool | str = "auto") -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"CPUPrecision: precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if channels_last not in (True, False, "auto"):
            raise ValueError(f"CPUPrecision: channels_last must be true, false or auto, got {channels_last!r}")
        self.requested = precision
        self.precision = ("bf16-mixed" if cpu_has_native_bf16() else "32-true") if precision == "auto" else precision  # type: ignore[assignment]
        self.channels_last = self.precision == "bf16-mixed" and channels_last in (True, "auto")

    @property
    def bf16(self) -> bool:
        return self.precision == "bf16-mixed"

    def convert_module(self, module: torch.nn.Module) -> torch.nn.Module:
        # called by the strategy after configure_model, before the optimizers are built: the in-place conversion
        # keeps parameter identities, names and checkpoints unchanged
        if self.channels_last and hasattr(module, "use_channels_last"):
            module.use_channels_last()
        return module

    @contextlib.contextmanager
    def forward_context(self) -> Generator[None, None, None]:
        # the autocast Lightning's bf16-mixed enters (its weight-cast cache off, as there)
        context = torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False) if self.bf16 else contextlib.nullcontext()
        with context:
            yield

    def __repr__(self) -> str:
        return f"CPUPrecision(precision={self.precision!r}, channels_last={self.channels_last}, requested={self.requested!r})"

    def state_dict(self) -> dict[str, Any]:
        return {}
