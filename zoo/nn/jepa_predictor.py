"""The JEPA predictor (Assran et al. 2023, arXiv 2301.08243, §3 "Prediction" and Appendix A), as the I-JEPA
release builds it (facebookresearch/ijepa src/models/vision_transformer.py ``VisionTransformerPredictor`` and
``vit_predictor``), shared by I-JEPA, DMT-JEPA and T-JEPA.

Context-encoder outputs are projected Linear(h → p) and get the fixed position of their token; each target token
is a learnable mask token plus its position; pre-norm ViT blocks (qkv bias, MLP ratio 4, GELU, LayerNorm ε 1e-6)
run on [context; mask tokens], one sequence per (target mask, sample), so target masks do not see each other; the
outputs at the mask tokens go through LayerNorm (ε 1e-6) → Linear(p → h). The parameter names are the release's.
"""

from __future__ import annotations

from functools import partial

import torch
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from zoo.nn.tokens import apply_masks


class JEPAPredictor(nn.Module):
    def __init__(
        self, embed_dim: int, pos_embed: Tensor, depth: int = 6, num_heads: int = 12, mlp_ratio: float = 4.0
    ) -> None:
        """
        Args:
            embed_dim: encoder width h (the predictor's input and output width).
            pos_embed: fixed position table [N, p] over the encoder's N tokens; its width is the predictor width p
                (I-JEPA: the 2-D sin-cos table of the patch grid; T-JEPA: a 1-D table over [REG] + features).
            depth, num_heads, mlp_ratio: the predictor's ViT blocks (I-JEPA ViT-H: depth 12; width 384).
        """
        super().__init__()
        if pos_embed.ndim != 2:
            raise ValueError(f"JEPA predictor: pos_embed must be a [num_tokens, predictor_dim] table, got {tuple(pos_embed.shape)}")
        predictor_dim = pos_embed.shape[1]
        if predictor_dim % num_heads:
            raise ValueError(f"JEPA predictor: num_heads={num_heads} must divide predictor_dim={predictor_dim}")
        norm_layer = partial(nn.LayerNorm, eps=1e-6)
        self.predictor_embed = nn.Linear(embed_dim, predictor_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, predictor_dim))
        # derived from the config, so kept out of the state dict
        self.register_buffer("predictor_pos_embed", pos_embed[None].clone(), persistent=False)
        self.predictor_blocks = nn.ModuleList(
            [Block(predictor_dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm_layer) for _ in range(depth)]
        )
        self.predictor_norm = norm_layer(predictor_dim)
        self.predictor_proj = nn.Linear(predictor_dim, embed_dim)
        nn.init.trunc_normal_(self.mask_token, std=0.02)  # the release's init

    def set_pos_embed(self, pos_embed: Tensor) -> None:
        """Replace the fixed position table (same shape)."""
        if pos_embed.shape != self.predictor_pos_embed.shape[1:]:
            raise ValueError(f"JEPA predictor: pos_embed {tuple(pos_embed.shape)} does not replace {tuple(self.predictor_pos_embed.shape[1:])}")
        self.predictor_pos_embed = pos_embed[None].to(self.predictor_pos_embed)

    def forward(self, context: Tensor, context_index: Tensor, target_index: Tensor) -> Tensor:
        """context [B, K_ctx, h] (encoder outputs at the tokens ``context_index`` [B, K_ctx]), target_index
        [M, B, K_tgt] → predictions [M·B, K_tgt, h], mask-major as :func:`zoo.nn.tokens.apply_masks`."""
        num_masks, batch, k = target_index.shape
        if context.shape[:2] != context_index.shape or batch != context.shape[0]:
            raise ValueError(
                f"JEPA predictor: context {tuple(context.shape)}, context_index {tuple(context_index.shape)} and "
                f"target_index {tuple(target_index.shape)} disagree (want [B, K, h], [B, K], [M, B, K_tgt])"
            )
        x = self.predictor_embed(context)
        pos = self.predictor_pos_embed.expand(batch, -1, -1).to(x.dtype)
        x = x + apply_masks(pos, context_index[None])
        queries = self.mask_token.to(x.dtype) + apply_masks(pos, target_index)
        # one sequence per (target mask, sample): the masks do not see each other's mask tokens
        x = torch.cat([x.repeat(num_masks, 1, 1), queries], dim=1)
        for block in self.predictor_blocks:
            x = block(x)
        return self.predictor_proj(self.predictor_norm(x)[:, -k:])


#: parameters of a ``torch.nn.TransformerEncoderLayer`` (pre-norm) under the names of the ViT block that computes the
#: same function (timm's and the I-JEPA release's ``Block``)
_TORCH_LAYER_NAMES = {
    "self_attn.in_proj_weight": "attn.qkv.weight", "self_attn.in_proj_bias": "attn.qkv.bias",
    "self_attn.out_proj.weight": "attn.proj.weight", "self_attn.out_proj.bias": "attn.proj.bias",
    "linear1.weight": "mlp.fc1.weight", "linear1.bias": "mlp.fc1.bias",
    "linear2.weight": "mlp.fc2.weight", "linear2.bias": "mlp.fc2.bias",
    "norm1.weight": "norm1.weight", "norm1.bias": "norm1.bias", "norm2.weight": "norm2.weight", "norm2.bias": "norm2.bias",
}  # fmt: skip


def migrate_predictor_state(state: dict[str, Tensor], prefix: str = "predictor.") -> dict[str, Tensor]:
    """The weights of the predictors of zoo 0.1 (``embed``/``blocks``/``norm``/``proj`` and ``mask_token`` [p] for
    T-JEPA, whose blocks were ``torch.nn.TransformerEncoder`` layers) under :class:`JEPAPredictor`'s names; keys
    already in today's form, and every other key, are kept as they are."""
    migrated = {}
    for key, value in state.items():
        name = key[len(prefix) :] if key.startswith(prefix) else None
        if name is not None:
            head, _, rest = name.partition(".")
            if head == "blocks" and rest.startswith("layers."):
                _, index, param = rest.split(".", 2)
                name = f"predictor_blocks.{index}.{_TORCH_LAYER_NAMES.get(param, param)}"
            elif head in ("embed", "blocks", "norm", "proj"):
                name = f"predictor_{name}"
            elif name == "mask_token" and value.ndim == 1:
                value = value.view(1, 1, -1)
            key = prefix + name
        migrated[key] = value
    return migrated
