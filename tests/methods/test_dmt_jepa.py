import pytest
import torch
import torch.nn.functional as F

import zoo
from tests.methods.test_ijepa import TINY_PREDICTOR, TINY_VIT
from zoo.losses.jepa import jepa_loss
from zoo.methods.dmt_jepa import DMTJEPA, LocalAggregationHead, select_neighbours, window_neighbours
from zoo.nn.tokens import apply_masks


def test_window_neighbours_at_corners_edges_and_inside():
    index, valid = window_neighbours((3, 4))  # patch p = 4·row + col
    def neighbours(p):
        return sorted(index[p][valid[p]].tolist())
    assert neighbours(0) == [1, 4, 5]  # top-left corner: 3, no wrap-around to the right or bottom border
    assert neighbours(3) == [2, 6, 7]  # top-right corner
    assert neighbours(11) == [6, 7, 10]  # bottom-right corner
    assert neighbours(4) == [0, 1, 5, 8, 9]  # left edge: 5
    assert neighbours(5) == [0, 1, 2, 4, 6, 8, 9, 10]  # inside: all 8
    assert valid.sum(1).tolist() == [3, 5, 5, 3, 5, 8, 8, 5, 3, 5, 5, 3]


def test_select_neighbours_takes_the_most_similar_valid_ones():
    # 3×3 grid, 2-D features: the centre patch 4 points along x; patches 1 and 3 are parallel to it, 0 is
    # anti-parallel, the rest orthogonal
    features = torch.tensor([[-1, 0], [1, 0], [0, 1], [2, 0], [1, 0], [0, 1], [0, 1], [0, 1], [0, 1]], dtype=torch.float)[None]
    index, valid = select_neighbours(features, (3, 3), k=2)
    assert sorted(index[0, 4].tolist()) == [1, 3] and valid[0, 4].all()
    # corner 0 has 3 valid neighbours (1, 3, 4): with k = 4 the 4th slot is invalid, never a wrapped patch
    index, valid = select_neighbours(features, (3, 3), k=4)
    assert valid[0, 0].tolist() == [True, True, True, False]
    assert sorted(index[0, 0, :3].tolist()) == [1, 3, 4]
    assert valid[0, 4].all()
    with pytest.raises(ValueError, match="grid"):
        select_neighbours(features, (4, 4), k=2)


def test_head_shapes_and_the_query_is_each_images_own_mean():
    torch.manual_seed(0)
    head = LocalAggregationHead(16, num_heads=2, depth=2).eval()
    features = torch.randn(3, 9, 16)
    neighbours, valid = select_neighbours(features, (3, 3), k=4)
    targets = head.targets(features, neighbours, valid)
    assert targets.shape == (3, 9, 16)
    assert head.context(torch.randn(3, 5, 16)).shape == (3, 5, 16)
    # image 1's targets do not depend on image 0 (the release mixes images' means across the batch)
    other = features.clone()
    other[0] += 1.0
    torch.testing.assert_close(head.targets(other, neighbours, valid)[1:], targets[1:])


def test_head_targets_match_a_manual_class_attention():
    torch.manual_seed(0)
    head = LocalAggregationHead(8, num_heads=2, depth=1).eval()
    block = head.blocks[0]
    features = torch.randn(1, 4, 8)  # 2×2 grid: every patch has 3 valid neighbours
    neighbours, valid = select_neighbours(features, (2, 2), k=3)
    out = head.targets(features, neighbours, valid)[0, 0]
    query = features[0].mean(0, keepdim=True)
    u = block.norm1(torch.cat([query, features[0, neighbours[0, 0]]]))
    q, k, v = block.q(u[:1]).view(1, 2, 4), block.k(u).view(4, 2, 4), block.v(u).view(4, 2, 4)
    attention = torch.einsum("qhd,khd->hqk", q, k).div(2.0).softmax(-1)  # scale 1/sqrt(head_dim = 4)
    x = query + block.proj(torch.einsum("hqk,khd->qhd", attention, v).reshape(1, 8))
    x = x + block.mlp(block.norm2(x))
    torch.testing.assert_close(out, head.norm(x)[0])


def test_invalid_neighbours_are_masked_out_of_the_attention():
    torch.manual_seed(0)
    head = LocalAggregationHead(8, num_heads=2, depth=1).eval()
    features = torch.randn(1, 9, 8)
    neighbours = torch.tensor([[[1, 3, 4, 2]]])
    valid = torch.tensor([[[True, True, True, False]]])
    # changing the masked slot's patch does not change the target
    a = head.targets(features, neighbours, valid)
    b = head.targets(features, torch.tensor([[[1, 3, 4, 8]]]), valid)
    torch.testing.assert_close(a, b)


def test_ssl_step_regresses_the_ema_heads_aggregated_targets():
    torch.manual_seed(0)
    model = DMTJEPA(encoder=TINY_VIT, masking={"min_keep": 4}, **TINY_PREDICTOR)
    images = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)
    batch = {"image": images, **model.make_inputs({"image": images})}
    (view,), masks = batch["views"], batch["masks"]
    out = model.ssl_step(batch)
    normed = F.layer_norm(model.target_encoder(view), (16,))
    neighbours, valid = select_neighbours(normed, (8, 8), k=4)
    all_targets = model.target_head.targets(normed, neighbours, valid)  # every patch, then the blocks
    predictions = model.predictor(model.head.context(model.encoder(view, keep=masks.context)), masks.context, masks.targets)
    torch.testing.assert_close(out.loss, jepa_loss(predictions, apply_masks(all_targets, masks.targets), "smooth_l1"))
    out.loss.backward()
    assert model.head.blocks[0].q.weight.grad is not None  # the online head is trained
    assert all(p.grad is None for p in model.target_head.parameters())
    assert (model.target_head, model.head) in model._ema_pairs  # and its EMA copy follows it


def test_hub_round_trip_gives_identical_embeddings(tmp_path):
    torch.manual_seed(0)
    model = DMTJEPA(encoder=TINY_VIT, num_neighbours=3, **TINY_PREDICTOR).eval()
    model.save_pretrained(tmp_path)
    loaded = zoo.from_pretrained(tmp_path)
    assert isinstance(loaded, DMTJEPA) and loaded.hparams.num_neighbours == 3
    images = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)
    assert torch.equal(loaded.embed(images), model.embed(images))
    torch.testing.assert_close(loaded.target_head.norm.weight, model.target_head.norm.weight)


@pytest.mark.parametrize("bad, message", [({"num_neighbours": 9}, "num_neighbours"), ({"head_depth": 0}, "head_depth")])
def test_bad_settings_are_clear_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        DMTJEPA(encoder=TINY_VIT, **TINY_PREDICTOR, **bad)
