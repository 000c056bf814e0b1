import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.distributed import run_distributed
from zoo.losses.swav import SwAVLoss, sinkhorn_knopp, swav_loss


def cosine_scores(batch: int, prototypes: int, seed: int = 0) -> torch.Tensor:
    """Scores as SwAV produces them: cosines between normalised embeddings and unit prototypes, in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    z = F.normalize(torch.randn(batch, 16, generator=g), dim=1)
    c = F.normalize(torch.randn(prototypes, 16, generator=g), dim=1)
    return z @ c.T


def reference_sinkhorn(scores: np.ndarray, epsilon: float, iterations: int) -> np.ndarray:
    """Algorithm 1 of the SwAV paper written out in float64 on one process."""
    q = np.exp(scores / epsilon).T
    q /= q.sum()
    k, b = q.shape
    for _ in range(iterations):
        q /= q.sum(axis=1, keepdims=True)
        q /= k
        q /= q.sum(axis=0, keepdims=True)
        q /= b
    return (q * b).T


@pytest.mark.parametrize("batch,prototypes", [(32, 10), (7, 20), (64, 64)])
def test_sinkhorn_matches_the_paper_algorithm(batch, prototypes):
    scores = cosine_scores(batch, prototypes)
    ours = sinkhorn_knopp(scores, epsilon=0.05, iterations=3, gather_distributed=False)
    reference = reference_sinkhorn(scores.double().numpy(), 0.05, 3)
    np.testing.assert_allclose(ours.double().numpy(), reference, rtol=1e-4, atol=1e-7)


def test_sinkhorn_marginals():
    scores = cosine_scores(48, 12, seed=3)
    q = sinkhorn_knopp(scores, epsilon=0.05, iterations=3, gather_distributed=False)
    # every sample's code is a distribution over the prototypes (exact after the last column step)
    torch.testing.assert_close(q.sum(dim=1), torch.ones(48), rtol=0, atol=1e-5)
    assert (q >= 0).all()
    # with enough iterations the prototypes share the batch equally: B/K each
    q = sinkhorn_knopp(scores, epsilon=0.05, iterations=200, gather_distributed=False)
    torch.testing.assert_close(q.sum(dim=0), torch.full((12,), 48 / 12), rtol=1e-3, atol=1e-3)


def test_loss_matches_lightly_with_multicrop_and_queue():
    lightly_loss = pytest.importorskip("lightly.loss")
    high = [cosine_scores(16, 30, seed=s).requires_grad_() for s in (0, 1)]
    low = [cosine_scores(16, 30, seed=s).requires_grad_() for s in (2, 3, 4, 5)]
    ours = SwAVLoss(temperature=0.1, sinkhorn_epsilon=0.05, sinkhorn_iterations=3, gather_distributed=False)
    theirs = lightly_loss.SwaVLoss(temperature=0.1, sinkhorn_iterations=3, sinkhorn_epsilon=0.05)
    ours_value = ours([*high, *low], num_code_crops=2)
    theirs_value = theirs(high, low)
    assert ours_value.item() == pytest.approx(theirs_value.item(), rel=1e-5)
    ours_grad = torch.autograd.grad(ours_value, [*high, *low])
    theirs_grad = torch.autograd.grad(theirs_value.sum(), [*high, *low])
    for a, b in zip(ours_grad, theirs_grad):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)

    # with a queue: earlier batches join the equipartition (we prepend them, lightly appends; Sinkhorn is
    # equivariant to sample order) and the loss uses the current batch's codes only
    queue = [cosine_scores(40, 30, seed=s) for s in (6, 7)]
    codes = [ours.codes(high[i].detach(), queue[i]) for i in range(2)]
    assert codes[0].shape == (16, 30)
    ours_value = swav_loss([*high, *low], codes, temperature=0.1)
    theirs_value = theirs(high, low, queue_outputs=queue)
    assert ours_value.item() == pytest.approx(theirs_value.item(), rel=1e-5)


def test_loss_matches_hand_formula():
    scores = [cosine_scores(5, 4, seed=s) for s in range(3)]
    codes = [sinkhorn_knopp(scores[0], gather_distributed=False)]
    value = swav_loss(scores, codes, temperature=0.1)
    p1, p2 = (F.softmax(s.double() / 0.1, dim=1) for s in scores[1:])
    q = codes[0].double()
    expected = 0.5 * (-(q * p1.log()).sum(1).mean() - (q * p2.log()).sum(1).mean())
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)


def test_bf16_autocast_with_scores_that_overflow_fp16_exp():
    scores = cosine_scores(64, 32, seed=9)
    scores[:, 0] = 1.0  # S/ε = 20 for one prototype everywhere
    assert torch.isinf(torch.exp(torch.tensor(20.0, dtype=torch.float16)))  # what a half-precision Sinkhorn would hit
    fp32 = sinkhorn_knopp(scores.bfloat16().float(), gather_distributed=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low_precision = sinkhorn_knopp(scores.bfloat16(), gather_distributed=False)
        loss = swav_loss([scores.bfloat16(), scores.flip(0).bfloat16()], [low_precision], temperature=0.1)
    assert low_precision.dtype == torch.float32 and torch.isfinite(low_precision).all()
    torch.testing.assert_close(low_precision, fp32)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    # scores outside [-1, 1] (prototypes not yet normalised): S/ε = 100 overflows even fp32 exp; subtracting each
    # prototype's maximum keeps the codes finite and equal to the exact (float64) algorithm
    large = scores * 5
    np.testing.assert_allclose(
        sinkhorn_knopp(large, gather_distributed=False).double().numpy(),
        reference_sinkhorn(large.double().numpy(), 0.05, 3), rtol=1e-3, atol=1e-6,
    )


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="shape"):
        sinkhorn_knopp(torch.randn(3, 4, 5))
    with pytest.raises(ValueError, match="crops"):
        swav_loss([torch.randn(3, 4)], [torch.randn(3, 4)])


def _distributed_codes_and_loss(rank: int, world_size: int, scores: list[torch.Tensor]):
    n = scores[0].shape[0] // world_size
    local = [s[rank * n : (rank + 1) * n].clone().requires_grad_() for s in scores]
    codes = [sinkhorn_knopp(local[i].detach(), gather_distributed=True) for i in range(2)]
    loss = swav_loss(local, codes)
    loss.backward()
    return codes, loss.detach(), [s.grad for s in local]


def test_two_process_sinkhorn_equals_one_process_on_the_global_batch(tmp_path):
    scores = [cosine_scores(12, 9, seed=s) for s in range(4)]
    results = run_distributed(_distributed_codes_and_loss, tmp_path, scores)
    full = [s.clone().requires_grad_() for s in scores]
    full_codes = [sinkhorn_knopp(full[i].detach(), gather_distributed=False) for i in range(2)]
    full_loss = swav_loss(full, full_codes)
    full_loss.backward()
    for i in range(2):
        torch.testing.assert_close(torch.cat([r[0][i] for r in results]), full_codes[i], rtol=1e-4, atol=1e-6)
    # each rank's loss is its local mean; DDP averages over ranks, which gives the global mean and its gradient
    assert torch.stack([r[1] for r in results]).mean().item() == pytest.approx(full_loss.item(), rel=1e-6)
    for i in range(4):
        torch.testing.assert_close(torch.cat([r[2][i] for r in results]) / 2, full[i].grad, rtol=1e-5, atol=1e-8)
    # a per-rank Sinkhorn (stable-pretraining's defect) gives different codes
    per_rank = sinkhorn_knopp(scores[0][:6], gather_distributed=False)
    assert not torch.allclose(per_rank, full_codes[0][:6], atol=1e-4)
