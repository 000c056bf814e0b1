import pytest
import torch

from zoo.nn.masking import skeleton_mask
from zoo.nn.skeleton_layouts import BODY_PARTS, get_layout


@pytest.mark.parametrize("layout_name", ["ntu25", "coco17"])
def test_fixed_parts_mask_exactly_their_joints(layout_name):
    layout = get_layout(layout_name)
    mask = skeleton_mask(layout, 3, "parts", parts=("right_arm", "right_leg"))
    expected = set(layout.parts["right_arm"]) | set(layout.parts["right_leg"])
    assert mask.shape == (3, layout.num_joints)
    for row in mask:
        assert set(row.nonzero().flatten().tolist()) == expected


def test_random_parts_mask_whole_parts_and_vary_per_sample():
    layout = get_layout("ntu25")
    membership = layout.part_membership()
    mask = skeleton_mask(layout, 64, "random_parts", num_parts=2, generator=torch.Generator().manual_seed(0))
    for row in mask:
        covered = [p for p in range(len(BODY_PARTS)) if row[membership[p]].all()]
        assert len(covered) == 2 and (row == membership[covered].any(0)).all()  # nothing outside the 2 parts
    assert len({tuple(r.tolist()) for r in mask}) > 5
    again = skeleton_mask(layout, 64, "random_parts", num_parts=2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(mask, again)


def test_random_joints_and_errors():
    layout = get_layout("coco17")
    mask = skeleton_mask(layout, 10, "random_joints", ratio=0.5, generator=torch.Generator().manual_seed(1))
    assert (mask.sum(1) == round(0.5 * 17)).all()
    with pytest.raises(ValueError, match="mask ratio"):
        skeleton_mask(layout, 2, "random_joints", ratio=1.0)
    with pytest.raises(ValueError, match="num_parts"):
        skeleton_mask(layout, 2, "random_parts", num_parts=7)
    with pytest.raises(ValueError, match="unknown mask strategy"):
        skeleton_mask(layout, 2, "blocks")
