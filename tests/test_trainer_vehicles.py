"""One trainer fed by two vehicles: in one simulated world, and in two simulator processes.

Real processes over DDS, tiny budgets. The trainer's replay buffer (saved next to the
checkpoint) holds transitions of both vehicles, each stream with its own episode starts; the
simulator's ground truth shows every teleport of one vehicle leaving the other driving on; a
run resumes from the checkpoint with both vehicles and both streams.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
import torch

from td3_bringup.graph import simulation_graph, simulator_node, trainer_node
from td3_bringup.runner import node_command
from td3_core.checkpoint import load_checkpoint_file, read_latest_pointer
from td3_sim import ground_truth
from td3_trainer.checkpointing import replay_path

from .processes import node_process
from .test_trainer_e2e import CONFIG, FAST_TRAINER, SIMULATOR, only_run_dir, tail, wait_exit

pytestmark = [pytest.mark.ros, pytest.mark.slow]
ROLES = ("car_a", "car_b")
TRAINER = {
    **FAST_TRAINER,
    "role_name": ",".join(ROLES),
    "max_episode_steps": 25,  # several episodes, so several resets of each vehicle
    "learning_starts": 40,
    "batch_size": 16,
    "tensorboard": False,
    "save_replay_buffer": True,
}


def _train(tmp_path: Path, sims: list, overrides: dict, name: str) -> str:
    log = tmp_path / f"{name}.log"
    params = {"models_dir": str(tmp_path / "models"), "log_dir": str(tmp_path / "runs"), **TRAINER, **overrides}
    with contextlib.ExitStack() as stack:
        for spec in sims:
            stack.enter_context(node_process(node_command(spec)[1:], tmp_path / f"{name}_{spec.name}.log"))
        proc = stack.enter_context(node_process(node_command(trainer_node(CONFIG, params))[1:], log))
        code = wait_exit(proc, log)
    text = tail(log, 200_000)
    assert code == 0, text[-5000:]
    assert "Traceback" not in text, text[-5000:]
    return text


def _streams(models: Path) -> tuple[dict, list[dict]]:
    latest = read_latest_pointer(only_run_dir(models))
    assert latest is not None
    replay = torch.load(replay_path(latest), weights_only=True)
    return load_checkpoint_file(latest), replay["state"]["streams"]


def _check_streams(streams: list[dict], log: str = "") -> None:
    assert len(streams) == 2
    for role, stream in zip(ROLES, streams, strict=True):
        used = min(int(stream["added"]), int(stream["capacity"]))
        assert used > 10, (
            f"{role}: {used} transitions\n"
            + "\n".join(line for line in log.splitlines() if role in line or "WARN" in line)[-5000:]
        )
        depth = stream["depth"][:used]
        starts = int((depth == 0).sum())  # the first transition of each episode (segment) of this vehicle
        assert starts >= 2, f"{role}: {starts} episode starts"


def test_one_learner_from_two_vehicles_in_one_world_and_resume(tmp_path: Path):
    truth = tmp_path / "truth.jsonl"
    sim = simulator_node(
        CONFIG, sync=True, overrides={**SIMULATOR, "role_name": ",".join(ROLES), "ground_truth_log": str(truth)}
    )
    text = _train(tmp_path, [sim], {"total_steps": 160}, "first")
    assert "camera /carla/car_a/rgb_front/image, /carla/car_b/rgb_front/image" in text
    checkpoint, streams = _streams(tmp_path / "models")
    assert checkpoint["extra"]["env_steps"] >= 160
    assert checkpoint["total_it"] > 0
    _check_streams(streams)

    # A reset (teleport) of one vehicle leaves the other driving: every jump of a vehicle comes
    # with a set_transform of that vehicle, and the other moves on smoothly in that tick.
    records = ground_truth.read(truth)
    ticks = {role: [r for r in records if r["kind"] == "tick" and r["role"] == role] for role in ROLES}
    teleports = {
        role: {r["frame"] for r in records if r["kind"] == "set_transform" and r["role"] == role} for role in ROLES
    }
    assert all(teleports.values()), teleports
    for role, other in (ROLES, ROLES[::-1]):
        by_frame = {t["frame"]: t for t in ticks[role]}
        jumps = [
            t["frame"]
            for t in ticks[role][1:]
            if t["frame"] - 1 in by_frame
            and np.hypot(t["x"] - by_frame[t["frame"] - 1]["x"], t["y"] - by_frame[t["frame"] - 1]["y"]) > 2.0
        ]
        assert jumps, f"{role} never reset"
        for frame in jumps:  # its own teleport, requested in the tick before
            assert any(frame - 3 <= f <= frame for f in teleports[role]), (role, frame)
        others = {t["frame"]: t for t in ticks[other]}
        for frame in jumps:
            if frame in others and frame - 1 in others and not any(frame - 3 <= f <= frame for f in teleports[other]):
                step = np.hypot(
                    others[frame]["x"] - others[frame - 1]["x"], others[frame]["y"] - others[frame - 1]["y"]
                )
                assert step < 2.0, f"{other} jumped with {role}'s reset at frame {frame}"

    # Resume: both vehicles again, both streams restored.
    text = _train(tmp_path, [sim], {"total_steps": 220, "resume": "latest"}, "resumed")
    assert "replay buffer restored" in text, text[-4000:]
    checkpoint, streams = _streams(tmp_path / "models")
    assert checkpoint["extra"]["env_steps"] >= 220
    _check_streams(streams)


def test_one_learner_from_two_simulator_processes(tmp_path: Path):
    sims = simulation_graph(CONFIG, True, {**SIMULATOR, "role_name": list(ROLES)}, (), processes=True)
    assert len(sims) == 2
    text = _train(tmp_path, sims, {"total_steps": 120}, "processes")
    assert "/carla/car_b/rgb_front/image" in text
    checkpoint, streams = _streams(tmp_path / "models")
    assert checkpoint["extra"]["env_steps"] >= 120
    _check_streams(streams, text)
