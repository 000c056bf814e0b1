"""Skeleton layouts, the action generator, the format readers and SkeletonDataModule."""

import json
import pickle
from collections import deque

import numpy as np
import pytest
import torch

from zoo.cli import main
from zoo.data.base import DataError
from zoo.data.skeleton import (
    SkeletonDataModule,
    normalize_skeletons,
    read_coco_split,
    read_ctrgcn_split,
    read_ntu_split,
    resample_frames,
    valid_lengths,
    write_ntu_split,
)
from zoo.data.skeleton_generator import ACTION_SETS, ACTIONS, FINE_ACTIONS, generate_actions, write_actions_dataset
from zoo.nn.skeleton_layouts import BODY_PARTS, LAYOUTS, get_layout


# ---- layouts ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_layout_edges_form_one_tree_over_all_joints(name):
    layout = get_layout(name)
    v = layout.num_joints
    assert all(0 <= a < v and 0 <= b < v and a != b for a, b in layout.edges)
    assert len({frozenset(e) for e in layout.edges}) == len(layout.edges) == v - 1  # a skeleton is a tree
    neighbours = {j: set() for j in range(v)}
    for a, b in layout.edges:
        neighbours[a].add(b)
        neighbours[b].add(a)
    seen, queue = {0}, deque([0])
    while queue:
        for n in neighbours[queue.popleft()] - seen:
            seen.add(n)
            queue.append(n)
    assert seen == set(range(v))


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_edge_index_is_symmetric_and_parts_partition_the_joints(name):
    layout = get_layout(name)
    ei = layout.edge_index()
    pairs = set(map(tuple, ei.t().tolist()))
    assert ei.shape == (2, 2 * len(layout.edges)) and all((b, a) in pairs for a, b in pairs)
    assert layout.edge_index(self_loops=True).shape[1] == 2 * len(layout.edges) + layout.num_joints
    assert tuple(layout.parts) == BODY_PARTS
    joints = [j for part in layout.parts.values() for j in part]
    assert sorted(joints) == list(range(layout.num_joints))  # every joint in exactly one part
    membership = layout.part_membership()
    assert membership.shape == (6, layout.num_joints) and (membership.sum(0) == 1).all()


def test_ntu_and_coco_layouts_match_the_published_lists():
    ntu = get_layout("ntu25")
    assert (0, 1) in ntu.edges and (22, 7) in ntu.edges and ntu.center == (20,)  # (1,2), (23,8) 1-based; joint 21
    assert ntu.joints[20] == "spine_shoulder" and ntu.parts["right_arm"] == (9, 10, 11, 23, 24)
    coco = get_layout("coco17")
    assert coco.parts["head"] == (0, 1, 2, 3, 4) and coco.parts["torso"] == (5, 6, 11, 12)
    with pytest.raises(ValueError, match="unknown body part"):
        ntu.part_mask(["tail"])
    with pytest.raises(ValueError, match="unknown skeleton layout"):
        get_layout("ntu26")


# ---- generator ---------------------------------------------------------------------------------------------------------
def test_generator_is_seeded_balanced_and_in_ntu_format():
    data, labels = generate_actions(48, seed=3, max_frames=24)
    again, labels_again = generate_actions(48, seed=3, max_frames=24)
    assert data.shape == (48, 3, 24, 25, 2) and data.dtype == np.float32
    assert np.array_equal(data, again) and np.array_equal(labels, labels_again)
    assert not np.array_equal(data, generate_actions(48, seed=4, max_frames=24)[0])
    assert len(ACTIONS) >= 10 and np.bincount(labels).tolist() == [4] * len(ACTIONS)
    assert np.all(data[..., 1] == 0)  # single performer: the second person slot is empty
    # distances in metres at a Kinect-like depth; some joints dropped (exact zeros) as Kinect writes them
    person = data[..., 0]
    assert 1.5 < np.median(person[:, 2][person[:, 2] != 0]) < 5.0
    assert (np.all(person == 0, axis=1)).any()


