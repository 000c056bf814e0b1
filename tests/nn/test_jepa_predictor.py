import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zoo.nn.jepa_predictor import JEPAPredictor, migrate_predictor_state
from zoo.nn.tokens import sincos_1d, sincos_2d


def reference_forward(pred: JEPAPredictor, context, context_index, target_index, num_heads, eps=1e-6):
    """The release's VisionTransformerPredictor.forward with its Block/Attention/MLP written out, on ``pred``'s
    parameters (I-JEPA: one context mask, masks a list of M target masks)."""
    p = pred.predictor_pos_embed[0]
    batch = context.shape[0]
    x = context @ pred.predictor_embed.weight.T + pred.predictor_embed.bias
    x = x + torch.stack([p[context_index[b]] for b in range(batch)])
    n_ctxt = x.shape[1]
    pos = torch.cat([torch.stack([p[m[b]] for b in range(batch)]) for m in target_index])  # apply_masks, mask-major
    x = torch.cat([x.repeat(len(target_index), 1, 1), pred.mask_token + pos], dim=1)
    for blk in pred.predictor_blocks:
        u = F.layer_norm(x, x.shape[-1:], blk.norm1.weight, blk.norm1.bias, eps)
        b, n, c = u.shape
        qkv = (u @ blk.attn.qkv.weight.T + blk.attn.qkv.bias).reshape(b, n, 3, num_heads, c // num_heads).permute(2, 0, 3, 1, 4)
        attn = (qkv[0] @ qkv[1].transpose(-2, -1) * (c // num_heads) ** -0.5).softmax(-1)
        x = x + (attn @ qkv[2]).transpose(1, 2).reshape(b, n, c) @ blk.attn.proj.weight.T + blk.attn.proj.bias
        u = F.layer_norm(x, x.shape[-1:], blk.norm2.weight, blk.norm2.bias, eps)
        x = x + F.gelu(u @ blk.mlp.fc1.weight.T + blk.mlp.fc1.bias) @ blk.mlp.fc2.weight.T + blk.mlp.fc2.bias
    x = F.layer_norm(x, x.shape[-1:], pred.predictor_norm.weight, pred.predictor_norm.bias, eps)
    return x[:, n_ctxt:] @ pred.predictor_proj.weight.T + pred.predictor_proj.bias


def tiny_masks(batch=3, num_tokens=16, k_ctx=5, k_tgt=3, num_masks=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    context = torch.stack([torch.randperm(num_tokens, generator=g)[:k_ctx].sort().values for _ in range(batch)])
    targets = torch.stack([torch.stack([torch.randperm(num_tokens, generator=g)[:k_tgt] for _ in range(batch)]) for _ in range(num_masks)])
    return context, targets


def test_predictor_equals_the_release_forward_written_out():
    torch.manual_seed(0)
    pred = JEPAPredictor(12, sincos_2d((4, 4), 8), depth=2, num_heads=2).eval()
    for param in pred.parameters():  # away from the init's zeros/ones, so every term counts
        param.data.add_(torch.randn_like(param) * 0.1)
    context_index, target_index = tiny_masks()
    context = torch.randn(3, 5, 12)
    out = pred(context, context_index, target_index)
    assert out.shape == (2 * 3, 3, 12)
    torch.testing.assert_close(out, reference_forward(pred, context, context_index, target_index, num_heads=2))
    # the release's LayerNorm ε is 1e-6, in the blocks and the final norm
    assert {m.eps for m in pred.modules() if isinstance(m, nn.LayerNorm)} == {1e-6}
    # one sequence per (target mask, sample): mask 0 alone gives the same rows
    torch.testing.assert_close(pred(context, context_index, target_index[:1]), out[:3])
    with pytest.raises(ValueError, match="disagree"):
        pred(context[:2], context_index, target_index)
    with pytest.raises(ValueError, match="num_heads=3"):
        JEPAPredictor(12, sincos_2d((4, 4), 8), num_heads=3)


class OldTabularPredictor(nn.Module):
    """T-JEPA's predictor as zoo 0.1 saved it: torch TransformerEncoder layers (pre-norm, GELU), ``mask_token`` [p]."""

    def __init__(self, embed_dim, positions, depth, heads):
        super().__init__()
        dim = positions.shape[1]
        self.embed = nn.Linear(embed_dim, dim)
        self.mask_token = nn.Parameter(torch.randn(dim))
        self.register_buffer("positions", positions, persistent=False)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, 0.0, activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, embed_dim)

    def forward(self, context, context_index, target_index):
        m, b, k = target_index.shape
        pos = self.positions
        x = self.embed(context) + pos[context_index]
        x = torch.cat([x.repeat(m, 1, 1), self.mask_token + pos[target_index.reshape(m * b, k)]], dim=1)
        return self.proj(self.norm(self.blocks(x)[:, -k:]))


def test_a_saved_torch_layer_predictor_migrates_to_the_same_function():
    torch.manual_seed(0)
    positions = sincos_1d(16, 8, base=100.0)
    old = OldTabularPredictor(12, positions, depth=2, heads=2).eval()
    state = {f"predictor.{k}": v for k, v in old.state_dict().items()}
    state["encoder.weight"] = torch.ones(1)  # other modules' keys pass through
    migrated = migrate_predictor_state(state)
    assert migrated["encoder.weight"] is state["encoder.weight"]
    assert migrate_predictor_state(migrated).keys() == migrated.keys()  # today's names stay as they are
    new = JEPAPredictor(12, positions, depth=2, num_heads=2).eval()
    new.load_state_dict({k.removeprefix("predictor."): v for k, v in migrated.items() if k.startswith("predictor.")})
    for module in new.modules():  # the old predictor's LayerNorms had torch's default ε
        if isinstance(module, nn.LayerNorm):
            module.eps = 1e-5
    context_index, target_index = tiny_masks()
    context = torch.randn(3, 5, 12)
    with torch.no_grad():
        expected = old(context, context_index, target_index)
        torch.testing.assert_close(new(context, context_index, target_index), expected, rtol=1e-5, atol=1e-6)
