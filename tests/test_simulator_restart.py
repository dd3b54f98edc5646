"""The simulator dies and comes back during training: the trainer waits, says what for, keeps
no transition across the gap, and trains on to its budget once frames return."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from td3_drive.msg import Episode

from td3_core.checkpoint import load_checkpoint_file, read_latest_pointer

from .processes import node_process, stop_process
from .test_trainer_e2e import Observer, only_run_dir, simulator, tail, trainer_args, wait_exit, wait_until


@pytest.mark.ros
@pytest.mark.slow
def test_trainer_survives_a_simulator_restart(tmp_path: Path):
    budget = 260
    log = tmp_path / "trainer.log"
    overrides = {"total_steps": budget, "frame_timeout_s": 0.5, "max_timeouts": 2, "checkpoint_every": 0}
    with Observer() as obs, node_process(trainer_args(tmp_path, overrides), log) as trainer:
        with simulator(tmp_path) as first_sim:
            wait_until(lambda: obs.env_steps() >= 60, trainer, "first steps", log)
            assert stop_process(first_sim) is not None  # the simulator goes away mid-episode
        # Nothing to train on: the trainer waits and says what it waits for, without crashing.
        deadline = time.monotonic() + 60.0
        while "waiting for" not in tail(log, 20000) and time.monotonic() < deadline:
            assert trainer.poll() is None, tail(log)
            time.sleep(0.2)
        assert "waiting for" in tail(log, 20000)
        time.sleep(1.0)  # the last stats of the steps taken before the stop
        stopped_at = obs.env_steps()
        time.sleep(2.0)
        assert trainer.poll() is None
        assert obs.env_steps() == stopped_at, "steps counted without a simulator"
        # A new simulator: its clock starts again from zero, which is a restart, not a next tick.
        (tmp_path / "simulator.log").rename(tmp_path / "simulator1.log")
        with simulator(tmp_path):
            code = wait_exit(trainer, log)
        with obs.lock:
            episodes = list(obs.episodes)
    text = tail(log, 40000)
    assert code == 0, text
    assert "Traceback" not in text
    checkpoint = load_checkpoint_file(read_latest_pointer(only_run_dir(tmp_path / "models")))
    extra = checkpoint["extra"]
    assert extra["env_steps"] == budget
    sync = extra["sync"]
    assert sync["timeouts"] >= 1, sync
    # One restart, seen once: the old clock's last frames are not taken for new ones afterwards.
    assert sync["clock_jumps_back"] <= 1, sync
    # The episode cut by the restart ended as such (or as a gap), and no transition spans the gap:
    # the replay buffer holds fewer transitions than steps were counted.
    reasons = {e.end_reason for e in episodes}
    assert Episode.END_RESTART in reasons or any(e.gaps > 0 for e in episodes), episodes
    assert extra["replay_buffer_size"] < budget
