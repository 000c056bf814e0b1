"""Collectives that keep losses exact across ranks.

``gather_with_grad`` is the all-gather used by contrastive losses (SimCLR's NT-Xent over the global batch): the
forward concatenates every rank's tensor; the backward all-reduces (sums) the incoming gradient and keeps this
rank's slice, so that with DDP's gradient averaging the update equals that of one process on the whole batch.
Gloo has no reduce-scatter, so this is written with all_gather + all_reduce, which every backend supports.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.batch_size = x.shape[0]
        gathered = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, x.contiguous())
        return torch.cat(gathered, dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = dist.get_rank() * ctx.batch_size
        return grad[start : start + ctx.batch_size]


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` (same shape on every rank) over ranks along dim 0, differentiably. Identity on 1 rank.

    Ranks holding different batch sizes (a last, smaller batch with ``drop_last=False``) are one clear error on every
    rank instead of a collective that fails deep in the backend or hangs."""
    if not is_distributed():
        return x
    sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor([x.shape[0]], dtype=torch.long, device=x.device))
    per_rank = [int(s) for s in sizes]
    if len(set(per_rank)) > 1:
        raise ValueError(
            f"gather_with_grad: the ranks hold different batch sizes {per_rank}; losses over the global batch need "
            "equal per-rank batches (keep drop_last=True in the datamodule)"
        )
    return _GatherWithGrad.apply(x)


def mean_over_ranks(x: Tensor) -> Tensor:
    """The mean of ``x`` over ranks, without gradient (identity on 1 rank). A loss that averages over a count that
    varies per rank (masked joints present in the data) divides its local sum by the mean count over ranks: with
    DDP's gradient average that is the mean over the global batch, as one process would compute it."""
    x = x.detach().float()
    if not is_distributed():
        return x
    x = x.clone()
    dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x / dist.get_world_size()
