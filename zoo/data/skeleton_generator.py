"""Generated skeleton actions: a kinematic NTU-25 body performing 12 actions, written in the NTU format.

No skeleton data set is packaged for offline use (see the project's DATA.md), so demos and tests use motion made
here. Each sample is a forward-kinematics body (joint angles → 25 joint positions in metres, NTU/Kinect camera
coordinates: x, y up, z depth) whose action is a periodic or one-off joint-angle pattern. Nuisances make the task
non-trivial for a linear model on raw coordinates: random body size and limb proportions, speed, amplitude, phase,
handedness (wave, kick), idle-pose offsets, viewpoint (any yaw, camera pitch ±10°, distance), sequence length,
Gaussian joint noise, dropped joints (zeros, as Kinect writes missing joints) and a body part occluded for a while.

Write a data set (train_data.npy / train_label.pkl / test_data.npy / test_label.pkl, mmskeleton names) with

    python -m zoo.data.skeleton_generator DIR [--train 4000 --test 1000 --frames 64 --seed 0]
    zoo data build skeleton-actions DIR ...   (the same, through the zoo command)
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from zoo.nn.skeleton_layouts import get_layout

ACTIONS: tuple[str, ...] = (
    "walk", "run", "jump", "wave", "squat", "punch", "kick", "sit_down", "stand_up", "arm_circles",
    "jumping_jacks", "clap",
)  # fmt: skip
# Fine-grained actions: each is a near neighbour of a basic one or of another fine one (walk / march in place,
# wave / wave with both hands, jump / hop, punch / point / throw, squat / bow, and three one-hand-to-head poses:
# drink, phone call, salute), so that telling them apart needs the arm and hand joints, not the overall motion.
FINE_ACTIONS: tuple[str, ...] = (
    "march", "wave_both", "hop", "point", "throw", "bow", "drink", "phone_call", "salute",
)  # fmt: skip
ACTION_SETS: dict[str, tuple[str, ...]] = {"basic": ACTIONS, "fine": ACTIONS + FINE_ACTIONS}
FPS = 30.0
_LEFT, _RIGHT = 1.0, -1.0  # +x is the subject's left in the body frame

# segment lengths as fractions of body height (anthropometric tables, rounded)
_SEGMENTS = {
    "spine_low": 0.10, "spine_high": 0.17, "neck": 0.04, "head": 0.09, "shoulder_w": 0.11, "upper_arm": 0.17,
    "forearm": 0.15, "hand": 0.05, "hand_tip": 0.04, "thumb": 0.035, "hip_w": 0.055, "hip_drop": 0.04,
    "thigh": 0.245, "shin": 0.245, "foot": 0.08, "ankle_h": 0.04,
}  # fmt: skip


def _limb_direction(flex: np.ndarray, abduct: np.ndarray, side: float) -> np.ndarray:
    """Unit vector [T, 3] of a limb hanging straight down, abducted by ``abduct`` (outwards, about the forward
    axis), then flexed by ``flex`` (forwards, about the left-right axis): (side·sinφ, −cosφ·cosθ, cosφ·sinθ)."""
    flex, abduct = np.broadcast_arrays(flex, abduct)
    return np.stack([side * np.sin(abduct), -np.cos(abduct) * np.cos(flex), np.cos(abduct) * np.sin(flex)], -1)


def _angles(action: str, t: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Joint-angle trajectories (radians, arrays [T]) and root motion of ``action`` at times ``t`` (seconds)."""
    speed = rng.uniform(0.7, 1.4)
    amp = rng.uniform(0.7, 1.3)
    phase = rng.uniform(0, 2 * math.pi)
    side = _LEFT if rng.random() < 0.5 else _RIGHT  # handedness / footedness of one-sided actions
    zero = np.zeros_like(t)
    a: dict[str, np.ndarray] = {
        # idle pose: arms slightly out and bent, differing per subject
        "sf_l": zero + rng.normal(0, 0.1), "sf_r": zero + rng.normal(0, 0.1),
        "sa_l": zero + abs(rng.normal(0.12, 0.08)), "sa_r": zero + abs(rng.normal(0.12, 0.08)),
        "ef_l": zero + abs(rng.normal(0.2, 0.15)), "ef_r": zero + abs(rng.normal(0.2, 0.15)),
        "hf_l": zero.copy(), "hf_r": zero.copy(), "ha_l": zero + 0.05, "ha_r": zero + 0.05,
        "kf_l": zero.copy(), "kf_r": zero.copy(), "lean": zero + rng.normal(0, 0.05),
        "forward": zero.copy(), "lift": zero.copy(),
    }  # fmt: skip

    def wave_of(freq: float) -> np.ndarray:
        return 2 * math.pi * freq * speed * t + phase

    def sides(value_side: np.ndarray, value_other: np.ndarray, prefix: str) -> None:
        a[f"{prefix}_l" if side == _LEFT else f"{prefix}_r"] = value_side
        a[f"{prefix}_r" if side == _LEFT else f"{prefix}_l"] = value_other

    if action in ("walk", "run"):
        running = action == "run"
        w = wave_of(1.4 if running else 0.9)
        swing = (0.6 if running else 0.35) * amp
        a["hf_l"], a["hf_r"] = swing * np.sin(w), -swing * np.sin(w)
        knee = 1.3 if running else 0.6
        a["kf_l"] = knee * amp * np.clip(-np.cos(w), 0, None)
        a["kf_r"] = knee * amp * np.clip(np.cos(w), 0, None)
        arm = (0.6 if running else 0.3) * amp
        a["sf_l"], a["sf_r"] = -arm * np.sin(w), arm * np.sin(w)
        if running:
            a["ef_l"] = a["ef_r"] = zero + 1.4
            a["lean"] = a["lean"] + 0.2
            a["lift"] = 0.06 * np.abs(np.sin(w))
        # slower than overground gait: a Kinect sees ~4 m of floor
        a["forward"] = (1.2 if running else 0.6) * speed * t
    elif action == "jump":
        w = wave_of(0.8)
        up, crouch = np.clip(np.sin(w), 0, None), np.clip(-np.sin(w), 0, None)
        a["hf_l"] = a["hf_r"] = 0.6 * crouch
        a["kf_l"] = a["kf_r"] = 1.1 * crouch
        a["lean"] = a["lean"] + 0.3 * crouch
        a["sf_l"] = a["sf_r"] = 2.2 * amp * up - 0.5 * crouch
        a["lift"] = 0.3 * amp * up
    elif action == "wave":
        w = wave_of(2.0)
        sides(zero + 2.4 + rng.normal(0, 0.1), a["sa_l" if side == _RIGHT else "sa_r"], "sa")
        sides(0.7 + 0.5 * amp * np.sin(w), a["ef_l" if side == _RIGHT else "ef_r"], "ef")
    elif action == "squat":
        d = 0.5 * (1 - np.cos(wave_of(0.5))) * amp
        a["hf_l"] = a["hf_r"] = 1.3 * d
        a["kf_l"] = a["kf_r"] = 2.2 * d
        a["lean"] = a["lean"] + 0.5 * d
        a["sf_l"] = a["sf_r"] = 1.4 * d
    elif action == "punch":
        w = wave_of(1.0)
        ext_l, ext_r = np.clip(np.sin(w), 0, None) ** 2, np.clip(-np.sin(w), 0, None) ** 2
        a["sf_l"], a["sf_r"] = 0.9 + 0.7 * amp * ext_l, 0.9 + 0.7 * amp * ext_r
        a["ef_l"], a["ef_r"] = 2.0 * (1 - ext_l), 2.0 * (1 - ext_r)
        a["sa_l"] = a["sa_r"] = zero + 0.3
    elif action == "kick":
        e = np.clip(np.sin(wave_of(0.7)), 0, None)
        sides(1.4 * amp * e**2, zero.copy(), "hf")
        sides(1.6 * np.sin(math.pi * e) * (1 - e) + 0.1, zero.copy(), "kf")
        a["sf_l"] = a["sf_r"] = zero + 0.6
        a["ef_l"] = a["ef_r"] = zero + 1.5
    elif action in ("sit_down", "stand_up"):
        start, duration = rng.uniform(0, 0.35) * t[-1], rng.uniform(0.8, 1.6) / speed
        u = np.clip((t - start) / duration, 0, 1)
        u = u * u * (3 - 2 * u)  # smoothstep: starts and ends at rest
        if action == "stand_up":
            u = 1 - u
        a["hf_l"] = a["hf_r"] = 1.5 * u
        a["kf_l"] = a["kf_r"] = 1.5 * u
        # leaning forward while the weight moves over the feet, then sitting upright
        a["lean"] = a["lean"] + 0.6 * np.sin(math.pi * u) + 0.1 * u
        a["sf_l"] = a["sf_r"] = 0.4 * u
        a["forward"] = -0.15 * u
    elif action == "arm_circles":
        w = wave_of(1.0)
        a["sa_l"] = a["sa_r"] = 1.5 + 0.4 * amp * np.sin(w)
        a["sf_l"] = a["sf_r"] = 0.4 * amp * np.cos(w)
        a["ef_l"] = a["ef_r"] = zero + 0.1
    elif action == "jumping_jacks":
        w = wave_of(0.9)
        o = 0.5 * (1 - np.cos(w))
        a["sa_l"] = a["sa_r"] = 0.2 + 2.5 * amp * o
        a["ha_l"] = a["ha_r"] = 0.05 + 0.35 * amp * o
        a["lift"] = 0.08 * np.abs(np.sin(w))
    elif action == "clap":
        o = 0.5 * (1 + np.cos(wave_of(1.5)))
        a["sf_l"] = a["sf_r"] = zero + 1.45 + rng.normal(0, 0.1)
        a["sa_l"] = a["sa_r"] = -0.3 + 1.0 * amp * o  # after a forward flexion, abduction opens the arms sideways
        a["ef_l"] = a["ef_r"] = zero + 0.3
    elif action == "march":  # walking in place with high knees: the gait of "walk" without moving forward
        w = wave_of(0.9)
        a["hf_l"], a["hf_r"] = 0.9 * amp * np.clip(np.sin(w), 0, None), 0.9 * amp * np.clip(-np.sin(w), 0, None)
        a["kf_l"], a["kf_r"] = 1.6 * a["hf_l"], 1.6 * a["hf_r"]
        a["sf_l"], a["sf_r"] = -0.4 * amp * np.sin(w), 0.4 * amp * np.sin(w)
    elif action == "wave_both":
        w = wave_of(2.0)
        a["sa_l"] = a["sa_r"] = zero + 2.4 + rng.normal(0, 0.1)
        a["ef_l"], a["ef_r"] = 0.7 + 0.5 * amp * np.sin(w), 0.7 - 0.5 * amp * np.sin(w)
    elif action == "hop":  # one leg held up, bouncing on the other
        w = wave_of(1.2)
        sides(zero + 0.5 + rng.normal(0, 0.05), zero.copy(), "hf")
        sides(zero + 1.4 + rng.normal(0, 0.1), 0.4 * np.clip(-np.sin(w), 0, None), "kf")
        a["lift"] = 0.12 * amp * np.clip(np.sin(w), 0, None)
        a["sa_l"] = a["sa_r"] = zero + 0.4
    elif action in ("point", "drink", "phone_call", "salute"):
        # one arm brought to a pose and held (point, phone call, salute) or brought up and down (drink)
        start, duration = rng.uniform(0, 0.3) * t[-1], rng.uniform(0.4, 0.8) / speed
        u = np.clip((t - start) / duration, 0, 1)
        u = u * u * (3 - 2 * u)
        if action == "drink":
            u = 0.5 * (1 - np.cos(wave_of(0.5)))
        pose = {  # shoulder flexion, shoulder abduction, elbow flexion of the held pose
            "point": (1.5, 0.1, 0.05), "drink": (1.2, 0.1, 2.2), "phone_call": (1.0, 0.45, 2.3), "salute": (0.9, 0.8, 2.0),
        }[action]  # fmt: skip
        arm = "l" if side == _LEFT else "r"
        a[f"sf_{arm}"] = a[f"sf_{arm}"] + u * (pose[0] * rng.uniform(0.9, 1.1) - a[f"sf_{arm}"])
        a[f"sa_{arm}"] = a[f"sa_{arm}"] + u * (pose[1] * rng.uniform(0.9, 1.1) - a[f"sa_{arm}"])
        a[f"ef_{arm}"] = a[f"ef_{arm}"] + u * (pose[2] * rng.uniform(0.95, 1.05) - a[f"ef_{arm}"])
    elif action == "throw":  # one arm wound up overhead, then whipped forward, body leaning into the release
        start, duration = rng.uniform(0, 0.4) * t[-1], rng.uniform(0.6, 1.0) / speed
        u = np.clip((t - start) / duration, 0, 1)
        wind_up, release = np.clip(2 * u, 0, 1), np.clip(2 * u - 1, 0, 1)
        sides(0.2 + 2.6 * wind_up - 2.0 * release ** 0.5, a["sf_l" if side == _RIGHT else "sf_r"], "sf")
        sides(zero + 0.3, a["sa_l" if side == _RIGHT else "sa_r"], "sa")
        sides(1.6 * wind_up * (1 - release), a["ef_l" if side == _RIGHT else "ef_r"], "ef")
        a["lean"] = a["lean"] - 0.15 * wind_up * (1 - release) + 0.35 * amp * release
    elif action == "bow":  # bending forward at the hips, arms hanging: "squat" without bending the knees
        d = 0.5 * (1 - np.cos(wave_of(0.5))) * amp
        a["lean"] = a["lean"] + 0.9 * d
        a["sf_l"] = a["sf_r"] = 0.9 * d
    else:
        raise ValueError(f"unknown action {action!r}; valid: {', '.join(ACTION_SETS['fine'])}")
    return a


