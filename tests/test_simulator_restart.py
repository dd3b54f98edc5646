"""The simulator dies and comes back during training: the trainer waits, says what for, keeps
no transition across the gap, and trains on to its budget once frames return."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from td3_drive.msg import Episode

from td3_core.checkpoint import load_checkpoint_file, read_latest_pointer

from .processes import node_process, stop_process
from .test_trainer_e2e import Observer, only_run_dir, simulator, tail, trainer_args, wait_exit, wait_until


def driving_commands_since_reset(truth: Path) -> int | None:
    """Commands other than a reset's full brake the simulator got since the last teleport (a bridge
    reset: set_transform, then brake ticks until the car stands at its start pose and the route is
    there); None before the first teleport."""
    if not truth.exists():
        return None
    count: int | None = None
    for line in truth.read_text(encoding="utf-8").splitlines():
        if '"kind": "set_transform"' in line:
            count = 0
        elif '"kind": "command"' in line and count is not None and '"brake": 1.0}' not in line:
            count += 1
    return count


def early_in_an_episode(truth: Path) -> bool:
    """Some steps into an episode (on its way, past its reset), far from its step limit and, from a
    standing start on the lane, from any collision or leaving the road."""
    count = driving_commands_since_reset(truth)
    return count is not None and 10 <= count <= 40


def log_size(log: Path) -> int:
    return len(log.read_text(errors="replace")) if log.exists() else 0


def wait_for_line(trainer: subprocess.Popen, log: Path, text: str, after: int) -> None:
    """Until the trainer's log says `text` past its first `after` characters (what it said before
    the simulator stopped: a loaded host's late start-up frame is also "waiting for"); it must keep
    running meanwhile."""

    def said() -> bool:
        return log.exists() and text in log.read_text(errors="replace")[after:]

    deadline = time.monotonic() + 60.0
    while not said() and time.monotonic() < deadline:
        assert trainer.poll() is None, tail(log)
        time.sleep(0.2)
    assert said(), tail(log)


def wait_for_stats(obs: Observer, trainer: subprocess.Popen, log: Path, count: int) -> None:
    """Until `count` more ~/train_stats have arrived: the trainer's timer publishes them, so this
    counts periods of the trainer's own clock, whatever the load on this host."""
    with obs.lock:
        seen = len(obs.train_stats)

    def arrived() -> bool:
        with obs.lock:
            return len(obs.train_stats) >= seen + count

    wait_until(arrived, trainer, f"{count} more train_stats", log)


def finish_on_a_new_simulator(tmp_path: Path, trainer: subprocess.Popen, obs: Observer, log: Path) -> tuple:
    """A second simulator until the trainer exits, which it must do cleanly: the episodes, the log
    text and the last checkpoint's extra."""
    # Its clock starts again from zero, which is a restart, not a next tick.
    (tmp_path / "simulator.log").rename(tmp_path / "simulator1.log")
    with simulator(tmp_path):
        code = wait_exit(trainer, log)
    with obs.lock:
        episodes = list(obs.episodes)
    text = tail(log, 40000)
    assert code == 0, text
    assert "Traceback" not in text
    extra = load_checkpoint_file(read_latest_pointer(only_run_dir(tmp_path / "models")))["extra"]
    return episodes, text, extra


