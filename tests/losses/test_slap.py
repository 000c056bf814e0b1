"""SLAP's loss vs its formula written out, its reduction to BYOL's loss, and the InfoNCE baseline's loss."""

import pytest
import torch
import torch.nn.functional as F

from zoo.losses.byol import symmetric_byol_loss
from zoo.losses.clip import INIT_LOGIT_SCALE, symmetric_info_nce
from zoo.losses.slap import slap_loss


def four(n=6, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [tuple(torch.randn(n, d, generator=g) for _ in range(2)) for _ in range(4)]


def one_minus_cos(a, b):
    return (1 - (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))).mean()


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.5, 1.0])
def test_slap_loss_is_the_papers_formula(lam):
    qa, qt, za, zt = four()
    loss, terms = slap_loss(qa, qt, za, zt, lam)
    a2t = (one_minus_cos(qa[0], zt[0]) + one_minus_cos(qa[1], zt[1])) / 2
    t2a = (one_minus_cos(qt[0], za[0]) + one_minus_cos(qt[1], za[1])) / 2
    la = (one_minus_cos(qa[0], za[1]) + one_minus_cos(qa[1], za[0])) / 2
    lt = (one_minus_cos(qt[0], zt[1]) + one_minus_cos(qt[1], zt[0])) / 2
    torch.testing.assert_close(loss, lam * (a2t + t2a) + (1 - lam) * (la + lt))
    torch.testing.assert_close(terms["audio_to_text"], a2t)
    torch.testing.assert_close(terms["text_intra"], lt)


def test_without_inter_terms_it_is_byols_loss_per_modality():
    qa, qt, za, zt = four(seed=1)
    loss, _ = slap_loss(qa, qt, za, zt, inter_weight=0.0)
    # BYOL's symmetric ℓ = 2 − 2cos summed over the two directions; SLAP averages 1 − cos over them: a factor 4
    byol = symmetric_byol_loss(qa[0], qa[1], za[0], za[1]) + symmetric_byol_loss(qt[0], qt[1], zt[0], zt[1])
    torch.testing.assert_close(loss, byol / 4)


def test_no_gradient_reaches_the_targets_and_bad_lambda_is_refused():
    qa, qt, za, zt = four(seed=2)
    za = tuple(z.requires_grad_() for z in za)
    qa = tuple(q.requires_grad_() for q in qa)
    loss, _ = slap_loss(qa, qt, za, zt)
    loss.backward()
    assert all(z.grad is None for z in za) and all(q.grad is not None for q in qa)
    with pytest.raises(ValueError, match="inter_weight"):
        slap_loss(qa, qt, za, zt, 1.5)


def test_per_sample_mean_so_halves_average_to_the_whole():
    qa, qt, za, zt = four(n=8, seed=3)
    whole, _ = slap_loss(qa, qt, za, zt)
    halves = [slap_loss(*[tuple(x[s] for x in pair) for pair in (qa, qt, za, zt)])[0] for s in (slice(0, 4), slice(4, 8))]
    torch.testing.assert_close(whole, (halves[0] + halves[1]) / 2)


def test_symmetric_info_nce_matches_the_clip_formula():
    g = torch.Generator().manual_seed(0)
    a, t = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    scale = torch.tensor(INIT_LOGIT_SCALE)
    logits = scale.exp() * F.normalize(a, dim=1) @ F.normalize(t, dim=1).T
    manual = -(logits.log_softmax(1).diagonal().mean() + logits.log_softmax(0).diagonal().mean()) / 2
    torch.testing.assert_close(symmetric_info_nce(a, t, scale), manual)


def _info_nce_rank(rank, world_size, audio_all, text_all, log_scale, gather):
    n = audio_all.shape[0] // world_size
    audio = audio_all[rank * n : (rank + 1) * n].clone().requires_grad_(True)
    text = text_all[rank * n : (rank + 1) * n].clone().requires_grad_(True)
    scale = log_scale.clone().requires_grad_(True)
    loss = symmetric_info_nce(audio, text, scale, gather_distributed=gather)
    loss.backward()
    return loss.detach(), audio.grad, text.grad, scale.grad


@pytest.mark.parametrize("gather", [True, False])
def test_info_nce_on_two_processes_equals_one_process_only_when_gathered(tmp_path, gather):
    from tests.distributed import run_distributed

    g = torch.Generator().manual_seed(4)
    audio, text = torch.randn(8, 6, generator=g), torch.randn(8, 6, generator=g)
    log_scale = torch.tensor(1.5)
    ranks = run_distributed(_info_nce_rank, tmp_path, audio, text, log_scale, gather)
    single = _info_nce_rank(0, 1, audio, text, log_scale, False)
    # DDP optimises the mean of the rank losses: its gradient is the rank gradients / W (the scale's: averaged)
    mean_loss = torch.stack([r[0] for r in ranks]).mean()
    audio_grad = torch.cat([r[1] for r in ranks]) / 2
    scale_grad = torch.stack([r[3] for r in ranks]).mean()
    if gather:
        torch.testing.assert_close(mean_loss, single[0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(audio_grad, single[1], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(torch.cat([r[2] for r in ranks]) / 2, single[2], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(scale_grad, single[3], rtol=1e-4, atol=1e-6)
    else:  # in-rank negatives only: a different (easier) objective
        assert mean_loss < single[0] - 0.1
