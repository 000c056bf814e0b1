"""Audio encoder: log-mel spectrogram (computed on the device, :class:`zoo.nn.audio_features.LogMel`) → a small
CNN after PANNs (Kong et al. 2020, arXiv 1912.10211: per-band BatchNorm of the log-mel, conv-BN-ReLU stages, then
frequency mean and time max + mean pooling), with one stride-2 conv per stage instead of PANNs' two convs + pooling
so that it trains on a CPU. A small stand-in for SLAP's HTS-AT."""

from __future__ import annotations

from typing import TypedDict

from torch import Tensor, nn

from zoo.nn.audio_features import LogMel, LogMelConfig


class AudioEncoderConfig(TypedDict, total=False):
    log_mel: LogMelConfig
    channels: list[int]
    norm: str


#: ``norm``: "batch" (PANNs) or "group" (GroupNorm, and a learned per-band affine on the log-mel instead of BN): no
#: statistic shared across samples, so a batch's loss is exactly the mean of per-sample losses (accumulation-exact)
DEFAULT_AUDIO_ENCODER: AudioEncoderConfig = {"log_mel": {}, "channels": [16, 32, 64, 128], "norm": "batch"}


def _norm2d(kind: str, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if kind == "batch" else nn.GroupNorm(min(8, channels), channels)


class AudioEncoder(nn.Module):
    """``[B, samples]`` waveforms (or ``[B, n_mels, frames]`` log-mels via :meth:`features`) → ``[B, channels[-1]]``."""

    def __init__(self, config: AudioEncoderConfig | None = None) -> None:
        super().__init__()
        unknown = set(config or {}) - set(DEFAULT_AUDIO_ENCODER)
        if unknown:
            raise ValueError(f"unknown audio encoder key(s) {sorted(unknown)}; valid: {sorted(DEFAULT_AUDIO_ENCODER)}")
        cfg = {**DEFAULT_AUDIO_ENCODER, **(config or {})}
        channels = list(cfg["channels"])
        if not channels or any(int(c) != c or c < 1 for c in channels):
            raise ValueError(f"audio encoder channels must be a non-empty list of positive ints, got {channels}")
        norm = cfg["norm"]
        if norm not in ("batch", "group"):
            raise ValueError(f"audio encoder norm must be 'batch' or 'group', got {norm!r}")
        self.log_mel = LogMel(cfg["log_mel"])
        # per-band normalisation of the log-mel: bands differ by orders of magnitude in level. With norm="group", a
        # learned per-band scale and shift (a depthwise 1×1 conv) starting at 0.2·x, which maps log powers of
        # roughly [-14, 8] to O(1) without looking at other samples
        if norm == "batch":
            self.input_norm: nn.Module = nn.BatchNorm1d(self.log_mel.n_mels)
        else:
            self.input_norm = nn.Conv1d(self.log_mel.n_mels, self.log_mel.n_mels, 1, groups=self.log_mel.n_mels)
            nn.init.constant_(self.input_norm.weight, 0.2)
            nn.init.zeros_(self.input_norm.bias)
        blocks: list[nn.Module] = []
        in_ch = 1
        for out_ch in channels:
            # one strided 3×3 conv per stage: halves time and frequency each stage, cheap enough for CPU training
            blocks += [nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1, bias=False), _norm2d(norm, out_ch), nn.ReLU(inplace=True)]
            in_ch = out_ch
        self.cnn = nn.Sequential(*blocks)
        self.num_features = channels[-1]

    def features(self, mel: Tensor) -> Tensor:
        """Log-mels ``[B, n_mels, frames]`` → ``[B, num_features]``."""
        x = self.cnn(self.input_norm(mel).unsqueeze(1))  # [B, C, mels', frames']
        x = x.mean(dim=2)  # over frequency
        return x.amax(dim=2) + x.mean(dim=2)  # over time: max (onsets) + mean (timbre)

    def forward(self, waves: Tensor) -> Tensor:
        return self.features(self.log_mel(waves))