@pytest.mark.parametrize("actions", ["basic", "fine"])
def test_each_action_moves_differently(actions):
    # per-joint mean speed and mean position per action differ (walk/run/jump move the body; others differ in limb
    # motion; the held one-arm poses of the fine set differ in where the hand is)
    names = ACTION_SETS[actions]
    data, labels = generate_actions(10 * len(names), seed=0, max_frames=32, actions=actions)
    x = normalize_skeletons(resample_frames(data[..., :1], 32), get_layout("ntu25"))[..., 0]
    speed = [np.abs(np.diff(x[labels == a], axis=2)).mean(axis=(0, 1, 2)) for a in range(len(names))]
    pose = [np.abs(x[labels == a]).mean(axis=(0, 2)).ravel() for a in range(len(names))]
    profile = np.concatenate([np.stack(speed), np.stack(pose)], axis=1)
    distances = np.linalg.norm(profile[:, None] - profile[None], axis=-1)
    assert (distances + np.eye(len(names)) * 1e9).min() > 1e-3


def test_fine_action_set_extends_the_basic_one(tmp_path):
    assert ACTION_SETS["fine"][: len(ACTIONS)] == ACTIONS and len(ACTION_SETS["fine"]) == len(ACTIONS) + len(FINE_ACTIONS)
    # the basic set is unchanged by the fine one (same seed, same data): the shipped recipes stay reproducible
    assert np.array_equal(generate_actions(24, seed=1, max_frames=8)[0], generate_actions(24, seed=1, max_frames=8, actions="basic")[0])
    _, labels = generate_actions(42, seed=0, max_frames=8, actions="fine")
    assert np.bincount(labels).tolist() == [2] * 21
    assert main(["data", "build", "skeleton-actions", str(tmp_path / "fine"), "--train", "21", "--test", "21", "--frames", "8", "--actions", "fine"]) == 0
    assert json.loads((tmp_path / "fine" / "classes.json").read_text()) == list(ACTION_SETS["fine"])
    dm = SkeletonDataModule(tmp_path / "fine", data_format="generated", num_frames=8, num_persons=1, batch_size=4, val_size=4)
    dm.setup("fit")
    assert dm.num_classes == 21 and dm.class_names[-1] == "salute"
    with pytest.raises(ValueError, match="unknown action set 'hard'; valid: basic, fine"):
        generate_actions(4, actions="hard")


# ---- readers -----------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("skeleton")
    write_actions_dataset(folder, train=72, test=36, seed=0, max_frames=20)
    return folder


def test_ntu_folder_round_trip(generated):
    data, labels = read_ntu_split(generated, "train")
    expected, expected_labels = generate_actions(72, seed=0, max_frames=20)
    assert np.array_equal(data, expected) and np.array_equal(labels, expected_labels)
    names, stored = pickle.loads((generated / "train_label.pkl").read_bytes())
    assert len(names) == 72 and stored == expected_labels.tolist()
    test, _ = read_ntu_split(generated, "test")
    assert test.shape == (36, 3, 20, 25, 2) and not np.array_equal(test[:10], data[:10])


def test_ntu_labels_as_npy_and_val_name(tmp_path):
    data, labels = generate_actions(12, seed=1, max_frames=10)
    np.save(tmp_path / "val_data_joint.npy", data)
    np.save(tmp_path / "val_label.npy", labels)
    read, read_labels = read_ntu_split(tmp_path, "test")
    assert np.array_equal(read, data) and np.array_equal(read_labels, labels)


def test_ctrgcn_npz_round_trip(tmp_path):
    data, labels = generate_actions(12, seed=2, max_frames=10)  # (N, C, T, V, M)
    x = data.transpose(0, 2, 4, 3, 1).reshape(12, 10, 150)  # CTR-GCN: (N, T, M·V·C)
    np.savez(tmp_path / "NTU60_CS.npz", x_train=x, y_train=np.eye(12)[labels], x_test=x[:4], y_test=np.eye(12)[labels[:4]])
    read, read_labels = read_ctrgcn_split(tmp_path / "NTU60_CS.npz", "train")
    assert np.array_equal(read, data) and np.array_equal(read_labels, labels)
    assert read_ctrgcn_split(tmp_path / "NTU60_CS.npz", "test")[0].shape == (4, 3, 10, 25, 2)


