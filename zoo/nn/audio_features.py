"""Log-mel spectrograms and SpecAugment as batched tensor ops, computed on the device (torch.stft).

torchaudio does not pair with the torch build here (DATA.md), so the mel filterbank is built from its definition:
triangular filters equally spaced on the HTK mel scale m = 2595·log10(1 + f/700) (Young et al., HTK book), the
default scale of torchaudio's ``MelSpectrogram`` (``norm=None``). SLAP (arXiv 2506.17815, §4) trains on 64-band
log-mels with SpecAugment (Park et al. 2019, arXiv 1904.08779): two time stripes (width ≤ 64 frames) and two
frequency stripes (width ≤ 8 bands).
"""

from __future__ import annotations

from typing import TypedDict

import torch
from torch import Tensor, nn


def hz_to_mel(f: Tensor | float) -> Tensor:
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(f, dtype=torch.float64) / 700.0)


def mel_to_hz(m: Tensor) -> Tensor:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(n_freqs: int, n_mels: int, sample_rate: int, f_min: float = 0.0, f_max: float | None = None) -> Tensor:
    """Triangular HTK-mel filters as a ``[n_freqs, n_mels]`` matrix (rows: rfft bins 0..sr/2), peak 1, not area-
    normalised. Built in float64 and returned as float32."""
    f_max = sample_rate / 2 if f_max is None else f_max
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(f"need 0 <= f_min < f_max <= sample_rate/2, got f_min={f_min}, f_max={f_max}, sample_rate={sample_rate}")
    if n_mels < 1 or n_freqs < 2:
        raise ValueError(f"need n_mels >= 1 and n_freqs >= 2, got {n_mels}, {n_freqs}")
    bins = torch.linspace(0, sample_rate / 2, n_freqs, dtype=torch.float64)
    edges = mel_to_hz(torch.linspace(float(hz_to_mel(f_min)), float(hz_to_mel(f_max)), n_mels + 2, dtype=torch.float64))
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins[:, None] - lower) / (centre - lower)
    falling = (upper - bins[:, None]) / (upper - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0).float()


class LogMelConfig(TypedDict, total=False):
    sample_rate: int
    n_fft: int
    hop_length: int
    n_mels: int
    f_min: float
    f_max: float | None


#: 16 kHz, 25 ms Hann window (400 samples in a 512-point FFT), 10 ms hop, 64 mel bands (SLAP's band count)
DEFAULT_LOG_MEL: LogMelConfig = {"sample_rate": 16000, "n_fft": 512, "hop_length": 160, "n_mels": 64, "f_min": 0.0, "f_max": None}


