"""Resuming: the CheckpointManager path (no ROS), and a real interrupted + resumed run."""

from __future__ import annotations

import errno
import io
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from td3_core.checkpoint import (
    REPLAY_SUFFIX,
    CheckpointError,
    checkpoint_name,
    list_checkpoints,
    load_checkpoint_file,
    read_latest_pointer,
    replay_path,
    training_payload,
)
from td3_core.networks import Architecture
from td3_core.preprocessing import PreprocessConfig
from td3_core.vector_state import ObservationConfig
from td3_trainer.checkpointing import (
    DAMAGED_SUFFIX,
    CheckpointManager,
    load_resume,
    locate_resume,
)

from .processes import node_process
from .test_trainer_e2e import (
    Observer,
    assert_same_tensors,
    only_run_dir,
    simulator,
    tail,
    trainer_args,
    wait_exit,
    wait_until,
)

OBSERVATION = ObservationConfig(num_waypoints=2)
ARCH = Architecture(image_size=36, feature_dim=32, hidden_dim=32, vector_dim=OBSERVATION.vector_dim)
PREPROCESS = PreprocessConfig(image_size=36, frame_stack=ARCH.frame_stack)


def learner(seed: int = 3):
    from td3_trainer.config import TD3Config
    from td3_trainer.replay_buffer import FrameReplayBuffer
    from td3_trainer.td3 import TD3Agent

    torch.manual_seed(seed)
    config = TD3Config(batch_size=8, learning_starts=8, buffer_size=200, seed=seed)
    agent = TD3Agent(ARCH, config, "cpu")
    buffer = FrameReplayBuffer(200, (36, 36), ARCH.frame_stack, ARCH.vector_dim, 2, "cpu", seed=seed)
    return config, agent, buffer