def _pyskl(tmp_path, keypoint_shape=(1, 15, 17, 2)):
    rng = np.random.default_rng(0)
    annotations = [
        {"frame_dir": f"clip{i}", "label": i % 3, "total_frames": keypoint_shape[1],
         "keypoint": rng.normal(size=keypoint_shape).astype(np.float32), "keypoint_score": np.ones(keypoint_shape[:3], np.float32)}
        for i in range(6)
    ]  # fmt: skip
    content = {"split": {"xsub_train": [f"clip{i}" for i in range(4)], "xsub_val": ["clip4", "clip5"]}, "annotations": annotations}
    path = tmp_path / "ntu60_2d.pkl"
    path.write_bytes(pickle.dumps(content))
    return path, annotations


def test_coco_pyskl_round_trip(tmp_path):
    path, annotations = _pyskl(tmp_path)
    data, labels = read_coco_split(path, "train", num_frames=15, num_persons=2)
    assert data.shape == (4, 2, 15, 17, 2) and labels.tolist() == [0, 1, 2, 0]
    np.testing.assert_allclose(data[1, :, :, :, 0], annotations[1]["keypoint"][0].transpose(2, 0, 1), atol=1e-6)
    assert np.all(data[..., 1] == 0)
    test, test_labels = read_coco_split(path, "test", num_frames=8, num_persons=1)
    assert test.shape == (2, 2, 8, 17, 1) and test_labels.tolist() == [1, 2]


def _one_line_error(call, message):
    with pytest.raises(DataError, match=message) as info:
        call()
    assert "\n" not in str(info.value)


def test_bad_inputs_are_one_line_data_errors(tmp_path, generated):
    np.save(tmp_path / "train_data.npy", np.zeros((4, 3, 10, 25), np.float32))  # 4-D, not N×C×T×V×M
    np.save(tmp_path / "train_label.npy", np.zeros(4, np.int64))
    _one_line_error(lambda: read_ntu_split(tmp_path, "train"), r"N×C×T×V×M .*got shape \(4, 3, 10, 25\)")
    np.save(tmp_path / "train_data.npy", np.zeros((4, 3, 10, 25, 2), np.float32))
    np.save(tmp_path / "train_label.npy", np.zeros(5, np.int64))
    _one_line_error(lambda: read_ntu_split(tmp_path, "train"), "train_data.npy holds 4 samples but .*train_label.npy holds 5")
    _one_line_error(lambda: read_ntu_split(tmp_path, "test"), "none of test_data_joint.npy")
    _one_line_error(lambda: read_ntu_split(tmp_path / "nowhere", "train"), "nowhere: skeleton data folder not found")
    np.savez(tmp_path / "bad.npz", x_train=np.zeros((2, 5, 150)))
    _one_line_error(lambda: read_ctrgcn_split(tmp_path / "bad.npz", "train"), "bad.npz: missing key 'y_train'")
    np.savez(tmp_path / "shape.npz", x_train=np.zeros((2, 5, 75)), y_train=np.zeros(2))
    _one_line_error(lambda: read_ctrgcn_split(tmp_path / "shape.npz", "train"), r"x_train must be .*got shape \(2, 5, 75\)")
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps((["a"], [0], print)))  # a global outside the allow-list
    _one_line_error(lambda: SkeletonDataModule(str(tmp_path / "evil.pkl"), data_format="coco").setup(), "builtins.print is not allowed")
    path, _ = _pyskl(tmp_path, keypoint_shape=(1, 15, 25, 2))
    _one_line_error(lambda: read_coco_split(path, "train", 8, 1), r"keypoint must be \(M, T, 17, 2\), got shape \(1, 15, 25, 2\)")
    _one_line_error(lambda: read_coco_split(path, "holdout", 8, 1), "no 'holdout' split")
    _one_line_error(lambda: SkeletonDataModule(str(generated), val_size=72).setup(), "val_size=72")
    _one_line_error(lambda: SkeletonDataModule(str(generated), data_format="mocap"), "unknown skeleton data_format")
    _one_line_error(lambda: SkeletonDataModule(str(generated), layout="coco17"), "layout='coco17' does not fit")


