"""The policy shipped in models/shipped/: its policy-only form, and that it drives.

The driving tests are the driver node on the shipped file over DDS with the embedded simulator
free-running (separate processes, the demo's graph and camera, td3_bringup.demo.drive_lap), from
the start it was trained from and from one it never started from. The simulator is
deterministic and so are the outcomes asserted: a whole lap, no collision.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from td3_bringup.demo import SHIPPED_POLICY, Observer, drive_lap
from td3_bringup.graph import repo_config_dir
from td3_core.checkpoint import (
    NETWORK_KEYS,
    OPTIMIZER_KEYS,
    TARGET_KEYS,
    CheckpointError,
    is_policy_only,
    load_checkpoint_file,
    load_policy,
    validate_policy,
    validate_training_state,
    write_policy_only,
)
from td3_driver.export import main as export_main
from td3_trainer.checkpointing import load_resume

from .checkpoint_factory import write_checkpoint

CONFIG = repo_config_dir()
LAP_TIMEOUT_S = 180.0  # after the first command; a lap of the 544 m loop takes ~40-60 s
# 0: the loop's usual start (where every training episode began); 3: 465 m further along the loop.
START_SEEDS = (0, 3)


def test_the_shipped_file_is_policy_only_small_and_drivable():
    ckpt = load_checkpoint_file(SHIPPED_POLICY)
    meta = validate_policy(ckpt, SHIPPED_POLICY)
    assert is_policy_only(ckpt)
    assert not set(ckpt) & {*OPTIMIZER_KEYS, *TARGET_KEYS, "critic_cnn_state_dict", "critic_state_dict"}
    assert SHIPPED_POLICY.stat().st_size < 10_000_000
    assert meta.total_it > 0 and ckpt["extra"]["env_steps"] > 0


def test_resume_refuses_a_policy_only_file_saying_why(tmp_path: Path):
    with pytest.raises(CheckpointError, match=r"policy-only \(deploy\) file.*resum"):
        load_resume(SHIPPED_POLICY, with_replay=False)
    slim = write_policy_only(write_checkpoint(tmp_path / "run" / "td3_s_step_5.pth"), tmp_path / "slim.pth")
    with pytest.raises(CheckpointError, match="policy-only"):
        validate_training_state(load_checkpoint_file(slim), slim)


def test_the_policy_only_form_acts_exactly_like_its_checkpoint(tmp_path: Path):
    full = write_checkpoint(tmp_path / "run" / "td3_s_step_5.pth", seed=3)
    slim = tmp_path / "slim.pth"
    assert export_main(["--checkpoint", str(full), "--policy-only", str(slim)]) == 0
    assert slim.stat().st_size < full.stat().st_size / 2
    assert set(NETWORK_KEYS) - set(load_checkpoint_file(slim)) == {"critic_cnn_state_dict", "critic_state_dict"}
    (policy_full, meta_full), (policy_slim, meta_slim) = load_policy(full), load_policy(slim)
    assert meta_slim.architecture == meta_full.architecture and meta_slim.observation == meta_full.observation
    generator = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (3, 4, 84, 84), generator=generator, dtype=torch.uint8)
    vector = torch.randn((3, meta_full.architecture.vector_dim), generator=generator)
    assert torch.equal(policy_full(frames, vector), policy_slim(frames, vector))


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.parametrize("seed", START_SEEDS)
def test_the_shipped_policy_drives_a_lap_without_a_collision(tmp_path: Path, seed: int):
    with Observer() as observer:
        watch = drive_lap(
            observer,
            CONFIG,
            (CONFIG / "demo.yaml",),
            SHIPPED_POLICY,
            tmp_path,
            LAP_TIMEOUT_S,
            simulator_overrides={"seed": seed},
        )
    assert watch.first_command_at is not None, (tmp_path / "td3_driver.log").read_text()[-3000:]
    assert Path(watch.checkpoint_in_use).resolve() == SHIPPED_POLICY.resolve()
    assert watch.route is not None
    assert watch.lap_completed, f"{watch.progress_m:.0f} of {watch.route.length:.0f} m, {watch.collisions} collisions"
    assert watch.collisions == 0
    assert watch.out_of_range == 0
