"""The original system's checkpoints (every layout variant) load, compute the original networks'
function, and are fed what the original pipeline fed them; what cannot drive is refused.

The files are built from the reference's facts in tests/original_system.py (torch.save of plain
dicts, not our writer), and so are the original forward passes, image pipeline and vector state.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from td3_core.checkpoint import (
    CheckpointError,
    load_checkpoint_file,
    load_policy,
    unify_original_system,
    validate_policy,
    validate_training_state,
)
from td3_core.networks import build_critic
from td3_core.observation import ObservationBuilder
from td3_core.preprocessing import scale_frames
from td3_core.route import Route
from td3_core.vector_state import build_vector_state

from . import original_system as original

REAL_A = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "av_td3_system" / "td3_scenario_0_step_5000.pth"
)
ATOL = 1e-5
GREY_LEVEL = 2.0 / 255.0  # one grey level in [-1, 1]


def _write(tmp_path: Path, variant: str, seed: int = 0) -> tuple[Path, dict]:
    ckpt = original.checkpoint(variant, seed)
    path = tmp_path / f"original_{variant}.pth"
    torch.save(ckpt, path)
    return path, ckpt


def _inputs(batch: int, vector_dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (batch, 4, 84, 84), generator=g, dtype=torch.uint8)
    return frames, torch.randn((batch, vector_dim), generator=g)


# C1 (ReLU) has C2's keys and shapes and is read as C2 (test_c1_is_read_as_c2_and_says_so).
@pytest.mark.parametrize("variant", [v for v in original.VARIANTS if v != "C1"])
def test_action_equals_the_original_forward_pass(tmp_path: Path, variant: str):
    path, ckpt = _write(tmp_path, variant)
    policy, meta = load_policy(path)
    arch = meta.architecture
    assert arch.state_dim == original.state_dim(variant)
    assert arch.input_range == "symmetric" and arch.cnn_layer_norm == (variant in original.LAYER_NORM)
    frames, vector = _inputs(6, arch.vector_dim, seed=3)
    with torch.no_grad():
        ours = policy(frames, vector)
        theirs = original.policy_forward(ckpt, variant, (frames.float() / 255.0 - 0.5) / 0.5, vector)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=ATOL, rtol=0)
    assert float(ours.std(dim=0).min()) > 1e-3, "actions do not depend on the inputs: comparison is vacuous"


@pytest.mark.parametrize("variant", original.VARIANTS)
def test_critic_equals_the_original_and_the_file_resumes(tmp_path: Path, variant: str):
    path, ckpt = _write(tmp_path, variant, seed=1)
    unified = load_checkpoint_file(path)
    meta = validate_training_state(unified, path)
    critic = build_critic(meta.architecture)
    critic.load_state_dict(unified["critic_state_dict"])
    g = torch.Generator().manual_seed(5)
    state, action = torch.randn((5, meta.architecture.state_dim), generator=g), torch.rand((5, 2), generator=g) * 2 - 1
    with torch.no_grad():
        q1, q2 = critic(state, action)
    for ours, head in ((q1, "Q1"), (q2, "Q2")):
        expected = original.q_forward(ckpt["critic_state_dict"], state, action, head)
        np.testing.assert_allclose(ours.numpy(), expected.numpy(), atol=ATOL, rtol=0)
    # Targets start as the online networks; the record says which variant and how it was mapped.
    for key in ("actor_cnn", "critic_cnn", "actor", "critic"):
        online, target = unified[f"{key}_state_dict"], unified[f"{key}_target_state_dict"]
        assert all(torch.equal(online[k], target[k]) for k in online)
    expected_variant = "C2" if variant == "C1" else variant
    assert unified["original_system"]["variant"] == expected_variant
    assert unified["total_it"] == ckpt["total_it"]


def test_c1_is_read_as_c2_and_says_so(tmp_path: Path):
    path, _ = _write(tmp_path, "C1")
    note = load_checkpoint_file(path)["original_system"]
    assert note["variant"] == "C2" and "C1 (ReLU)" in note["assumed"]


@pytest.mark.parametrize("variant", ["C3", "C6", "B"])
def test_optimizer_moments_follow_their_parameters(tmp_path: Path, variant: str):
    path, ckpt = _write(tmp_path, variant, seed=2)
    unified = load_checkpoint_file(path)
    names = original.cnn_names(variant)
    n_mlp = {"actor": 6, "critic": 12}
    for role in ("actor", "critic"):
        ours_cnn = unified[f"{role}_cnn_optimizer_state_dict"]
        ours_mlp = unified[f"{role}_optimizer_state_dict"]
        if variant in original.FOLDED:
            theirs = ckpt[f"{role}_optimizer_state_dict"]["state"]
            cnn_ids = [n_mlp[role] + i for i in range(len(names))]
        elif variant == "B":
            if role == "actor":
                assert ours_cnn["state"] == {}  # the shared CNN's moments went to the critic CNN
                continue
            theirs, cnn_ids = ckpt["cnn_optimizer_state_dict"]["state"], list(range(len(names)))
        else:
            theirs, cnn_ids = ckpt[f"{role}_cnn_optimizer_state_dict"]["state"], list(range(len(names)))
        for ours_id, their_id in enumerate(cnn_ids):
            for key in ("exp_avg", "exp_avg_sq", "step"):
                assert torch.equal(ours_cnn["state"][ours_id][key], theirs[their_id][key])
            assert ours_cnn["state"][ours_id]["exp_avg"].shape == original.CNN_SHAPES[names[ours_id]]
        mlp_source = ckpt[f"{role}_optimizer_state_dict"]["state"]
        for i in range(n_mlp[role]):
            assert torch.equal(ours_mlp["state"][i]["exp_avg"], mlp_source[i]["exp_avg"])
        assert ours_mlp["param_groups"][0]["params"] == list(range(n_mlp[role]))
    if variant == "C6":
        assert unified["actor_optimizer_state_dict"]["param_groups"][0]["weight_decay"] == 1e-4


def test_variant_a_is_refused_with_what_it_holds(tmp_path: Path):
    path = tmp_path / "a.pth"
    torch.save(original.checkpoint("A"), path)
    with pytest.raises(CheckpointError, match=r"variant A.*no CNN.*state of 535.*cannot drive from camera pixels"):
        load_policy(path)


def test_cnn_saved_as_none_is_refused(tmp_path: Path):
    ckpt = original.checkpoint("C6")
    ckpt["actor_cnn_state_dict"] = ckpt["critic_cnn_state_dict"] = None
    path = tmp_path / "none.pth"
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=r"CNN entries that are None.*cannot drive from camera pixels"):
        load_policy(path)


@pytest.mark.skipif(not REAL_A.is_file(), reason="../shared/data/av_td3_system is not here")
def test_the_real_variant_a_file_is_refused():
    with pytest.raises(CheckpointError) as error:
        load_policy(REAL_A)
    message = str(error.value)
    for part in (
        "av_td3_system",
        "variant A",
        "no CNN",
        "state of 535",
        "[256, 535]",
        "cannot drive from camera pixels",
    ):
        assert part in message, message


# --------------------------------------------------------------------------- input pipeline


def _bgra(seed: int, width: int = 256, height: int = 144) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([(xx * 255 // width + 40 * c + yy) % 256 for c in range(3)], axis=-1)
    pixels = (base + rng.integers(0, 60, (height, width, 3))) % 256
    alpha = rng.integers(0, 256, (height, width, 1))
    return np.concatenate([pixels, alpha], axis=-1).astype(np.uint8)


def _image_msg(bgra: np.ndarray) -> SimpleNamespace:
    height, width, _ = bgra.shape
    return SimpleNamespace(
        encoding="bgra8", height=height, width=width, step=width * 4, data=bgra.tobytes(), is_bigendian=0
    )


@pytest.mark.parametrize("variant", ["B", "C6"])
def test_frames_equal_the_original_pipeline_within_one_grey_level(tmp_path: Path, variant: str):
    _, meta = load_policy(_write(tmp_path, variant)[0])
    builder = ObservationBuilder(meta.preprocess, meta.observation)
    stack = original.ImageStack()
    worst = 0.0
    for step in range(6):  # the episode start (zero-filled stack) and a full stack
        bgra = _bgra(step)
        ours = scale_frames(
            torch.from_numpy(builder.push_image(_image_msg(bgra))), input_range=meta.architecture.input_range
        )
        theirs = stack.push(original.preprocess_frame(bgra))
        worst = max(worst, float(np.abs(ours.numpy() - theirs).max()))
    assert worst <= GREY_LEVEL + 1e-6, f"{worst * 127.5:.2f} grey levels apart"


def _route() -> np.ndarray:
    """A curving road in ROS map coordinates, points ~3.1 m apart (the original's waypoint file)."""
    s = np.arange(0.0, 160.0, 3.1)
    return np.stack([s, 12.0 * np.sin(s / 25.0)], axis=1)


@pytest.mark.parametrize("variant", ["C2", "C3", "C6"])
def test_vector_equals_the_original_for_the_same_pose_and_route(tmp_path: Path, variant: str):
    _, meta = load_policy(_write(tmp_path, variant)[0])
    points = _route()
    route = Route(points)
    # The original works in CARLA coordinates: y and yaw change sign (carla-ros-bridge's conversion).
    manager = original.WaypointManager(points * [1.0, -1.0], meta.observation.num_waypoints, modern=variant == "C6")
    compared = steps = 0
    for step in range(330):
        s = 0.5 * step
        x = s
        y = 12.0 * math.sin(s / 25.0) + 0.8 * math.sin(step / 13.0)
        yaw = math.atan(12.0 / 25.0 * math.cos(s / 25.0)) + 0.1 * math.sin(step / 7.0)
        speed = 6.0 + math.sin(step / 11.0)
        index_before = manager.current_waypoint_idx
        theirs = original.observation_vector(manager, x, -y, -math.degrees(yaw), speed)
        ours, _ = build_vector_state(x, y, yaw, speed, route, meta.observation)
        if step < 12:  # the original's index starts at 0 and catches up one waypoint per step
            continue
        steps += 1
        np.testing.assert_allclose(ours[3:], theirs[3:], atol=ATOL, rtol=0, err_msg=f"waypoints at step {step}")
        np.testing.assert_allclose(ours[0], theirs[0], atol=ATOL)
        if variant == "C6" or manager.current_waypoint_idx == index_before:
            # The older code computes lateral and heading before advancing its index (one step late).
            np.testing.assert_allclose(ours[1:3], theirs[1:3], atol=ATOL, rtol=0, err_msg=f"step {step}")
            compared += 1
    assert compared >= 0.6 * steps
    assert (ours[3:] == 0).sum() >= 4, "the route end (zero slots) was never reached: the test is vacuous"


def _mutations() -> list[tuple[str, object]]:
    """(what, how) pairs: a key removed, a tensor of another shape or rank or dtype, a non-tensor, None."""
    out: list[tuple[str, object]] = []
    bad = ("drop", torch.zeros(3), "text", torch.zeros(2, 2, dtype=torch.int64), torch.zeros(0, 7))
    for what in ("actor_cnn_state_dict.conv1.weight", "actor_cnn_state_dict.fc.weight", "actor_state_dict.fc1.weight"):
        out += [(what, how) for how in bad]
    out += [("critic_cnn_state_dict.ln1.weight", "drop"), ("critic_state_dict.Q1.fc1.weight", torch.zeros(3))]
    for key in ("actor_cnn_state_dict", "critic_state_dict", "actor_state_dict"):
        out += [(key, None), (key, [1, 2])]
    for key in ("actor_optimizer_state_dict", "total_it"):
        out += [(key, None), (key, {"param_groups": "x"}), (key, -3)]
    return out


@pytest.mark.parametrize("what,how", _mutations(), ids=lambda v: str(v)[:40])
def test_damaged_original_files_are_refused_or_loaded_never_crash(what: str, how: object):
    ckpt = original.checkpoint("C6", seed=7)
    key, _, name = what.partition(".")
    target, slot = (ckpt[key], name) if name else (ckpt, key)
    if how == "drop":
        target.pop(slot)
    else:
        target[slot] = how
    path = Path("damaged.pth")
    try:
        unified = unify_original_system(ckpt, path)
        validate_policy(unified, path)
        validate_training_state(unified, path)
    except CheckpointError as error:
        assert "damaged.pth" in str(error)