# ---- preprocessing -----------------------------------------------------------------------------------------------------
def test_resample_crops_the_padding_and_keeps_endpoints():
    data = np.zeros((2, 3, 10, 25, 1), np.float32)
    data[0, :, :4] = np.arange(1, 5, dtype=np.float32)[None, :, None, None]  # 4 valid frames: 1, 2, 3, 4
    data[1, :, :10] = 1.0
    assert valid_lengths(data).tolist() == [4, 10]
    out = resample_frames(data, 7)
    np.testing.assert_allclose(out[0, 0, :, 0, 0], [1, 1.5, 2, 2.5, 3, 3.5, 4])
    data[0, :, 1, 3] = 0.0  # a missing joint is never blended with a present one
    out = resample_frames(data, 7)
    assert set(np.unique(out[0, 0, :3, 3, 0])) <= {0.0, 1.0, 3.0}


def test_normalisation_centres_scales_and_keeps_missing_joints_zero():
    layout = get_layout("ntu25")
    data, _ = generate_actions(12, seed=5, max_frames=16)
    x = resample_frames(data[..., :1], 16)
    missing = np.all(x == 0, axis=1)
    out = normalize_skeletons(x, layout, "sequence")
    now_zero = np.all(out == 0, axis=1)
    assert np.all(now_zero[missing])
    # beyond the missing joints, only the centre joint of the reference frame lands exactly on the origin
    assert (now_zero & ~missing).sum(axis=(1, 2, 3)).max() <= 1
    present = ~missing[:, :, 20, 0] & ~missing[:, :, 0, 0]
    for i in range(12):
        first = np.argmax(~missing[i, :, 20, 0])
        np.testing.assert_allclose(out[i, :, first, 20, 0], 0.0, atol=1e-5)
        torso = np.linalg.norm(out[i, :, :, 20, 0] - out[i, :, :, 0, 0], axis=0)[present[i]]
        assert abs(torso.mean() - 1.0) < 1e-4
    framewise = normalize_skeletons(x, layout, "frame")
    ok = ~missing[:, :, 20, 0]
    assert np.abs(framewise[:, :, :, 20, 0].transpose(0, 2, 1)[ok]).max() < 1e-5


def test_datamodule_batches_and_splits(generated):
    dm = SkeletonDataModule(str(generated), num_frames=12, num_persons=1, batch_size=16, val_size=8, knn_bank_size=20)
    assert dm.num_classes == len(ACTIONS) and dm.class_names == list(ACTIONS)
    batch = next(iter(dm.train_dataloader()))
    assert batch["skeleton"].shape == (16, 3, 12, 25, 1) and batch["skeleton"].dtype == torch.float32
    assert batch["label"].dtype == torch.int64
    assert len(dm.dataset("train")) == 64 and len(dm.dataset("val")) == 8 and len(dm.dataset("test")) == 36
    bank, val = dm.val_dataloader()
    assert len(bank.dataset) == 20 and len(val.dataset) == 8 and len(dm.test_dataloader()) == 2
    assert torch.equal(dm.dataset("knn_bank").skeletons, dm.dataset("train").skeletons[:20])


def test_write_ntu_split_checks_its_input(tmp_path):
    with pytest.raises(DataError, match="N = len"):
        write_ntu_split(tmp_path, "train", np.zeros((3, 3, 4, 25, 2)), np.zeros(2))
