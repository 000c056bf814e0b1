import math

import numpy as np
import pytest
import torch

from zoo.nn.tokens import apply_masks, gather_tokens, sincos_1d, sincos_2d


def release_apply_masks(x, masks):
    """facebookresearch/ijepa src/masks/utils.py, as released."""
    all_x = []
    for m in masks:
        mask_keep = m.unsqueeze(-1).repeat(1, 1, x.size(-1))
        all_x += [torch.gather(x, dim=1, index=mask_keep)]
    return torch.cat(all_x, dim=0)


def release_2d_sincos(embed_dim, grid_size):
    """facebookresearch/ijepa src/models/vision_transformer.py ``get_2d_sincos_pos_embed`` (MAE's), as released,
    then ``torch.from_numpy(...).float()`` as the release's encoder and predictor do."""

    def one_d(dim, pos):
        omega = np.arange(dim // 2, dtype=float)
        omega /= dim / 2.0
        omega = 1.0 / 10000**omega
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    grid_h = np.arange(grid_size, dtype=float)
    grid_w = np.arange(grid_size, dtype=float)
    grid = np.stack(np.meshgrid(grid_w, grid_h), axis=0).reshape([2, 1, grid_size, grid_size])  # w goes first
    table = np.concatenate([one_d(embed_dim // 2, grid[0]), one_d(embed_dim // 2, grid[1])], axis=1)
    return torch.from_numpy(table).float()


def test_apply_masks_is_the_releases_mask_major_gather():
    x = torch.randn(3, 10, 4)
    masks = torch.stack([torch.randperm(10)[:5].view(1, 5).repeat(3, 1) for _ in range(2)])  # [M=2, B=3, K=5]
    expected = release_apply_masks(x, list(masks))
    assert torch.equal(apply_masks(x, masks), expected)
    assert torch.equal(apply_masks(x, list(masks)), expected)
    # row m·B + b is mask m of sample b
    tokens = torch.arange(2 * 4, dtype=torch.float).view(2, 4, 1)
    out = apply_masks(tokens, torch.tensor([[[0, 1], [3, 2]], [[2, 2], [0, 3]]]))[..., 0]
    assert out.tolist() == [[0, 1], [7, 6], [2, 2], [4, 7]]


def test_gather_tokens_keeps_trailing_dims_and_rejects_a_mismatched_index():
    neighbours = torch.arange(2 * 5 * 3).view(2, 5, 3)  # e.g. [B, N, k] index lists
    assert torch.equal(gather_tokens(neighbours, torch.tensor([[4, 0], [1, 1]])), torch.stack([neighbours[0, [4, 0]], neighbours[1, [1, 1]]]))
    with pytest.raises(ValueError, match="index must be"):
        gather_tokens(torch.zeros(2, 5, 3), torch.zeros(3, 2, dtype=torch.long))


@pytest.mark.parametrize("grid, dim", [(7, 64), (14, 384)])
def test_2d_table_is_the_release_table_bit_for_bit(grid, dim):
    official = release_2d_sincos(dim, grid)
    assert torch.equal(sincos_2d((grid, grid), dim, "xy"), official)
    # "yx" is its transpose: the row in the first half of the channels
    transposed = sincos_2d((grid, grid), dim, "yx")
    assert torch.equal(transposed, torch.cat([official[:, dim // 2 :], official[:, : dim // 2]], dim=1))
    assert not torch.equal(transposed, official)


def test_2d_table_on_a_non_square_grid_and_bad_arguments():
    pos = sincos_2d((3, 5), 8)  # dim 8: 2 frequencies per coordinate, ω = 1, 1/100; raster order
    row, col = 2, 3
    def enc(p):
        return [math.sin(p), math.sin(p / 100), math.cos(p), math.cos(p / 100)]
    torch.testing.assert_close(pos[row * 5 + col], torch.tensor(enc(col) + enc(row)))
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_2d((3, 3), 6)
    with pytest.raises(ValueError, match="pos_embed_order"):
        sincos_2d((3, 3), 8, "hw")  # type: ignore[arg-type]


def test_1d_table_interleaves_sin_and_cos_with_its_base():
    table = sincos_1d(5, 8, base=100.0)
    p = 3
    expected = [f(p / 100 ** (i / 4)) for i in range(4) for f in (math.sin, math.cos)]
    torch.testing.assert_close(table[p], torch.tensor(expected))
    assert torch.equal(table[0, 1::2], torch.ones(4))
