import math

import pytest
import torch
import torch.nn.functional as F

from tests.distributed import run_distributed
from zoo.losses import NTXentLoss, nt_xent_loss


def reference_nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> float:
    """Eq. 1 of SimCLR written out anchor by anchor, averaged over the 2N anchors."""
    h = F.normalize(torch.cat([z1, z2]).double(), dim=1)
    n2 = h.shape[0]
    n = n2 // 2
    total = 0.0
    for i in range(n2):
        positive = (i + n) % n2
        sims = [(h[i] @ h[k]).item() / temperature for k in range(n2)]
        denominator = sum(math.exp(s) for k, s in enumerate(sims) if k != i)
        total += -(sims[positive] - math.log(denominator))
    return total / n2


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_matches_hand_written_reference(temperature):
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    loss = nt_xent_loss(z1, z2, temperature, gather_distributed=False)
    assert loss.item() == pytest.approx(reference_nt_xent(z1, z2, temperature), rel=1e-5)


def test_matches_lightly():
    lightly_loss = pytest.importorskip("lightly.loss")
    g = torch.Generator().manual_seed(1)
    for n, d, t in [(8, 16, 0.5), (32, 128, 0.1), (3, 4, 0.2)]:
        z1, z2 = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
        ours = NTXentLoss(temperature=t)(z1, z2)
        theirs = lightly_loss.NTXentLoss(temperature=t, gather_distributed=False)(z1, z2)
        assert ours.item() == pytest.approx(theirs.item(), rel=1e-5, abs=1e-6)


def test_perfect_alignment_is_lower_than_random():
    z = torch.randn(16, 8)
    aligned = nt_xent_loss(z, z.clone(), 0.1, gather_distributed=False)
    shuffled = nt_xent_loss(z, z[torch.randperm(16)], 0.1, gather_distributed=False)
    assert aligned < shuffled


def test_fp32_under_bf16_autocast():
    z1, z2 = torch.randn(8, 16), torch.randn(8, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = nt_xent_loss(z1.bfloat16(), z2.bfloat16(), 0.1, gather_distributed=False)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match=r"\(4, 3\) and \(5, 3\)"):
        nt_xent_loss(torch.randn(4, 3), torch.randn(5, 3))


# ---- distributed equivalence: 2 gloo processes with half the batch each == 1 process on the whole batch ------------

def _loss_and_input_grads(rank, world_size, z1_all, z2_all, temperature):
    n = z1_all.shape[0] // world_size
    z1 = z1_all[rank * n : (rank + 1) * n].clone().requires_grad_(True)
    z2 = z2_all[rank * n : (rank + 1) * n].clone().requires_grad_(True)
    loss = nt_xent_loss(z1, z2, temperature, gather_distributed=True)
    loss.backward()
    return loss.detach(), z1.grad, z2.grad


def _ddp_parameter_grads(rank, world_size, x1_all, x2_all, state):
    from torch.nn.parallel import DistributedDataParallel

    layer = torch.nn.Linear(x1_all.shape[1], 4)
    layer.load_state_dict(state)
    model = DistributedDataParallel(layer)
    n = x1_all.shape[0] // world_size
    sl = slice(rank * n, (rank + 1) * n)
    loss = nt_xent_loss(model(x1_all[sl]), model(x2_all[sl]), 0.2, gather_distributed=True)
    loss.backward()
    return {name: p.grad.clone() for name, p in layer.named_parameters()}


def test_two_processes_equal_one_process(tmp_path):
    g = torch.Generator().manual_seed(2)
    z1, z2 = torch.randn(8, 6, generator=g), torch.randn(8, 6, generator=g)
    ranks = run_distributed(_loss_and_input_grads, tmp_path, z1, z2, 0.3)

    full1, full2 = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
    single = nt_xent_loss(full1, full2, 0.3, gather_distributed=False)
    single.backward()

    # the objective DDP optimises is the mean of the per-rank losses; its gradient is the rank grads / W
    assert torch.stack([r[0] for r in ranks]).mean().item() == pytest.approx(single.item(), rel=1e-6)
    torch.testing.assert_close(torch.cat([r[1] for r in ranks]) / 2, full1.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(torch.cat([r[2] for r in ranks]) / 2, full2.grad, rtol=1e-4, atol=1e-6)


def test_ddp_parameter_gradients_equal_single_process(tmp_path):
    g = torch.Generator().manual_seed(3)
    x1, x2 = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    layer = torch.nn.Linear(5, 4)
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    ranks = run_distributed(_ddp_parameter_grads, tmp_path, x1, x2, state)

    nt_xent_loss(layer(x1), layer(x2), 0.2, gather_distributed=False).backward()
    for rank_grads in ranks:  # DDP leaves the averaged (identical) gradient on every rank
        for name, p in layer.named_parameters():
            # float32 sums in another order (thread count, all-reduce): ~1e-5 relative; a wrong gather is O(1)
            torch.testing.assert_close(rank_grads[name], p.grad, rtol=1e-4, atol=1e-6)


def _unequal_batches(rank, world_size):
    z = torch.randn(4 + rank, 3)
    try:
        nt_xent_loss(z, z.clone(), 0.5, gather_distributed=True)
    except ValueError as e:
        return str(e)
    return "no error"


def test_unequal_batches_across_ranks_are_one_clear_error_on_every_rank(tmp_path):
    messages = run_distributed(_unequal_batches, tmp_path)
    assert all("different batch sizes [4, 5]" in m and "drop_last" in m for m in messages), messages
