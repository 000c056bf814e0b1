"""Log-mel on the device vs a from-the-definition numpy reference; SpecAugment and random crops."""

import numpy as np
import pytest
import torch

from zoo.nn.audio_features import LogMel, mel_filterbank, random_crops, spec_augment


def reference_filterbank(n_freqs, n_mels, sr, f_min, f_max):
    """Triangles on the HTK mel scale, written out bin by bin."""
    mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)  # noqa: E731
    hz = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)  # noqa: E731
    edges = [hz(m) for m in np.linspace(mel(f_min), mel(f_max), n_mels + 2)]
    fb = np.zeros((n_freqs, n_mels))
    for j in range(n_mels):
        lo, c, hi = edges[j], edges[j + 1], edges[j + 2]
        for i, f in enumerate(np.linspace(0, sr / 2, n_freqs)):
            if lo < f <= c:
                fb[i, j] = (f - lo) / (c - lo)
            elif c < f < hi:
                fb[i, j] = (hi - f) / (hi - c)
    return fb


def reference_log_mel(wave, sr, n_fft, hop, n_mels):
    win = round(0.025 * sr)
    window = np.zeros(n_fft)
    left = (n_fft - win) // 2
    window[left : left + win] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)  # periodic Hann, centred
    padded = np.pad(wave, n_fft // 2, mode="reflect")
    frames = 1 + len(wave) // hop
    fb = reference_filterbank(n_fft // 2 + 1, n_mels, sr, 0.0, sr / 2)
    out = np.empty((n_mels, frames))
    for t in range(frames):
        spectrum = np.fft.rfft(padded[t * hop : t * hop + n_fft] * window)
        out[:, t] = np.log(np.abs(spectrum) ** 2 @ fb + 1e-6)
    return out


def test_filterbank_matches_the_definition():
    ours = mel_filterbank(257, 40, 16000, 0.0, 8000.0).numpy()
    np.testing.assert_allclose(ours, reference_filterbank(257, 40, 16000, 0.0, 8000.0), atol=1e-6)
    assert (ours.max(0) > 0.5).all()  # every band catches some bins at this resolution


def test_log_mel_matches_a_numpy_stft_reference():
    rng = np.random.default_rng(0)
    sr, n = 16000, 4000
    t = np.arange(n) / sr
    wave = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(n)
    module = LogMel({"sample_rate": sr, "n_fft": 512, "hop_length": 160, "n_mels": 64})
    ours = module(torch.tensor(wave, dtype=torch.float32)[None])[0].numpy()
    ref = reference_log_mel(wave, sr, 512, 160, 64)
    assert ours.shape == ref.shape == (64, 1 + n // 160)
    np.testing.assert_allclose(ours, ref, atol=2e-3, rtol=1e-3)
    # the 440 Hz tone puts its energy in the band whose centre is nearest 440 Hz
    assert abs(int(ours.mean(1).argmax()) - int(np.argmax(reference_filterbank(257, 64, sr, 0, 8000)[round(440 / sr * 512)]))) <= 1


def test_log_mel_rejects_bad_config_and_shapes():
    with pytest.raises(ValueError, match="unknown log-mel key"):
        LogMel({"n_mel": 64})
    with pytest.raises(ValueError, match="f_max"):
        mel_filterbank(257, 64, 16000, 0.0, 9000.0)
    with pytest.raises(ValueError, match="batch, samples"):
        LogMel()(torch.zeros(2, 1, 100))


def test_spec_augment_masks_stripes_per_sample_and_is_seeded():
    mel = torch.randn(4, 16, 50)
    config = {"time_masks": 2, "time_width": 10, "freq_masks": 2, "freq_width": 3}
    a = spec_augment(mel, config, torch.Generator().manual_seed(1))
    b = spec_augment(mel, config, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    changed = a != mel
    for i in range(4):
        rows = changed[i].all(dim=1).sum()  # fully masked frequency bands
        cols = changed[i].all(dim=0).sum()  # fully masked frames
        assert rows <= 6 and cols <= 20
    assert not torch.equal(changed[0], changed[1])
    assert torch.equal(spec_augment(mel, {}, torch.Generator()), mel)


def test_random_crops_stay_inside_the_valid_samples():
    waves = torch.arange(3 * 100, dtype=torch.float32).reshape(3, 100) + 1
    lengths = torch.tensor([100, 40, 10])
    crops = random_crops(waves, lengths, 20, torch.Generator().manual_seed(0))
    assert crops.shape == (3, 20)
    for i, crop in enumerate(crops):
        start = int(crop[0] - waves[i, 0])
        assert torch.equal(crop, waves[i, start : start + 20])
        assert start + min(20, int(lengths[i])) <= max(int(lengths[i]), 20)
    assert crops[2, 0] == waves[2, 0]  # shorter than the crop: starts at 0