@pytest.mark.ros
@pytest.mark.slow
def test_trainer_survives_a_simulator_restart(tmp_path: Path):
    budget = 260
    log = tmp_path / "trainer.log"
    first_truth = tmp_path / "ground_truth1.jsonl"
    overrides = {"total_steps": budget, "frame_timeout_s": 0.5, "max_timeouts": 2, "checkpoint_every": 0}
    with Observer() as obs, node_process(trainer_args(tmp_path, overrides), log) as trainer:
        with simulator(tmp_path, {"ground_truth_log": str(first_truth)}) as first_sim:
            # Early in an episode, so that the stop cuts one: stopped during a reset, no episode
            # would span the restart and there would be nothing here to check.
            wait_until(lambda: early_in_an_episode(first_truth), trainer, "an episode under way", log)
            said_before_stop = log_size(log)
            assert stop_process(first_sim) is not None  # the simulator goes away mid-episode
        # Nothing to train on: the trainer waits and says what it waits for, without crashing.
        wait_for_line(trainer, log, "waiting for", after=said_before_stop)
        # Its loop is blocked from here on; the second period's stats carry its last steps (the
        # first may have been read before the loop's last update).
        wait_for_stats(obs, trainer, log, 2)
        stopped_at = obs.env_steps()
        wait_for_stats(obs, trainer, log, 2)
        assert trainer.poll() is None
        assert obs.env_steps() == stopped_at, "steps counted without a simulator"
        episodes, _, extra = finish_on_a_new_simulator(tmp_path, trainer, obs, log)
    assert extra["env_steps"] == budget
    sync = extra["sync"]
    assert sync["timeouts"] >= 1, sync
    # One restart, seen once: the old clock's last frames are not taken for new ones afterwards.
    assert sync["clock_jumps_back"] <= 1, sync
    # The episode cut by the restart ended as such (or as a gap), and no transition spans the gap:
    # the replay buffer holds fewer transitions than steps were counted.
    after_reset = driving_commands_since_reset(first_truth)
    assert after_reset is not None and after_reset >= 1, "the simulator stopped during a reset"
    reasons = {e.end_reason for e in episodes}
    assert Episode.END_RESTART in reasons or any(e.gaps > 0 for e in episodes), episodes
    assert extra["replay_buffer_size"] < budget
    # The new simulator's car is in another world: its position is not driven to.
    tick_s, top_speed_mps = 0.05, 30.0
    for e in episodes:
        if e.end_reason == Episode.END_RESTART:
            assert e.distance_m <= e.length * tick_s * top_speed_mps, e


def stalled_in_a_reset(truth: Path, routes: int) -> bool:
    """The simulator has published its last route and the trainer has braked on for a while since,
    waiting for the route of its reset."""
    if not truth.exists():
        return False
    lines = truth.read_text(encoding="utf-8").splitlines()
    seen = [i for i, line in enumerate(lines) if '"kind": "route"' in line]
    if len(seen) < routes:
        return False
    after = lines[seen[-1] + 1 :]
    brakes = sum('"kind": "command"' in line and '"brake": 1.0}' in line for line in after)
    return brakes >= 20 and not any('"kind": "command"' in line and '"brake": 1.0}' not in line for line in after)


@pytest.mark.ros
@pytest.mark.slow
def test_a_simulator_restart_during_a_reset_is_waited_for_and_the_reset_done_on_the_new_one(tmp_path: Path):
    budget = 160
    log = tmp_path / "trainer.log"
    first_truth = tmp_path / "ground_truth1.jsonl"
    # The start-up route, then two per reset (the car repositioned, then the goal): the second
    # reset never gets its route from the first simulator and brakes on until that one stops.
    routes = 1 + 2
    first = {"ground_truth_log": str(first_truth), "max_routes": routes + 1}
    overrides = {
        "total_steps": budget,
        "frame_timeout_s": 0.5,
        "max_timeouts": 2,
        "checkpoint_every": 0,
        "reset_settle_ticks": 100_000,  # only the stop ends the stalled reset
    }
    with Observer() as obs, node_process(trainer_args(tmp_path, overrides), log) as trainer:
        with simulator(tmp_path, first) as first_sim:
            wait_until(lambda: stalled_in_a_reset(first_truth, routes + 1), trainer, "a reset waiting for a route", log)
            said_before_stop = log_size(log)
            assert stop_process(first_sim) is not None
        # No frames during a reset: the trainer waits for them, as within an episode; it neither
        # gives up the reset nor stops training.
        wait_for_line(trainer, log, "no simulator?", after=said_before_stop)
        time.sleep(3.0)  # longer than a settle's worth of 0.5 s timeouts used to take
        assert trainer.poll() is None, tail(log)
        episodes, text, extra = finish_on_a_new_simulator(tmp_path, trainer, obs, log)
    assert "teleporting again" in text
    assert extra["env_steps"] == budget
    sync = extra["sync"]
    assert sync["reset_failures"] == 0 and sync["timeouts"] >= 1, sync
    assert sync["clock_jumps_back"] == 1, sync
    # The reset was between episodes: none was cut, and the next began on the new simulator.
    assert all(e.end_reason != Episode.END_RESTART for e in episodes), episodes
