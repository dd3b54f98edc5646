"""Training against the bridge-like simulator exactly as CARLA users configure it (no reset
service): the car is put back by the trainer itself, checked on the simulator's ground truth."""

from __future__ import annotations

import ast
import itertools
import math
import re
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from td3_drive.msg import Episode

from td3_core.checkpoint import REPLAY_SUFFIX
from td3_sim import ground_truth
from td3_trainer.monitor import STATUS_NAME

from .processes import node_process
from .test_trainer_e2e import (
    Observer,
    simulator,
    tail,
    trainer_args,
    trainer_seen_then_simulator,
    wait_exit,
    wait_for_trainer_status,
    wait_until,
)

pytestmark = pytest.mark.ros

BUDGET = 300
EXTRA_THROTTLE = 0.123  # the value of a command that is not the trainer's
STANDING_MPS = 0.1
POSE_TOLERANCE_M = 1.0


def _is_reset_brake(command: dict) -> bool:
    return command["brake"] == 1.0 and command["throttle"] == 0.0 and command["steer"] == 0.0


def _episodes(records: list[dict]) -> list[dict]:
    """Per reset: where the car was last put, the routes and the first command of the episode after it
    (a set_transform sent again before any episode action is the same reset)."""
    episodes: list[dict] = []
    for i, record in enumerate(records):
        current = episodes[-1] if episodes else None
        if record["kind"] == "set_transform":
            if current is not None and current["start_index"] is None:
                current.update(transform=record, index=i)  # the same reset, sent again
            else:
                episodes.append({"transform": record, "index": i, "start_index": None, "routes": []})
        elif current is not None and record["kind"] == "route":
            current["routes"].append(record)
        elif current is not None and record["kind"] == "command" and current["start_index"] is None:
            current["start_index"] = None if _is_reset_brake(record) else i
    for k, episode in enumerate(episodes):
        episode["end_index"] = episodes[k + 1]["index"] if k + 1 < len(episodes) else len(records)
    return episodes


def _replay_buffer(tmp_path: Path) -> dict:
    replay = next((tmp_path / "models").rglob(f"*{REPLAY_SUFFIX}"))
    return torch.load(replay, weights_only=True)["state"]


def _stored_steps(records: list[dict], buffer: dict) -> list[tuple[int, int]]:
    """For each stored transition: the ground-truth index of its action's command and of the tick
    that command produced (actions are continuous: their values identify the command)."""
    command_at = {
        (round(r["steer"], 5), round(r["throttle"] - r["brake"], 5)): j
        for j, r in enumerate(records)
        if r["kind"] == "command"
    }
    steps = []
    for steer, accel in buffer["actions"].numpy():
        j = command_at.get((round(float(steer), 5), round(float(accel), 5)))
        assert j is not None, ("a stored action the simulator never got", steer, accel)
        steps.append((j, next(i for i in range(j, len(records)) if records[i]["kind"] == "tick")))
    return steps


