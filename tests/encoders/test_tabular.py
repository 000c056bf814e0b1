import pytest
import torch

from zoo.encoders.tabular import FeatureTokenizer, TabularTransformer
from zoo.nn.tokens import sincos_1d

TINY = {"embed_dim": 16, "depth": 1, "num_heads": 2, "ff_dim": 32, "num_reg_tokens": 2}


def test_tokenizer_numeric_tokens_are_affine_and_unknown_codes_use_bucket_zero():
    tok = FeatureTokenizer(2, [3, 4], 8)
    x = torch.tensor([[0.0, 1.0, 1.0, 2.0], [0.5, 0.0, 7.0, -1.0]])
    t = tok(x)
    assert t.shape == (2, 4, 8)
    torch.testing.assert_close(t[0, 0], tok.bias[0])  # x = 0 → bias only
    torch.testing.assert_close(t[0, 1], tok.numeric_weight[1] + tok.bias[1])
    # the second categorical column's table starts after the first's 3 rows
    torch.testing.assert_close(t[0, 3], tok.embedding.weight[3 + 2] + tok.bias[3])
    # out-of-range codes (7 ≥ 3, −1) fall into each column's unknown bucket, never into another column's table
    torch.testing.assert_close(t[1, 2], tok.embedding.weight[0] + tok.bias[2])
    torch.testing.assert_close(t[1, 3], tok.embedding.weight[3] + tok.bias[3])


def test_encoder_shapes_with_and_without_a_keep_index():
    enc = TabularTransformer(3, [5], TINY)
    x = torch.rand(6, 4)
    assert enc(x).shape == (6, 6, 16)  # R + D tokens of width h
    assert (enc.num_features, enc.num_columns, enc.num_tokens) == (16, 4, 6)
    keep = torch.tensor([[0, 1, 3]] * 6)
    assert enc(x, keep).shape == (6, 3, 16)
    with pytest.raises(ValueError, match=r"features \[B, 4\]"):
        enc(torch.rand(6, 5))
    with pytest.raises(ValueError, match="unknown tabular encoder key"):
        TabularTransformer(3, [], {"width": 3})


def test_positions_are_the_base_100_sin_cos_table():
    enc = TabularTransformer(3, [5], TINY)
    assert torch.equal(enc.positions, sincos_1d(6, 16, base=100.0))
    x = torch.rand(2, 4)
    manual = torch.cat([enc.reg_tokens.expand(2, -1, -1), enc.tokenizer(x)], dim=1) + enc.positions
    torch.testing.assert_close(enc.tokens(x), manual)
