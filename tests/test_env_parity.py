"""The two environments of the training loop are one: for the same seeds and the same actions,
RosEnv over the simulator node (its own process, real DDS, events a tick late like the bridge)
and SimEnv (SimWorld in process) give the same observations, rewards and episode ends, step by
step."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from td3_bringup.graph import file_parameters
from td3_bringup.observer import BackgroundNode
from td3_sim import node as sim_node
from td3_trainer.env_client import RosEnv
from td3_trainer.environment import Environment, Step
from td3_trainer.params import validate
from td3_trainer.sim_env import SimEnv

from .test_trainer_e2e import CONFIG, FAST_TRAINER, HANG_GUARD_S, SIMULATOR, simulator

EPISODES = 3
STEPS = 100
# The speed from the odometry twist: the speedometer (std_msgs/Float32, as the bridge's) has no
# stamp, so RosEnv cannot match it to its tick and, when it comes after the image and the
# odometry, reads the previous tick's value (a known difference between the two environments).
# No re-sent command on a slow tick (each one would make an extra tick): a long frame timeout.
TRAINER = {
    **FAST_TRAINER,
    "max_episode_steps": STEPS,
    "start_pose_spacing_m": 15.0,
    "use_speedometer": False,
    "frame_timeout_s": 60.0,
    "action.speed_limit_mps": 6.0,  # the limiter, reached within the episodes, reads the same speed in both
}


def _episode(env: Environment, actions: np.ndarray) -> tuple[np.ndarray, list[Step]]:
    """The first frames of an episode and its completed steps, driven by `actions` (until the
    episode ends or they run out)."""
    first = env.reset(-1)
    assert first is not None
    steps: list[Step] = []
    for action in actions:
        env.send(action)
        received = env.receive()
        assert received is not None
        if received.finished is not None:
            steps.append(received.finished)
            if received.finished.done:
                return first.frames, steps
    last = env.flush()
    if last is not None:
        steps.append(last)
    return first.frames, steps


def _summary(step: Step) -> tuple:
    return (step.terminated, step.truncated, step.continuity_lost, step.info["reason"], step.info["episode_steps"])


def test_ros_and_in_process_environments_agree_step_by_step(tmp_path: Path):
    params = validate(file_parameters(CONFIG / "trainer.yaml", "td3_trainer") | TRAINER)
    sim_params = sim_node.validate(file_parameters(CONFIG / "simulator.yaml", "carla_simulator") | SIMULATOR)
    local = SimEnv(sim_params.sim, params)
    rng = np.random.default_rng(7)
    # Forward, with random steering held for 10 steps: episodes that drive and leave the road.
    plans = [
        np.stack([np.repeat(rng.uniform(-1.0, 1.0, STEPS // 10), 10), rng.uniform(0.5, 1.0, STEPS)], axis=1).astype(
            np.float32
        )
        for _ in range(EPISODES)
    ]
    ends = set()
    top_speed = 0.0
    # One tick per command and none on its own (the bridge's 1 s wait would tick under load):
    # the same actions make the same ticks.
    with simulator(tmp_path, {"command_wait_timeout_s": 0.0}), BackgroundNode("parity_trainer") as ros:
        remote = RosEnv(ros.node, params, threading.Event())
        # The simulator's start-up frame and route in first: a frame from before our first command
        # would be taken as its answer, and every later tick would come one command late.
        deadline = time.monotonic() + HANG_GUARD_S
        while remote.ticks.route() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        for k, actions in enumerate(plans):
            local_first, local_steps = _episode(local, actions)
            remote_first, remote_steps = _episode(remote, actions)
            np.testing.assert_array_equal(local_first, remote_first, err_msg=f"episode {k}: first frames")
            assert [_summary(s) for s in local_steps] == [_summary(s) for s in remote_steps], f"episode {k}"
            for t, (a, b) in enumerate(zip(local_steps, remote_steps, strict=True)):
                where = f"episode {k} step {t}"
                np.testing.assert_array_equal(a.observation.frames, b.observation.frames, err_msg=where)
                np.testing.assert_allclose(a.observation.vector, b.observation.vector, atol=1e-5, err_msg=where)
                assert abs(a.reward - b.reward) <= 1e-4 * max(1.0, abs(a.reward)), (where, a.reward, b.reward)
                assert a.observation.collisions == b.observation.collisions, where
            ends.add(local_steps[-1].info["reason"])
            top_speed = max([top_speed, *(s.observation.speed for s in local_steps)])
        remote.brake()
    assert ends - {"step_limit"}, f"no episode ended by the road or a collision: {ends}"
    # The odometry's speed is the car centre's, which slides sideways in a turn: a few percent above
    # the rear axle's speed the limiter's throttle controls, when the steering swings.
    assert 5.0 < top_speed <= 6.0 * 1.03, f"the speed limiter was not reached, or not held: {top_speed:.2f} m/s"