def test_training_resets_through_the_bridge_interfaces(tmp_path: Path):
    truth_log = tmp_path / "ground_truth.jsonl"
    log = tmp_path / "trainer.log"
    overrides = {
        "total_steps": BUDGET,
        "checkpoint_every": 0,
        "max_episode_steps": 80,
        "learning_starts": 1000,  # random actions only: many crashes and off-road ends
        "save_replay_buffer": True,
        "tensorboard": False,
        "start_pose_spacing_m": 15.0,
    }
    assert "reset_service" not in overrides  # exactly as CARLA users are told: the default, no service
    sim = {"ground_truth_log": str(truth_log)}
    with Observer() as obs, trainer_seen_then_simulator(obs, tmp_path, overrides, log, sim) as proc:
        code = wait_exit(proc, log)
        time.sleep(0.5)
        with obs.lock:
            diagnostics = list(obs.diagnostics)
    text = tail(log, 20000)
    assert code == 0, text
    assert "Traceback" not in text

    records = ground_truth.read(truth_log)
    ticks = {r["stamp_ns"]: r for r in records if r["kind"] == "tick"}
    episodes = [e for e in _episodes(records) if e["start_index"] is not None]
    assert len(episodes) >= 3, f"only {len(episodes)} episodes\n{text}"

    ends = {"collision": 0, "off_road": 0}
    for k, episode in enumerate(episodes):
        start = records[episode["start_index"]]
        state = ticks[start["answers_ns"]]  # the frame the episode's first action answers
        target = episode["transform"]
        assert math.dist((state["x"], state["y"]), (target["x"], target["y"])) <= POSE_TOLERANCE_M, (k, state)
        assert state["on_road"] and abs(state["lateral"]) < 0.5, (k, state)
        assert abs(state["speed"]) < STANDING_MPS, (k, state)
        # A fresh route: computed after this teleport, published before the episode's first frame,
        # starting where the car stands.
        fresh = [r for r in episode["routes"] if r["frame"] <= state["frame"]]
        assert fresh, f"episode {k}: no route after its teleport"
        assert math.dist(fresh[-1]["first"], (state["x"], state["y"])) <= 3.0, (k, fresh[-1], state)
        if k > 0:  # how the previous episode ended, from the ground truth of its last frames
            before = [r for r in records[episodes[k - 1]["start_index"] : episode["index"]] if r["kind"] == "tick"]
            ends["collision"] += any(r["collision"] for r in before)
            ends["off_road"] += any(abs(r["lateral"]) > 3.0 for r in before)
    assert ends["collision"] + ends["off_road"] >= 1, ends

    # No transition crosses a reset: every stored action's command came, and its next frame was
    # produced, inside one episode (after its start, before the next teleport).
    buffer = _replay_buffer(tmp_path)
    assert len(buffer["actions"]) >= BUDGET - len(episodes) - 5
    terminated = buffer["terminated"].numpy()[:, 0]
    for (j, produced), done in zip(_stored_steps(records, buffer), terminated, strict=True):
        episode = next(e for e in episodes if e["index"] < j < e["end_index"])
        assert episode["start_index"] <= j, "a stored action from a reset's brake ticks"
        assert produced < episode["end_index"], "a transition across a reset"
        # The terminal flag belongs to the tick the action produced, although the simulator sent
        # that tick's collision event only with the next one.
        tick = records[produced]
        crashed = tick["collision"] or abs(tick["lateral"]) > 3.0
        assert bool(done) == crashed, (tick, bool(done))

    # The counters of the bridge's behaviour are on /diagnostics.
    trainer_status = [s for array in diagnostics for s in array.status if s.name == STATUS_NAME]
    assert trainer_status
    values = {kv.key: kv.value for kv in trainer_status[-1].values}
    for key in ("late_events", "odometry_after_image", "double_ticks", "teleports", "resets", "reset_retries"):
        assert key in values, key
    assert int(values["resets"]) >= len(episodes) - 1
    assert int(values["late_events"]) >= 1  # collisions and lane invasions came a tick late


@pytest.mark.parametrize(
    ("sim_override", "missing"),
    [
        ({"ignore_set_transform": True}, "the car at its start pose"),  # a teleport that never takes effect
        ({"max_routes": 1}, "a new route from the start pose to the goal"),  # no route after the start-up one
    ],
)
def test_a_reset_that_never_settles_is_retried_then_stops_with_a_reason(
    tmp_path: Path, sim_override: dict, missing: str
):
    log = tmp_path / "trainer.log"
    overrides = {"total_steps": BUDGET, "reset_attempts": 2, "reset_settle_ticks": 15, "tensorboard": False}
    with simulator(tmp_path, sim_override), node_process(trainer_args(tmp_path, overrides), log) as proc:
        code = wait_exit(proc, log)
    text = tail(log, 20000)
    assert code == 3, text  # EXIT_NO_EPISODE: stopped with an error, not a crash, not a hang
    assert "Traceback" not in text
    assert f"reset attempt 1/2: after 15 brake ticks still waiting for {missing}" in text, text
    assert "could not start an episode after 2 teleports" in text, text


