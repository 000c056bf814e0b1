"""NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR (Chen et al. 2020, arXiv 2002.05709, eq. 1).

Normalisation: the paper's 1/(2N) — the mean over the 2n anchors of this rank; DDP's gradient average over W ranks
then gives the mean over all 2N = 2nW anchors. (The TF reference sums the two directions, i.e. twice this value.)

Distributed form: each rank's anchors are compared with the views of the *global* batch, gathered with gradient;
the positive of local anchor i on rank r sits in column r·n + i (without the offset r·n every rank would pair its
anchors with rank 0's samples), and the anchor's own column in the same-view block is masked.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.nn.distributed import gather_with_grad, rank


def nt_xent_loss(z1: Tensor, z2: Tensor, temperature: float = 0.5, gather_distributed: bool = True) -> Tensor:
    """NT-Xent between two views ``z1``, ``z2`` of shape [n, d] (row i of each is the same image).

    Args:
        temperature: τ; 0.1 for ImageNet, 0.5 for CIFAR-size data (SimCLR appendix B.9).
        gather_distributed: compare against the global batch of all ranks (with gradient).

    Computed in fp32 whatever the autocast state: a small τ makes the logits large.
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"nt_xent_loss expects two [n, d] tensors of equal shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    with torch.autocast(device_type=z1.device.type, enabled=False):
        h1 = F.normalize(z1.float(), dim=1)
        h2 = F.normalize(z2.float(), dim=1)
        n = h1.shape[0]
        if gather_distributed:
            h1_all, h2_all = gather_with_grad(h1), gather_with_grad(h2)
            offset = rank() * n
        else:
            h1_all, h2_all, offset = h1, h2, 0
        positives = torch.arange(n, device=h1.device) + offset
        self_mask = F.one_hot(positives, h1_all.shape[0]).bool()

        logits_12 = h1 @ h2_all.T / temperature
        logits_11 = (h1 @ h1_all.T / temperature).masked_fill(self_mask, float("-inf"))
        logits_21 = h2 @ h1_all.T / temperature
        logits_22 = (h2 @ h2_all.T / temperature).masked_fill(self_mask, float("-inf"))

        logits = torch.cat([torch.cat([logits_12, logits_11], dim=1), torch.cat([logits_21, logits_22], dim=1)], dim=0)
        labels = torch.cat([positives, positives])
        return F.cross_entropy(logits, labels)


class NTXentLoss(nn.Module):
    """Module form of :func:`nt_xent_loss`."""

    def __init__(self, temperature: float = 0.5, gather_distributed: bool = True) -> None:
        super().__init__()
        self.temperature = temperature
        self.gather_distributed = gather_distributed

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        return nt_xent_loss(z1, z2, self.temperature, self.gather_distributed)