def fill(buffer, steps: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    frame = lambda: rng.integers(0, 256, (36, 36), dtype=np.uint8)  # noqa: E731
    vector = lambda: rng.normal(size=ARCH.vector_dim).astype(np.float32)  # noqa: E731
    buffer.start_episode(frame(), vector())
    for t in range(steps):
        action = rng.uniform(-1, 1, 2).astype(np.float32)
        done = (t + 1) % 20 == 0
        buffer.add(action, float(rng.normal()), frame(), vector(), done, False)
        if done:
            buffer.start_episode(frame(), vector())


def payload(agent, config, extra: dict) -> dict:
    return training_payload(
        agent.state(),
        preprocess=PREPROCESS.to_dict(),
        observation=OBSERVATION.to_dict(),
        action={"max_steer": 1.0, "max_throttle": 1.0, "max_brake": 1.0},
        config=config.to_dict(),
        extra=extra,
    )


def manager(run_dir: Path, errors: list[str] | None = None, **kwargs) -> CheckpointManager:
    options = {"scenario": "scenario_0", "every": 10, "keep_last": 2, "save_replay_buffer": True, **kwargs}
    log = errors.append if errors is not None else (lambda _: None)
    return CheckpointManager(run_dir, info=lambda _: None, error=log, **options)


def test_resumed_learner_makes_the_same_next_update(tmp_path: Path):
    config, agent, buffer = learner()
    fill(buffer, 60)
    for _ in range(5):
        agent.update(buffer.sample(config.batch_size))
    saved = manager(tmp_path / "run").save(payload(agent, config, {"env_steps": 60}), 60, buffer.state_dict)
    assert saved is not None and replay_path(saved).is_file()

    # Uninterrupted: one more update.
    agent.update(buffer.sample(config.batch_size))
    uninterrupted = payload(agent, config, {})

    # Interrupted: a fresh learner from the checkpoint and its replay buffer, one update.
    resumed = load_resume(locate_resume(str(tmp_path / "run"), tmp_path), with_replay=True)
    assert resumed.path == saved and resumed.extra["env_steps"] == 60 and resumed.replay is not None
    _, agent2, buffer2 = learner(seed=99)  # other seeds: everything must come from the files
    agent2.restore(resumed.state, restore_rng=True)
    buffer2.load_state_dict(resumed.replay)
    assert len(buffer2) == len(buffer)
    agent2.update(buffer2.sample(config.batch_size))
    again = payload(agent2, config, {})
    assert again["total_it"] == uninterrupted["total_it"] == 6
    for key, value in uninterrupted.items():
        if key.endswith("state_dict"):
            assert_same_tensors(value, again[key], key)


def test_keep_last_prunes_checkpoints_and_their_replay_files(tmp_path: Path):
    config, agent, buffer = learner()
    fill(buffer, 10)
    checkpoints = manager(tmp_path / "run", keep_last=2)
    for step in (10, 20, 30, 40):
        assert checkpoints.due(step)
        assert checkpoints.save(payload(agent, config, {"env_steps": step}), step, buffer.state_dict) is not None
        assert not checkpoints.due(step)  # the same step is not saved twice
    names = [p.name for p in list_checkpoints(tmp_path / "run")]
    assert names == [checkpoint_name("scenario_0", 30), checkpoint_name("scenario_0", 40)]
    replays = sorted(p.name for p in (tmp_path / "run").glob(f"*{REPLAY_SUFFIX}"))
    assert replays == sorted(replay_path(tmp_path / "run" / n).name for n in names)
    assert read_latest_pointer(tmp_path / "run").name == names[-1]


def saved_once(tmp_path: Path):
    """A manager (errors collected, no replay buffer) that has saved one checkpoint at step 10."""
    config, agent, _ = learner()
    errors: list[str] = []
    checkpoints = manager(tmp_path / "run", errors, save_replay_buffer=False)
    first = checkpoints.save(payload(agent, config, {"env_steps": 10}), 10, None)
    assert first is not None
    return config, agent, errors, checkpoints, first


def test_a_failed_save_is_logged_and_leaves_the_previous_checkpoint_intact(tmp_path: Path):
    config, agent, errors, checkpoints, first = saved_once(tmp_path)
    before = first.read_bytes()
    # Something in the way of the next file (what a full or read-only disk looks like to us).
    (tmp_path / "run" / checkpoint_name("scenario_0", 20)).mkdir()
    assert checkpoints.save(payload(agent, config, {"env_steps": 20}), 20, None) is None
    assert len(errors) == 1 and "step 20 NOT saved" in errors[0] and str(first) in errors[0]
    assert read_latest_pointer(tmp_path / "run") == first
    assert first.read_bytes() == before
    assert not list((tmp_path / "run").glob(".*tmp*"))
    assert checkpoints.failures == 1
    # A models directory that cannot be created at all.
    (tmp_path / "blocked").write_text("a file, not a directory")
    errors.clear()
    assert manager(tmp_path / "blocked" / "run", errors).save(payload(agent, config, {}), 10, None) is None
    assert errors and "NOT saved" in errors[0]


def test_disk_full_during_a_save_keeps_the_previous_checkpoint_and_the_next_save_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    config, agent, errors, checkpoints, first = saved_once(tmp_path)
    before = first.read_bytes()
    real_fsync = os.fsync

    def disk_full(fd: int) -> None:  # where a full disk shows up for delayed allocation
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", disk_full)
    assert checkpoints.save(payload(agent, config, {"env_steps": 20}), 20, None) is None
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert len(errors) == 1 and "No space left on device" in errors[0] and "step 20 NOT saved" in errors[0]
    assert read_latest_pointer(tmp_path / "run") == first and first.read_bytes() == before
    assert not (tmp_path / "run" / checkpoint_name("scenario_0", 20)).exists()
    assert not list((tmp_path / "run").glob(".*tmp*")), "the cut write left its temp file"
    # Space again: training went on, the next save is complete and becomes latest.
    third = checkpoints.save(payload(agent, config, {"env_steps": 30}), 30, None)
    assert third is not None and read_latest_pointer(tmp_path / "run") == third
    assert load_checkpoint_file(third)["extra"]["env_steps"] == 30


class _DiskFullAfter(io.RawIOBase):
    """A file that takes `limit` bytes, then fails like a full disk: partial writes, then ENOSPC."""

    def __init__(self, raw, limit: int) -> None:
        self.raw, self.left = raw, limit

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if self.left <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written = self.raw.write(bytes(data)[: self.left])
        self.left -= written
        return written

    def fileno(self) -> int:
        return self.raw.fileno()

    def close(self) -> None:
        self.raw.close()
        super().close()


def test_disk_full_while_streaming_the_replay_buffer_says_no_space_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    config, agent, buffer = learner()
    fill(buffer, 60)
    errors: list[str] = []
    checkpoints = manager(tmp_path / "run", errors)
    first = checkpoints.save(payload(agent, config, {"env_steps": 10}), 10, buffer.state_dict)
    assert first is not None
    import td3_core.checkpoint as checkpoint_format  # the one atomic writer of every file of a run

    def nearly_full_disk(path, mode="r", *args, **kwargs):
        raw = open(path, mode.replace("b", "") + "b", buffering=0)  # noqa: SIM115 - closed by the wrapper
        return io.BufferedWriter(_DiskFullAfter(raw, 64 * 1024)) if "w" in mode else raw

    monkeypatch.setattr(checkpoint_format, "open", nearly_full_disk, raising=False)
    assert checkpoints.save(payload(agent, config, {"env_steps": 20}), 20, buffer.state_dict) is None
    monkeypatch.undo()
    assert len(errors) == 1 and "No space left on device" in errors[0], errors
    assert "unexpected pos" not in errors[0]
    assert read_latest_pointer(tmp_path / "run") == first and replay_path(first).is_file()
    assert not list((tmp_path / "run").glob(".*tmp*")), "the cut write left its temp file"


@pytest.mark.parametrize("damage", ["truncated", "garbage", "other_format"])
def test_resume_with_a_damaged_replay_file_restores_the_networks_and_keeps_the_file(tmp_path: Path, damage: str):
    config, agent, buffer = learner()
    fill(buffer, 60)
    for _ in range(3):
        agent.update(buffer.sample(config.batch_size))
    saved = manager(tmp_path / "run").save(payload(agent, config, {"env_steps": 60}), 60, buffer.state_dict)
    assert saved is not None
    replay = replay_path(saved)
    data = replay.read_bytes()
    if damage == "truncated":
        replay.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        replay.write_bytes(os.urandom(4096))
    else:
        torch.save({"format": "something else", "state": {}}, replay)
    damaged = replay.read_bytes()
    resumed = load_resume(saved, with_replay=True)
    assert resumed.replay is None and str(replay) in resumed.replay_problem
    kept = replay.with_name(replay.name + DAMAGED_SUFFIX)
    assert f"kept as {kept}" in resumed.replay_problem
    assert not replay.exists() and kept.read_bytes() == damaged, "the damaged file must be kept, not lost"
    # The networks and optimizers resume exactly.
    _, agent2, _ = learner(seed=99)
    agent2.restore(resumed.state, restore_rng=True)
    again = payload(agent2, config, {})
    for key, value in payload(agent, config, {}).items():
        if key.endswith("state_dict"):
            assert_same_tensors(value, again[key], key)
    # Pruning never deletes the kept file.
    manager(tmp_path / "run", keep_last=1).save(payload(agent, config, {"env_steps": 70}), 70, buffer.state_dict)
    assert kept.exists()


def test_resume_refuses_another_architecture_naming_the_difference(tmp_path: Path):
    config, agent, _ = learner()
    saved = manager(tmp_path / "run", save_replay_buffer=False).save(payload(agent, config, {}), 10, None)
    assert saved is not None
    other = {"architecture": {**ARCH.to_dict(), "feature_dim": 64}}
    with pytest.raises(CheckpointError, match="feature_dim"):
        load_resume(saved, with_replay=False, expected=other)


def test_resume_latest_without_any_run_is_an_error(tmp_path: Path):
    with pytest.raises(CheckpointError, match=r"does not exist"):
        locate_resume("latest", tmp_path / "models")


# --------------------------------------------------------------------------- processes


@pytest.mark.ros
@pytest.mark.slow
def test_sigint_saves_and_resume_latest_continues_the_counters(tmp_path: Path):
    common = {"checkpoint_every": 0, "save_replay_buffer": True, "tensorboard": False}
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    with simulator(tmp_path), Observer() as obs:
        with node_process(trainer_args(tmp_path, {**common, "total_steps": 0}), first_log) as first:
            wait_until(lambda: obs.env_steps() >= 150, first, "150 steps of the first run", first_log)
            first.send_signal(signal.SIGINT)
            code = wait_exit(first, first_log)
        assert code == 0, tail(first_log)
        assert "Traceback" not in tail(first_log, 20000)
        run_dir = only_run_dir(tmp_path / "models")
        interrupted = read_latest_pointer(run_dir)
        assert interrupted is not None and replay_path(interrupted).is_file()
        before = load_checkpoint_file(interrupted)
        steps = before["extra"]["env_steps"]
        assert interrupted.name == checkpoint_name("scenario_0", steps)
        assert before["total_it"] > 0

        budget = steps + 40
        # The resumed run also does its updates on the learner thread (async_updates).
        args = trainer_args(tmp_path, {**common, "total_steps": budget, "resume": "latest", "async_updates": True})
        with node_process(args, second_log) as second:
            code = wait_exit(second, second_log)
        time.sleep(0.2)
    text = tail(second_log, 20000)
    assert code == 0, text
    assert "Traceback" not in text
    assert "replay buffer restored" in text

    assert only_run_dir(tmp_path / "models") == run_dir  # the resumed run writes into its own directory
    final = read_latest_pointer(run_dir)
    assert final is not None and final.name == checkpoint_name("scenario_0", budget)
    after = load_checkpoint_file(final)
    assert after["extra"]["env_steps"] == budget
    assert after["extra"]["resumed_from"] == str(interrupted)
    assert after["extra"]["episodes"] >= before["extra"]["episodes"]
    # The update counter continued (the restored buffer lets learning go on at once); the
    # learner thread did at most the updates asked for: one per command sent, which over ROS is
    # one per step plus one per episode begun (a step is complete with the next tick, and the
    # command sent on the tick that ends an episode makes no step).
    begun = after["extra"]["episodes"] - before["extra"]["episodes"] + 1
    assert before["total_it"] < after["total_it"] <= before["total_it"] + 40 + begun
