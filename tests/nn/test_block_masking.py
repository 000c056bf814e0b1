import pytest
import torch

from zoo.nn.block_masking import block_size, multi_block_masks, resolve_multi_block_config


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("grid", [(7, 7), (14, 14), (8, 6)])
def test_shapes_disjointness_and_min_keep(grid):
    for seed in range(20):
        masks = multi_block_masks(16, grid, generator(seed))
        num_patches = grid[0] * grid[1]
        assert masks.targets.shape[:2] == (4, 16)
        assert masks.context.shape[0] == 16 and masks.context.shape[1] >= 10
        assert masks.context.min() >= 0 and masks.context.max() < num_patches
        for b in range(16):
            context = set(masks.context[b].tolist())
            assert len(context) == masks.context.shape[1]  # no repeated patch
            assert masks.context[b].tolist() == sorted(context)  # raster order
            for t in range(4):
                target = set(masks.targets[t, b].tolist())
                assert len(target) == masks.targets.shape[2]
                assert not context & target  # the context never sees a target patch


def test_target_blocks_are_rectangles_of_the_drawn_size():
    masks = multi_block_masks(8, (14, 14), generator(3))
    for block in masks.targets.reshape(-1, masks.targets.shape[2]):
        rows, cols = block // 14, block % 14
        h, w = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        assert h * w == block.numel()  # a full rectangle: every row × col pair present
        assert 0.15 * 196 * 0.5 <= h * w <= 0.2 * 196 * 1.5  # rounding keeps it near the 15-20 % scale


def test_seeded_masks_are_reproducible_and_differ_across_seeds():
    a = multi_block_masks(32, (7, 7), generator(0))
    b = multi_block_masks(32, (7, 7), generator(0))
    c = multi_block_masks(32, (7, 7), generator(1))
    assert torch.equal(a.context, b.context) and torch.equal(a.targets, b.targets)
    assert not (a.context.shape == c.context.shape and torch.equal(a.context, c.context) and torch.equal(a.targets, c.targets))


def test_positions_differ_between_images_of_a_batch():
    masks = multi_block_masks(32, (14, 14), generator(0))
    assert len({tuple(masks.targets[0, b].tolist()) for b in range(32)}) > 1


def test_block_size_never_covers_a_whole_side():
    assert block_size((7, 7), 1.0, 1.0) == (6, 6)
    assert block_size((14, 14), 0.2, 1.0) == (6, 6)  # sqrt(0.2 · 196) = 6.26
    assert block_size((4, 4), 0.01, 1.0) == (1, 1)


def test_unreachable_min_keep_is_one_clear_error():
    with pytest.raises(ValueError, match="min_keep=40"):
        multi_block_masks(4, (7, 7), generator(0), {"min_keep": 40, "max_tries": 3})


@pytest.mark.parametrize("bad", [{"target_scale": (0.3, 0.2)}, {"context_scale": (0.5, 1.5)}, {"num_targets": 0}, {"typo": 1}])
def test_bad_config_names_the_key(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        resolve_multi_block_config(bad)
