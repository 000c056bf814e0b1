"""SwAV's swapped-prediction loss and its Sinkhorn-Knopp codes (Caron et al. 2020, "Unsupervised Learning of Visual
Features by Contrasting Cluster Assignments", arXiv 2006.09882, §3.1, eq. 3 and Algorithm 1; reference code
facebookresearch/swav main_swav.py ``distributed_sinkhorn``).

- Codes Q solve the equipartition problem over the *global* batch: the K prototypes share the B samples equally.
  Every sum over samples is all-reduced across ranks and B counts the samples of all ranks, so W ranks × n
  samples give exactly the codes of 1 rank × W·n samples.
- Sinkhorn runs in fp32 with autograd off, whatever the autocast state: S/ε reaches 1/0.05 = 20 and e^20
  overflows fp16. Each prototype's maximum over the global batch is subtracted before ``exp`` (it cancels in the
  first row normalisation).
- The loss uses ``log_softmax`` (log(softmax) underflows to -inf and gives NaN, as in PL-bolts' port).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.nn.distributed import is_distributed, world_size


def _all_reduce(x: Tensor, op: dist.ReduceOp.RedOpType = dist.ReduceOp.SUM) -> Tensor:
    if is_distributed():
        dist.all_reduce(x, op=op)
    return x


@torch.no_grad()
def sinkhorn_knopp(scores: Tensor, epsilon: float = 0.05, iterations: int = 3, gather_distributed: bool = True) -> Tensor:
    """Soft codes Q [B_local, K] for prototype scores [B_local, K] (SwAV Algorithm 1, ε = 0.05, 3 iterations).

    After the last iteration every sample's code sums to 1 (rows of the result) and, over the global batch, every
    prototype receives B/K of the mass (columns), up to the iterations' convergence.

    Args:
        scores: z·Cᵀ for this rank's samples (any dtype; computed in fp32).
        epsilon: entropy regularisation; smaller is closer to a hard assignment.
        iterations: Sinkhorn-Knopp normalisation rounds.
        gather_distributed: normalise over the samples of all ranks (the paper's global batch).
    """
    if scores.ndim != 2:
        raise ValueError(f"sinkhorn_knopp expects scores [batch, prototypes], got shape {tuple(scores.shape)}")
    if epsilon <= 0 or iterations < 1:
        raise ValueError(f"need epsilon > 0 and iterations >= 1, got {epsilon}, {iterations}")
    distributed = gather_distributed and is_distributed()
    with torch.autocast(device_type=scores.device.type, enabled=False):
        logits = scores.float() / epsilon
        # Subtracting each prototype's maximum over the global batch scales the rows of Q, which the first row
        # normalisation cancels exactly: same codes, but no overflow and no all-zero prototype row.
        prototype_max = logits.max(dim=0).values
        if distributed:
            _all_reduce(prototype_max, dist.ReduceOp.MAX)
        q = torch.exp(logits - prototype_max).T  # [K, B_local]
        num_prototypes = q.shape[0]
        batch = q.shape[1] * (world_size() if distributed else 1)
        q /= _all_reduce(q.sum()) if distributed else q.sum()
        for _ in range(iterations):
            # rows: every prototype gets 1/K of the total mass, over the global batch
            row_sums = q.sum(dim=1, keepdim=True)
            if distributed:
                _all_reduce(row_sums)
            q /= row_sums
            q /= num_prototypes
            # columns: every sample has mass 1/B (local: a sample's column lives on one rank)
            q /= q.sum(dim=0, keepdim=True)
            q /= batch
        q *= batch  # columns sum to 1: each sample's code is a distribution over prototypes
        return q.T


def swav_loss(scores: Sequence[Tensor], codes: Sequence[Tensor], temperature: float = 0.1) -> Tensor:
    """Swapped prediction (eq. 3 with multi-crop): each code crop s predicts from every other crop v ≠ s,

        L = 1/|codes| Σ_s 1/(V − 1) Σ_{v ≠ s} −mean_b Σ_k q_s[b, k] · log_softmax(S_v[b] / τ)_k,

    averaged over the local batch (DDP's gradient average then gives the global mean).

    Args:
        scores: V tensors [B, K] of prototype scores, one per crop; the first ``len(codes)`` are the code crops.
        codes: Sinkhorn codes of crops 0 … len(codes) − 1 (no gradient flows through them).
        temperature: τ = 0.1 in SwAV.
    """
    if not codes or len(scores) < 2 or len(codes) > len(scores):
        raise ValueError(f"swav_loss needs >= 2 crops and 1..{len(scores)} code crops, got {len(scores)} and {len(codes)}")
    num_crops = len(scores)
    total = scores[0].new_zeros((), dtype=torch.float32)
    with torch.autocast(device_type=scores[0].device.type, enabled=False):
        log_probs = [F.log_softmax(s.float() / temperature, dim=1) for s in scores]
        for s, q in enumerate(codes):
            q = q.detach().float()
            crop_loss = sum(-(q * log_probs[v]).sum(dim=1).mean() for v in range(num_crops) if v != s)
            total = total + crop_loss / (num_crops - 1)
    return total / len(codes)


class SwAVLoss(nn.Module):
    """Module form: Sinkhorn codes of the first ``num_code_crops`` crops, then the swapped-prediction loss."""

    def __init__(
        self,
        temperature: float = 0.1,
        sinkhorn_epsilon: float = 0.05,
        sinkhorn_iterations: int = 3,
        gather_distributed: bool = True,
    ) -> None:
        super().__init__()
        self.temperature = temperature
        self.sinkhorn_epsilon = sinkhorn_epsilon
        self.sinkhorn_iterations = sinkhorn_iterations
        self.gather_distributed = gather_distributed

    def codes(self, scores: Tensor, queue_scores: Tensor | None = None) -> Tensor:
        """Codes of one crop's samples; ``queue_scores`` (earlier batches) join the equipartition, then drop out."""
        batch = scores.shape[0]
        if queue_scores is not None:
            scores = torch.cat([queue_scores, scores])
        q = sinkhorn_knopp(scores, self.sinkhorn_epsilon, self.sinkhorn_iterations, self.gather_distributed)
        return q[-batch:]

    def forward(self, scores: Sequence[Tensor], num_code_crops: int = 2) -> Tensor:
        codes = [self.codes(scores[s].detach()) for s in range(num_code_crops)]
        return swav_loss(scores, codes, self.temperature)