def test_a_goal_reached_ends_the_episode_and_the_next_starts_elsewhere(tmp_path: Path):
    truth_log = tmp_path / "ground_truth.jsonl"
    log = tmp_path / "trainer.log"
    overrides = {
        "total_steps": 400,
        "max_episode_steps": 60,
        "learning_starts": 1000,
        "tensorboard": False,
        "reset_goal_ahead_m": 4.0,  # goals close ahead, so that random driving reaches some
        "min_route_m": 3.0,
        "episode.goal_distance_m": 2.0,
    }
    sim = {"ground_truth_log": str(truth_log)}
    with Observer() as obs, trainer_seen_then_simulator(obs, tmp_path, overrides, log, sim) as proc:
        code = wait_exit(proc, log)
        time.sleep(0.5)
        with obs.lock:
            episodes = list(obs.episodes)
    text = tail(log, 20000)
    assert code == 0, text
    reached = [e for e in episodes if e.end_reason == Episode.END_GOAL]
    assert reached, f"no episode reached its goal: {[e.end_reason for e in episodes]}\n{text}"
    # A goal is paid once per episode that drove there: never a 1-step episode at the goal.
    assert all(e.length > 1 and e.progress_m > 1.0 for e in reached), reached
    assert all(e.episode_return < 150.0 for e in episodes), [e.episode_return for e in episodes]
    # Every reset puts the car somewhere else than the previous one.
    resets = [e for e in _episodes(ground_truth.read(truth_log)) if e["start_index"] is not None]
    poses = [(e["transform"]["x"], e["transform"]["y"]) for e in resets]
    assert all(math.dist(a, b) > 5.0 for a, b in itertools.pairwise(poses)), poses


@pytest.mark.parametrize("late_odometry", [False, True], ids=["odometry_on_time", "late_odometry"])
def test_teleports_and_extra_ticks_from_outside_store_no_transition_across_them(tmp_path: Path, late_odometry):
    """Someone else moves the car, or sends a command (the bridge then ticks twice for one of ours).

    With late odometry the first tick after each teleport has only the previous tick's odometry
    when the trainer takes it (as on a loaded host): its pose shows no jump, and no transition
    may be stored into it either."""
    from carla_msgs.msg import CarlaEgoVehicleControl
    from geometry_msgs.msg import Pose
    from nav_msgs.msg import Odometry

    from td3_sim.ego_vehicle import SENSOR_QOS

    truth_log = tmp_path / "ground_truth.jsonl"
    log = tmp_path / "trainer.log"
    overrides = {
        "total_steps": 0,  # until the test has sent its events and stops the trainer (SIGINT)
        "checkpoint_every": 0,
        "max_episode_steps": 1000,
        "learning_starts": 1000,
        "save_replay_buffer": True,  # saved at the stop, with the checkpoint
        "tensorboard": False,
        "episode.terminate_on_collision": False,  # long episodes, so that the jumps come within one
        "episode.terminate_on_off_road": False,
    }
    # Somewhere on the left lane: never one of the trainer's start poses (right lane). With late
    # odometry, teleports only, between two such places (each one a jump, seen one tick late).
    poses = [_left_lane_pose(300.0), _left_lane_pose(150.0)]
    events = ["teleport", "teleport", "teleport"] if late_odometry else ["teleport", "command"] * 3
    every = 100 if late_odometry else 30  # simulator ticks between them
    sim = {"ground_truth_log": str(truth_log), "late_odometry_after_teleport": late_odometry}
    with Observer() as obs:
        # Paced by the simulator's ticks, counted from its first (in sync mode it ticks only for
        # the trainer's commands; the trainer's statistics come too seldom to pace by).
        ticks = []
        odometry = obs.node.create_subscription(Odometry, "/carla/ego_vehicle/odometry", ticks.append, SENSOR_QOS)
        teleport = obs.node.create_publisher(Pose, "/carla/ego_vehicle/control/set_transform", 10)
        command = obs.node.create_publisher(CarlaEgoVehicleControl, "/carla/ego_vehicle/vehicle_control_cmd", 10)
        # Discovery between two processes takes from 0.1 s to a few seconds here: each link this
        # test needs is seen matched before what goes over it can happen.
        with simulator(tmp_path, sim) as sim_proc:
            links = (odometry.get_publisher_count, teleport.get_subscription_count, command.get_subscription_count)
            matched = lambda: all(count() >= 1 for count in links)  # noqa: E731
            wait_until(matched, sim_proc, "the simulator's topics", tmp_path / "simulator.log")
            with node_process(trainer_args(tmp_path, overrides), log) as proc:
                wait_for_trainer_status(obs, proc, log)
                sent = _send_while_training(proc, events, every, ticks, command, teleport, poses)
                # The last event's effect, then the stop: the trainer saves and says its final counts.
                wait_until(lambda: len(ticks) >= every * (len(events) + 1), proc, "ticks after the last event", log)
                proc.send_signal(signal.SIGINT)
                code = wait_exit(proc, log)
                time.sleep(0.5)
                with obs.lock:
                    diagnostics = list(obs.diagnostics)
    text = tail(log, 20000)
    assert code == 0 and sent == len(events), text

    records = ground_truth.read(truth_log)
    outside = [
        i
        for i, r in enumerate(records)
        if r["kind"] == "set_transform" and any(abs(r["x"] - p.position.x) < 1e-6 for p in poses)
    ]
    assert outside
    ticks = [i for i, r in enumerate(records) if r["kind"] == "tick"]
    jumped = set()  # the ticks at which a teleport moved the car (one to where it stands is no jump)
    for i in outside:
        after = next(t for t in ticks if t > i)
        before = max(t for t in ticks if t < i)
        moved = math.dist((records[after]["x"], records[after]["y"]), (records[before]["x"], records[before]["y"]))
        if moved > 2.0:
            jumped.add(after)
    assert jumped
    trainer_actions = [  # not the test's commands, nor the brakes of resets and of the shutdown
        j
        for j, r in enumerate(records)
        if r["kind"] == "command" and abs(r["throttle"] - EXTRA_THROTTLE) > 1e-6 and not _is_reset_brake(r)
    ]
    for j, produced in _stored_steps(records, _replay_buffer(tmp_path)):
        assert produced not in jumped, "a transition across a teleport"
        # The observation after a stored action is the tick that action produced: never one tick
        # later (an extra tick in between), which the trainer's next command would answer.
        following = next((k for k in trainer_actions if k > j), None)
        if following is not None:
            assert records[following]["answers_ns"] == records[produced]["stamp_ns"], "a transition across a tick"
    status = [s for array in diagnostics for s in array.status if s.name == STATUS_NAME]
    assert status and "teleports" in {kv.key for kv in status[-1].values}  # counted on /diagnostics
    # The final counts: the trainer's last line (its last /diagnostics may come before the last jump).
    final = re.findall(r"sync (\{[^}]*\})", text)
    assert final, text[-3000:]
    counts = ast.literal_eval(final[-1])
    assert counts["teleports"] >= 1, counts
    if late_odometry:  # the fault came: ticks taken without their own odometry
        assert counts["unmatched_odometry"] >= len(events), counts
    else:
        assert counts["double_ticks"] + counts["foreign_ticks"] >= 1, counts