def _forward_kinematics(a: dict[str, np.ndarray], height: float, proportions: dict[str, float]) -> np.ndarray:
    """Joint positions [T, 25, 3] (NTU order) in the body frame: pelvis over the origin, y up, z forward."""
    s = {k: v * height * proportions.get(k, 1.0) for k, v in _SEGMENTS.items()}
    num_frames = a["lean"].shape[0]
    j = np.zeros((num_frames, 25, 3))
    up = np.array([0.0, 1.0, 0.0])
    # upper body upright relative to the pelvis; the lean rotates it about the pelvis afterwards
    j[:, 1] = up * s["spine_low"]
    j[:, 20] = up * (s["spine_low"] + s["spine_high"])
    j[:, 2] = j[:, 20] + up * s["neck"]
    j[:, 3] = j[:, 2] + up * s["head"]
    for side, sh, el, wr, ha, tip, th, tag in ((_LEFT, 4, 5, 6, 7, 21, 22, "l"), (_RIGHT, 8, 9, 10, 11, 23, 24, "r")):
        j[:, sh] = j[:, 20] + np.array([side * s["shoulder_w"], -0.02 * height, 0.0])
        upper = _limb_direction(a[f"sf_{tag}"], a[f"sa_{tag}"], side)
        fore = _limb_direction(a[f"sf_{tag}"] + a[f"ef_{tag}"], a[f"sa_{tag}"], side)
        j[:, el] = j[:, sh] + s["upper_arm"] * upper
        j[:, wr] = j[:, el] + s["forearm"] * fore
        j[:, ha] = j[:, wr] + s["hand"] * fore
        j[:, tip] = j[:, ha] + s["hand_tip"] * fore
        inward = np.array([-side * 0.6, 0.0, 0.4])
        thumb = fore + inward
        j[:, th] = j[:, wr] + s["thumb"] * thumb / np.linalg.norm(thumb, axis=-1, keepdims=True)
    lean = a["lean"][:, None]
    y, z = j[:, 1:, 1].copy(), j[:, 1:, 2].copy()  # forward lean: rotation about the left-right axis
    upper_rows = [k for k in range(1, 25) if k in (1, 2, 3, 20) or 4 <= k <= 11 or k >= 21]
    rows = [k - 1 for k in upper_rows]
    j[:, upper_rows, 1] = np.cos(lean) * y[:, rows] - np.sin(lean) * z[:, rows]
    j[:, upper_rows, 2] = np.sin(lean) * y[:, rows] + np.cos(lean) * z[:, rows]
    leg_heights = []
    for side, hip, knee, ankle, foot, tag in ((_LEFT, 12, 13, 14, 15, "l"), (_RIGHT, 16, 17, 18, 19, "r")):
        j[:, hip] = np.array([side * s["hip_w"], -s["hip_drop"], 0.0])
        thigh = _limb_direction(a[f"hf_{tag}"], a[f"ha_{tag}"], side)
        shin = _limb_direction(a[f"hf_{tag}"] - a[f"kf_{tag}"], a[f"ha_{tag}"], side)
        j[:, knee] = j[:, hip] + s["thigh"] * thigh
        j[:, ankle] = j[:, knee] + s["shin"] * shin
        j[:, foot] = j[:, ankle] + s["foot"] * _limb_direction(a[f"hf_{tag}"] - a[f"kf_{tag}"] + math.pi / 2, 0.0, side)
        leg_heights.append(-j[:, ankle, 1])
    # the longer (stance) leg stands on the floor; lift adds flight or bounce
    pelvis_y = np.maximum(*leg_heights) + s["ankle_h"] + a["lift"]
    j[:, :, 1] += pelvis_y[:, None]
    j[:, :, 2] += a["forward"][:, None]
    return j


