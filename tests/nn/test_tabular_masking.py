import pytest
import torch

from zoo.nn.tabular_masking import mask_sizes, sample_tabular_masks


@pytest.mark.parametrize("num_features,num_reg", [(30, 2), (8, 1), (14, 0), (2, 3)])
def test_masks_keep_reg_tokens_and_targets_are_disjoint_from_the_context(num_features, num_reg):
    g = torch.Generator().manual_seed(num_features)
    for _ in range(5):
        masks = sample_tabular_masks(16, num_features, num_reg, num_targets=4, generator=g)
        ctx, tgt = masks.context, masks.targets
        assert ctx.shape[0] == 16 and tgt.shape[:2] == (4, 16)
        n_ctx, n_tgt = ctx.shape[1] - num_reg, tgt.shape[2]
        assert n_ctx >= 1 and n_tgt >= 1 and n_ctx + n_tgt <= num_features
        # the R [REG] tokens lead every context; feature positions are offset by R and in range
        assert torch.equal(ctx[:, :num_reg], torch.arange(num_reg).expand(16, -1))
        assert (ctx[:, num_reg:] >= num_reg).all() and (ctx < num_reg + num_features).all()
        assert (tgt >= num_reg).all() and (tgt < num_reg + num_features).all()
        for b in range(16):
            context = set(ctx[b].tolist())
            assert len(context) == ctx.shape[1]  # no repeats
            for m in range(4):
                target = set(tgt[m, b].tolist())
                assert len(target) == n_tgt and not target & context


def test_every_feature_is_sometimes_masked_and_targets_differ_between_masks():
    # the release's offset bug never masked the last R features; here each feature is a target somewhere
    masks = sample_tabular_masks(256, 10, 3, generator=torch.Generator().manual_seed(0))
    assert set(masks.targets.flatten().tolist()) == set(range(3, 13))
    assert not torch.equal(masks.targets[0], masks.targets[1])


def test_sizes_follow_the_share_ranges_and_a_generator_makes_them_reproducible():
    sizes = {mask_sizes(100, (0.2, 0.4), (0.1, 0.15), torch.Generator().manual_seed(s)) for s in range(50)}
    assert all(20 <= c <= 40 and 10 <= t <= 15 for c, t in sizes) and len(sizes) > 5
    a = sample_tabular_masks(4, 12, 2, generator=torch.Generator().manual_seed(3))
    b = sample_tabular_masks(4, 12, 2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.context, b.context) and torch.equal(a.targets, b.targets)


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least 2 features"):
        sample_tabular_masks(4, 1, 2)
    with pytest.raises(ValueError, match="context_share"):
        sample_tabular_masks(4, 10, 2, context_share=(0.5, 0.2))