def _send_while_training(proc, events: list[str], every: int, ticks: list, command, teleport, poses) -> int:
    """Each event once `every` more simulator ticks have come; the number sent before the trainer ended
    (it runs until stopped: an early end is a failure the caller shows)."""
    from carla_msgs.msg import CarlaEgoVehicleControl

    sent = 0
    while proc.poll() is None and sent < len(events):
        if len(ticks) >= every * (sent + 1):
            if events[sent] == "command":
                command.publish(CarlaEgoVehicleControl(throttle=EXTRA_THROTTLE))
            else:
                teleport.publish(poses[events[:sent].count("teleport") % 2])
            sent += 1
        time.sleep(0.01)
    return sent


def _left_lane_pose(s_m: float):
    from geometry_msgs.msg import Pose

    from td3_sim.messages import yaw_quaternion
    from td3_sim.track import make_track

    track = make_track("loop")
    x, y = track.offset_points(np.array([s_m]), np.array([1.75]))[0]
    tangent = track.frame_at(s_m)[1]
    yaw = math.atan2(float(tangent[1]), float(tangent[0]))
    pose = Pose()
    pose.position.x, pose.position.y = float(x), float(y)
    pose.orientation = yaw_quaternion(yaw)
    return pose


def test_no_route_at_start_up_stops_after_route_startup_timeout_with_the_reason(tmp_path: Path):
    # A CARLA world without carla_waypoint_publisher: the trainer says what it waits for, then
    # stops with an error instead of waiting for ever.
    log = tmp_path / "trainer.log"
    overrides = {"total_steps": BUDGET, "route_startup_timeout_s": 4.0, "tensorboard": False}
    with simulator(tmp_path, {"publish_routes": False}), node_process(trainer_args(tmp_path, overrides), log) as proc:
        code = wait_exit(proc, log)
    text = tail(log, 20000)
    assert code == 3, text  # EXIT_NO_EPISODE
    assert "Traceback" not in text
    assert "waiting for /carla/ego_vehicle/waypoints" in text, text
    assert "after 4 s (route_startup_timeout_s)" in text and "carla_waypoint_publisher" in text, text