def _rotation(yaw: float, pitch: float) -> np.ndarray:
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    r_yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    r_pitch = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    return r_pitch @ r_yaw


def _action_set(actions: str) -> tuple[str, ...]:
    if actions not in ACTION_SETS:
        raise ValueError(f"unknown action set {actions!r}; valid: {', '.join(ACTION_SETS)}")
    return ACTION_SETS[actions]


def generate_sample(action: int, rng: np.random.Generator, max_frames: int = 64, actions: str = "basic") -> np.ndarray:
    """One NTU-format sample ``float32 [3, max_frames, 25, 1]`` of action index ``action`` of the set ``actions``
    (zero-padded in time)."""
    names = _action_set(actions)
    if not 0 <= action < len(names):
        raise ValueError(f"action index {action} out of range 0..{len(names) - 1}")
    length = int(rng.integers(max(8, int(0.6 * max_frames)), max_frames + 1))
    t = np.arange(length) / FPS * (64 / max_frames)  # ~1.3–2.1 s of motion (NTU clips: ~2–3 s) at any max_frames
    height = rng.uniform(1.45, 1.95)
    proportions = {k: rng.uniform(0.92, 1.08) for k in _SEGMENTS}
    joints = _forward_kinematics(_angles(names[action], t, rng), height, proportions)
    joints[:, :, 1] -= 0.55 * height  # camera at chest height
    joints = joints @ _rotation(rng.uniform(-math.pi, math.pi), rng.uniform(-0.17, 0.17)).T
    joints += np.array([rng.normal(0, 0.3), rng.normal(0, 0.1), rng.uniform(2.5, 3.8)])
    joints += rng.normal(0, rng.uniform(0.005, 0.03), joints.shape)
    # dropped joints: Kinect writes zeros for joints it lost
    joints[rng.random(joints.shape[:2]) < rng.uniform(0, 0.08)] = 0.0
    if rng.random() < 0.3:  # one body part occluded for a while
        layout = get_layout("ntu25")
        part = layout.parts[str(rng.choice(list(layout.parts)))]
        start = int(rng.integers(0, length))
        joints[start : start + int(rng.integers(8, 25)), list(part)] = 0.0
    out = np.zeros((3, max_frames, 25, 1), dtype=np.float32)
    out[:, :length, :, 0] = joints.transpose(2, 0, 1)
    return out


