"""Skeleton layouts: joints, bones (edge lists) and body-part groups, defined once for the data, encoder and masking.

- ``ntu25``: the 25-joint Kinect v2 body of NTU RGB+D 60/120 (Shahroudy et al. 2016; Liu et al. 2019), 3-D.
  Edges are the standard list of open-mmlab/mmskeleton and CTR-GCN, converted from 1-based to 0-based.
- ``coco17``: the 17 COCO keypoints (Lin et al. 2014) that pyskl's 2-D pose data uses; SkeletonMAE (Yan et al.,
  ICCV 2023) pre-trains on this layout. Edges as in pyskl.

Body parts follow SkeletonMAE's masking regions: head, torso, left arm, right arm, left leg, right leg. For COCO the paper gives
the mapping; for NTU-25 we use the equivalent grouping (every joint in exactly one part, hands and thumbs with their
arm, shoulders and hips with the torso as in the COCO mapping).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

#: SkeletonMAE's six regions, in this order everywhere (mask configs name them)
BODY_PARTS: tuple[str, ...] = ("head", "torso", "left_arm", "right_arm", "left_leg", "right_leg")


@dataclass(frozen=True)
class SkeletonLayout:
    """A skeleton: joint names, undirected bones (0-based), body parts, and the joints normalisation uses.

    ``center`` joints are averaged to the body centre; the torso length used as the unit of scale is the distance
    between the means of ``scale_from`` and ``scale_to`` (e.g. spine-shoulder to spine-base).
    """

    name: str
    joints: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]
    parts: dict[str, tuple[int, ...]]
    center: tuple[int, ...]
    scale_from: tuple[int, ...]
    scale_to: tuple[int, ...]
    channels: int  # coordinates per joint in the standard data: 3 for NTU (x, y, z), 2 for COCO (x, y)

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    def edge_index(self, self_loops: bool = False) -> Tensor:
        """``int64 [2, 2E (+V)]``: every bone in both directions (message passing is undirected), optionally with
        self loops. GINConv adds the node's own feature through (1 + ε)·x, so it needs none."""
        src = [a for a, b in self.edges] + [b for a, b in self.edges]
        dst = [b for a, b in self.edges] + [a for a, b in self.edges]
        if self_loops:
            src += list(range(self.num_joints))
            dst += list(range(self.num_joints))
        return torch.tensor([src, dst], dtype=torch.long)

    def part_mask(self, parts: list[str] | tuple[str, ...]) -> Tensor:
        """``bool [V]``: True at the joints of ``parts``."""
        unknown = [p for p in parts if p not in self.parts]
        if unknown:
            raise ValueError(f"unknown body part(s) {unknown} for layout {self.name!r}; valid: {list(self.parts)}")
        mask = torch.zeros(self.num_joints, dtype=torch.bool)
        for part in parts:
            mask[list(self.parts[part])] = True
        return mask

    def part_membership(self) -> Tensor:
        """``bool [P, V]``: row p marks the joints of body part ``BODY_PARTS[p]``."""
        return torch.stack([self.part_mask([p]) for p in BODY_PARTS])


def _ntu25() -> SkeletonLayout:
    joints = (
        "spine_base", "spine_mid", "neck", "head", "left_shoulder", "left_elbow", "left_wrist", "left_hand",
        "right_shoulder", "right_elbow", "right_wrist", "right_hand", "left_hip", "left_knee", "left_ankle",
        "left_foot", "right_hip", "right_knee", "right_ankle", "right_foot", "spine_shoulder", "left_hand_tip",
        "left_thumb", "right_hand_tip", "right_thumb",
    )  # fmt: skip
    one_based = (
        (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9), (11, 10), (12, 11),
        (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19), (22, 23), (23, 8), (24, 25),
        (25, 12),
    )  # fmt: skip
    parts = {
        "head": (2, 3),  # neck, head
        "torso": (0, 1, 20, 4, 8, 12, 16),  # spine base/mid/shoulder, shoulders, hips (as COCO's torso)
        "left_arm": (5, 6, 7, 21, 22),  # elbow, wrist, hand, hand tip, thumb
        "right_arm": (9, 10, 11, 23, 24),
        "left_leg": (13, 14, 15),  # knee, ankle, foot
        "right_leg": (17, 18, 19),
    }
    return SkeletonLayout(
        name="ntu25",
        joints=joints,
        edges=tuple((a - 1, b - 1) for a, b in one_based),
        parts=parts,
        center=(20,),  # joint 21 (spine shoulder), the centre CTR-GCN/mmskeleton subtract
        scale_from=(20,),
        scale_to=(0,),
        channels=3,
    )


def _coco17() -> SkeletonLayout:
    joints = (
        "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
        "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee",
        "left_ankle", "right_ankle",
    )  # fmt: skip
    edges = (
        (15, 13), (13, 11), (16, 14), (14, 12), (11, 5), (12, 6), (9, 7), (7, 5), (10, 8), (8, 6), (5, 0), (6, 0),
        (1, 0), (3, 1), (2, 0), (4, 2),
    )  # fmt: skip
    parts = {  # the mapping SkeletonMAE gives for COCO
        "head": (0, 1, 2, 3, 4),
        "torso": (5, 6, 11, 12),
        "left_arm": (7, 9),
        "right_arm": (8, 10),
        "left_leg": (13, 15),
        "right_leg": (14, 16),
    }
    return SkeletonLayout(
        name="coco17",
        joints=joints,
        edges=edges,
        parts=parts,
        center=(11, 12),  # COCO has no pelvis joint: mid-hip
        scale_from=(5, 6),  # mid-shoulder to mid-hip
        scale_to=(11, 12),
        channels=2,
    )


LAYOUTS: dict[str, SkeletonLayout] = {layout.name: layout for layout in (_ntu25(), _coco17())}


def get_layout(name: str) -> SkeletonLayout:
    """The layout called ``name`` (``"ntu25"`` or ``"coco17"``); a clear error otherwise."""
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ValueError(f"unknown skeleton layout {name!r}; valid layouts: {', '.join(LAYOUTS)}") from None