class LogMel(nn.Module):
    """``[B, T]`` waveforms → ``[B, n_mels, frames]`` log(mel power + 1e-6), frames = 1 + T // hop (centred STFT
    with reflect padding). Always computed in fp32: the log of small powers is fragile under autocast."""

    def __init__(self, config: LogMelConfig | None = None) -> None:
        super().__init__()
        unknown = set(config or {}) - set(DEFAULT_LOG_MEL)
        if unknown:
            raise ValueError(f"unknown log-mel key(s) {sorted(unknown)}; valid: {sorted(DEFAULT_LOG_MEL)}")
        cfg = {**DEFAULT_LOG_MEL, **(config or {})}
        self.config: LogMelConfig = cfg  # type: ignore[assignment]
        self.sample_rate, self.n_fft, self.hop_length = int(cfg["sample_rate"]), int(cfg["n_fft"]), int(cfg["hop_length"])
        self.n_mels = int(cfg["n_mels"])
        win_length = min(self.n_fft, round(0.025 * self.sample_rate))
        # buffers, not parameters: they follow .to(device) but are rebuilt from the config, so not saved
        self.register_buffer("window", torch.hann_window(win_length, periodic=True), persistent=False)
        fb = mel_filterbank(self.n_fft // 2 + 1, self.n_mels, self.sample_rate, float(cfg["f_min"]), cfg["f_max"])
        self.register_buffer("filterbank", fb, persistent=False)
        self.win_length = win_length

    def forward(self, waves: Tensor) -> Tensor:
        if waves.ndim != 2:
            raise ValueError(f"LogMel expects waveforms [batch, samples], got shape {tuple(waves.shape)}")
        with torch.autocast(device_type=waves.device.type, enabled=False):
            spec = torch.stft(
                waves.float(), self.n_fft, self.hop_length, self.win_length, self.window,
                center=True, pad_mode="reflect", return_complex=True,
            )  # fmt: skip
            power = spec.real.square() + spec.imag.square()  # [B, F, frames]
            mel = torch.matmul(power.transpose(1, 2), self.filterbank).transpose(1, 2)
            return torch.log(mel + 1e-6)


class SpecAugmentConfig(TypedDict, total=False):
    time_masks: int
    time_width: int
    freq_masks: int
    freq_width: int


#: SLAP's setting (paper §4): 2 time stripes of width ≤ 64 frames, 2 frequency stripes of width ≤ 8 bands
SLAP_SPEC_AUGMENT: SpecAugmentConfig = {"time_masks": 2, "time_width": 64, "freq_masks": 2, "freq_width": 8}


def _stripes(batch: int, size: int, count: int, max_width: int, generator: torch.Generator, device: torch.device) -> Tensor:
    """Boolean mask [batch, size]: ``count`` stripes per row, width uniform in [0, max_width], uniform start."""
    positions = torch.arange(size, device=device)
    mask = torch.zeros(batch, size, dtype=torch.bool, device=device)
    max_width = min(max_width, size)
    for _ in range(count):
        width = torch.randint(0, max_width + 1, (batch, 1), generator=generator, device=device)
        start = (torch.rand(batch, 1, generator=generator, device=device) * (size - width + 1)).floor().long()
        mask |= (positions >= start) & (positions < start + width)
    return mask


def spec_augment(mel: Tensor, config: SpecAugmentConfig, generator: torch.Generator) -> Tensor:
    """SpecAugment's time and frequency masking (Park et al. 2019) on a batch ``[B, n_mels, frames]``, each sample
    with its own stripes. Masked cells take the sample's mean, which is the neutral value of a log-mel (zero would be
    a loud value on a log scale)."""
    b, n_mels, frames = mel.shape
    freq = _stripes(b, n_mels, int(config.get("freq_masks", 0)), int(config.get("freq_width", 0)), generator, mel.device)
    time = _stripes(b, frames, int(config.get("time_masks", 0)), int(config.get("time_width", 0)), generator, mel.device)
    masked = freq[:, :, None] | time[:, None, :]
    fill = mel.mean(dim=(1, 2), keepdim=True).expand_as(mel)
    return torch.where(masked, fill, mel)


def random_crops(waves: Tensor, lengths: Tensor, crop_samples: int, generator: torch.Generator) -> Tensor:
    """One random window of ``crop_samples`` per row of ``waves`` [B, T], inside the row's valid ``lengths``
    (shorter clips: start at 0, the zero padding fills the rest)."""
    b, t = waves.shape
    if crop_samples > t:
        waves = torch.nn.functional.pad(waves, (0, crop_samples - t))
        t = crop_samples
    room = (lengths.to(waves.device) - crop_samples).clamp(min=0)
    start = (torch.rand(b, generator=generator, device=waves.device) * (room + 1)).floor().long()
    index = start[:, None] + torch.arange(crop_samples, device=waves.device)
    return torch.gather(waves, 1, index)


def frames_for(samples: int, hop_length: int) -> int:
    """Number of centred-STFT frames of ``samples`` samples."""
    return 1 + samples // hop_length if samples > 0 else 0


__all__ = [
    "DEFAULT_LOG_MEL", "LogMel", "LogMelConfig", "SLAP_SPEC_AUGMENT", "SpecAugmentConfig", "frames_for",
    "mel_filterbank", "random_crops", "spec_augment",
]  # fmt: skip