def generate_actions(
    num_samples: int, seed: int = 0, max_frames: int = 64, num_persons: int = 2, actions: str = "basic"
) -> tuple[np.ndarray, np.ndarray]:
    """``(float32 [N, 3, max_frames, 25, num_persons], int64 [N])``: balanced classes of the action set ``actions``
    (``ACTION_SETS``: "basic", 12 actions; "fine", those and 9 near neighbours) in shuffled order, one performer per
    sample (other person slots zero, as in NTU's single-person actions). Same seed, same data."""
    names = _action_set(actions)
    if num_samples < 1 or max_frames < 8 or num_persons < 1:
        raise ValueError(f"need num_samples >= 1, max_frames >= 8, num_persons >= 1; got {num_samples}, {max_frames}, {num_persons}")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(num_samples) % len(names)).astype(np.int64)
    data = np.zeros((num_samples, 3, max_frames, 25, num_persons), dtype=np.float32)
    for i, label in enumerate(labels):
        data[i, ..., :1] = generate_sample(int(label), rng, max_frames, actions)
    return data, labels


def write_actions_dataset(
    directory: str | Path,
    train: int = 4000,
    test: int = 1000,
    seed: int = 0,
    max_frames: int = 64,
    num_persons: int = 2,
    actions: str = "basic",
) -> Path:
    """Write a generated data set in the NTU/mmskeleton layout: ``{train,test}_data.npy`` (N, 3, T, 25, M) and
    ``{train,test}_label.pkl`` (sample names, labels), plus ``classes.json``. Train and test use disjoint seeds."""
    from zoo.data.skeleton import write_ntu_split

    names = _action_set(actions)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for split, count, split_seed in (("train", train, seed), ("test", test, seed + 1_000_003)):
        data, labels = generate_actions(count, split_seed, max_frames, num_persons, actions)
        write_ntu_split(directory, split, data, labels)
    (directory / "classes.json").write_text(json.dumps(list(names)))
    return directory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="zoo data build skeleton-actions", description=__doc__.split("\n\n")[0])
    parser.add_argument("directory")
    parser.add_argument("--train", type=int, default=4000, help="training samples (default 4000)")
    parser.add_argument("--test", type=int, default=1000, help="test samples (default 1000)")
    parser.add_argument("--frames", type=int, default=64, help="frames per sample, zero-padded (default 64)")
    parser.add_argument("--persons", type=int, default=2, help="person slots M (default 2, as NTU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--actions", choices=list(ACTION_SETS), default="basic",
        help="basic: 12 distinct actions (default); fine: those and 9 near neighbours of them (21 classes)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    out = write_actions_dataset(args.directory, args.train, args.test, args.seed, args.frames, args.persons, args.actions)
    print(f"wrote {args.train} train + {args.test} test samples of {len(ACTION_SETS[args.actions])} actions to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
