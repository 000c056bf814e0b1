"""SLAP's loss (Guinot et al., ISMIR 2025, arXiv 2506.17815, §3): BYOL across and within modalities, no negatives.

With online predictions q and target projections z̄ (stop-gradient), per-pair loss 1 − cos:

    L = λ (L_A→T + L_T→A) + (1 − λ) (L_A + L_T),          λ = 0.5 (the paper; it collapses outside [0.2, 0.7])

- inter-modal, per view i: L_A→T = 1 − cos(q_A^i, z̄_T^i), L_T→A = 1 − cos(q_T^i, z̄_A^i), averaged over i;
- intra-modal, across views: L_A = ½[(1 − cos(q_A^1, z̄_A^2)) + (1 − cos(q_A^2, z̄_A^1))], L_T likewise.

(The released code swaps two term labels, which is harmless only at λ = 0.5; here each weight goes to its term.)
The per-pair term is BYOL's ℓ = 2 − 2cos halved, computed by :func:`zoo.losses.byol.byol_loss` — one loss code for
both methods. Every term is a per-sample mean, so the loss of a batch is the mean of its samples' losses: gradient
accumulation over micro-batches equals one larger batch (paper §5.4).
"""

from __future__ import annotations

from torch import Tensor

from zoo.losses.byol import byol_loss

#: λ of the paper (weight of the inter-modal terms)
SLAP_INTER_WEIGHT = 0.5


def one_minus_cos(prediction: Tensor, target: Tensor) -> Tensor:
    """Mean over the batch of 1 − cos(prediction, sg(target)) = BYOL's ℓ / 2."""
    return 0.5 * byol_loss(prediction, target)


def slap_loss(
    q_audio: tuple[Tensor, Tensor],
    q_text: tuple[Tensor, Tensor],
    z_audio: tuple[Tensor, Tensor],
    z_text: tuple[Tensor, Tensor],
    inter_weight: float = SLAP_INTER_WEIGHT,
) -> tuple[Tensor, dict[str, Tensor]]:
    """SLAP's loss from the online predictions ``q_*`` and target projections ``z_*`` of two views each.

    Returns ``(loss, {"audio_to_text", "text_to_audio", "audio_intra", "text_intra"})``.
    """
    if not 0.0 <= inter_weight <= 1.0:
        raise ValueError(f"inter_weight (λ) must be in [0, 1], got {inter_weight}")
    terms = {
        "audio_to_text": 0.5 * (one_minus_cos(q_audio[0], z_text[0]) + one_minus_cos(q_audio[1], z_text[1])),
        "text_to_audio": 0.5 * (one_minus_cos(q_text[0], z_audio[0]) + one_minus_cos(q_text[1], z_audio[1])),
        "audio_intra": 0.5 * (one_minus_cos(q_audio[0], z_audio[1]) + one_minus_cos(q_audio[1], z_audio[0])),
        "text_intra": 0.5 * (one_minus_cos(q_text[0], z_text[1]) + one_minus_cos(q_text[1], z_text[0])),
    }
    loss = inter_weight * (terms["audio_to_text"] + terms["text_to_audio"]) + (1.0 - inter_weight) * (
        terms["audio_intra"] + terms["text_intra"]
    )
    return loss, terms
