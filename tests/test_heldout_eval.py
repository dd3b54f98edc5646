"""The learning benchmark's protocol, on a small budget: the held-out evaluation never drives a
track (or lighting) that training drew, and the Gymnasium view that Stable-Baselines3 trains on
gives exactly the shipped environment's observations, rewards and episode ends."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.bench_learning import EVAL_SEED_BASE, trainer_params
from bench.gym_env import SimGymEnv
from bench.heldout_eval import (
    HELD_OUT_TRACK_SEEDS,
    TRAINING_SEED_LIMIT,
    evaluate_heldout,
    evaluation_seeds_are_held_out,
    heldout_env,
    lap_steps,
)
from td3_driver.policy_runner import load_runner
from td3_sim.world import SimConfig, SimWorld
from td3_trainer.config import TD3Config
from td3_trainer.loop import LoopSettings, TrainingLoop
from td3_trainer.replay_buffer import FrameReplayBuffer
from td3_trainer.sim_env import SimEnv
from td3_trainer.td3 import TD3Agent

REPO = Path(__file__).resolve().parents[1]
CAMERA = SimConfig(image_width=64, image_height=48)
SMALL = {"batch_size": 8, "learning_starts": 20, "max_episode_steps": 25}


@pytest.fixture
def drawn_seeds(monkeypatch) -> list[int]:
    """Every seed a SimWorld loads a track or lighting from (construction included)."""
    seeds: list[int] = []
    reset = SimWorld.reset

    def recording_reset(self, seed=None):
        if seed is not None and seed >= 0:
            seeds.append(int(seed))
        return reset(self, seed)

    monkeypatch.setattr(SimWorld, "reset", recording_reset)
    return seeds


def small_training(params, env: SimEnv, steps: int = 60) -> TrainingLoop:
    arch = params.architecture
    config = TD3Config.from_dict(params.td3)
    buffer = FrameReplayBuffer(steps + 1, (arch.image_size, arch.image_size), arch.frame_stack, arch.vector_dim)
    settings = LoopSettings(total_steps=steps, learning_starts=20, batch_size=8, updates_per_step=1)
    loop = TrainingLoop(TD3Agent(arch, config, device="cpu"), buffer, config, settings, np.random.default_rng(0))
    loop.run(env)
    return loop


def test_the_heldout_evaluation_never_drives_a_track_training_drew(drawn_seeds: list[int]):
    params = trainer_params(SMALL)
    env = SimEnv(CAMERA, params)
    loop = small_training(params, env)
    assert loop.episodes >= 2  # resets happened during training
    training = set(drawn_seeds)
    drawn_seeds.clear()

    result = evaluate_heldout(lambda o: np.array([0.0, 0.3], np.float32), params, (64, 48), starts=2, max_steps=5)
    evaluation = set(drawn_seeds)
    assert evaluation == set(HELD_OUT_TRACK_SEEDS) == set(result["track_seeds"])
    assert not training & evaluation, (training, evaluation)
    assert evaluation_seeds_are_held_out(training)
    assert not evaluation_seeds_are_held_out(training | {HELD_OUT_TRACK_SEEDS[0]})
    assert not evaluation_seeds_are_held_out({TRAINING_SEED_LIMIT + 12})
    assert len(result["episodes"]) == 2 * len(HELD_OUT_TRACK_SEEDS)
    # Starts spread along each track, every episode on its own held-out track, all metrics there.
    for seed in HELD_OUT_TRACK_SEEDS:
        starts = [e for e in result["episodes"] if e["track_seed"] == seed]
        assert [e["start"] for e in starts] == [0, 1]
    for key in ("route_completion", "collisions_per_km", "off_road_per_km", "mean_speed_mps", "mean_abs_lateral_m"):
        assert key in result["summary"]


def test_the_gymnasium_view_gives_exactly_the_shipped_environments_steps():
    params = trainer_params(SMALL)
    shipped, viewed = SimEnv(CAMERA, params), SimGymEnv(SimEnv(CAMERA, params))
    assert viewed.observation_space["frames"].shape == (4, 84, 84)
    first = shipped.reset(-1)
    observation, _ = viewed.reset()
    assert np.array_equal(observation["frames"], first.frames) and np.array_equal(observation["vector"], first.vector)
    rng = np.random.default_rng(3)
    ends = 0
    for _ in range(60):  # over more than one episode (max_episode_steps 25)
        action = rng.uniform(-1.0, 1.0, 2).astype(np.float32)
        shipped.send(action)
        step = shipped.receive().finished
        observation, reward, terminated, truncated, info = viewed.step(action)
        assert np.array_equal(observation["frames"], step.observation.frames)
        assert np.array_equal(observation["vector"], step.observation.vector)
        assert observation in viewed.observation_space
        assert reward == step.reward and (terminated, truncated) == (step.terminated, step.truncated)
        assert info["reason"] == step.info["reason"]
        if step.done:
            ends += 1
            first = shipped.reset(-1)
            observation, _ = viewed.reset()
            assert np.array_equal(observation["frames"], first.frames)
    assert ends >= 2


def test_heldout_episodes_last_a_lap_not_trainings_max_episode_steps():
    params = trainer_params(SMALL)  # training truncates after 25 steps
    env = heldout_env(params, HELD_OUT_TRACK_SEEDS[0], (64, 48))
    lap = lap_steps(env.world.track.length, env.world.dt, params)
    assert env.scorer.episode.max_episode_steps == lap > 1000
    standing = evaluate_heldout(
        lambda o: np.array([0.0, -1.0], np.float32), params, (64, 48), HELD_OUT_TRACK_SEEDS[:1], starts=1, max_steps=40
    )
    assert [(e["steps"], e["end"]) for e in standing["episodes"]] == [(40, "step_limit")]


def test_the_learning_benchmark_refuses_training_tracks_that_reach_the_heldout_seeds():
    command = [sys.executable, "-m", "bench.bench_learning", "--quick", "--tracks", "procedural", "--set"]
    refusals = (
        (-1, "needs episode_seed >= 0"),
        (TRAINING_SEED_LIMIT - 100, "would reach the held-out"),
        (EVAL_SEED_BASE - 10, "overlap this benchmark's evaluation seeds"),  # --quick trains more than 10 steps
    )
    for seed, reason in refusals:
        done = subprocess.run([*command, f"episode_seed={seed}"], capture_output=True, text=True, timeout=120, cwd=REPO)
        assert done.returncode == 2 and reason in done.stderr, done.stderr[-2000:]


def test_the_gymnasium_view_resets_to_the_same_episode_seeds_as_the_training_loop(drawn_seeds: list[int]):
    params = trainer_params(SMALL | {"episode_seed": 100, "reset_service": "/carla/{role_name}/reset"})
    viewed = SimGymEnv(SimEnv(CAMERA, params, bridge=False), int(params.episode_seed))
    drawn_seeds.clear()
    for _ in range(3):
        viewed.reset()
    assert drawn_seeds == [100, 101, 102]


def test_the_learning_benchmark_writes_the_trained_agent_as_a_checkpoint_the_driver_loads(tmp_path: Path):
    out, result = tmp_path / "agent.pth", tmp_path / "result.json"
    command = [sys.executable, "-m", "bench.bench_learning", "--steps", "40", "--learning-starts", "20"]
    command += ["--batch-size", "8", "--max-episode-steps", "20", "--eval-episodes", "1", "--eval-steps", "5"]
    command += ["--camera", "64", "48", "--threads", "1", "--checkpoint-out", str(out), "--json-out", str(result)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    written = json.loads(result.read_text())
    assert written["budget"]["env_steps"] == 40
    assert written["host"]["cpu"] and written["host"]["torch"] == torch.__version__
    assert set(written["code"]) == {"commit", "dirty"}
    runner = load_runner(str(out), torch.device("cpu"), 2)  # the driver's loader, with its warm-up checks
    assert runner.meta.action == trainer_params({}).action
    inference = runner.infer(np.zeros(runner.frames_shape, np.uint8), np.zeros(runner.vector_dim, np.float32))
    assert inference.action.shape == (2,) and inference.finite


def test_the_policy_after_n_steps_of_a_longer_run_is_the_n_step_runs_policy():
    """--heldout-at's premise: a snapshot taken at step N changes nothing, and the first N steps
    of a 2N-step run train exactly what an N-step run trains (so one run gives both budgets)."""
    from types import SimpleNamespace

    from bench.bench_learning import train_ours

    def trained(steps: int, heldout_at: list[int]):
        params = trainer_params({**SMALL, "seed": 0, "total_steps": steps})
        env = SimEnv(CAMERA, params, bridge=False)
        torch.manual_seed(0)  # as the benchmark seeds the networks
        args = SimpleNamespace(steps=steps, seed=0, checkpoint_out="", heldout_at=heldout_at)
        return train_ours(params, env, args)

    short, _ = trained(40, [])
    long, training = trained(80, [40])
    at_40 = training["snapshots"][40]["policy"]
    probe = SimEnv(CAMERA, trainer_params(SMALL), bridge=False)
    observation = probe.reset(EVAL_SEED_BASE)
    actions = []
    for _ in range(10):
        actions.append((short(observation), at_40(observation), long(observation)))
        probe.send(actions[-1][0])
        observation = probe.receive().observation
    assert all(np.array_equal(a, b) for a, b, _ in actions)
    assert not all(np.array_equal(a, c) for a, _, c in actions)  # 40 more steps of learning do change it


def test_sb3s_policy_after_n_steps_of_a_longer_run_is_the_n_step_runs_policy():
    """--heldout-at for --trainer sb3: the copy taken after N steps of a 2N-step SB3 run drives
    exactly as the N-step run's policy (the snapshot callback changes nothing in SB3's run)."""
    pytest.importorskip("stable_baselines3", reason="stable-baselines3 is a benchmark-only dependency (make bench)")
    from types import SimpleNamespace

    from bench.bench_learning import train_sb3

    def trained(steps: int, heldout_at: list[int]):
        params = trainer_params({**SMALL, "seed": 0, "total_steps": steps})
        env = SimEnv(CAMERA, params, bridge=False)
        torch.manual_seed(0)  # as the benchmark seeds the networks
        args = SimpleNamespace(
            steps=steps, seed=0, heldout_at=heldout_at, learning_starts=20, batch_size=8, sb3_settings="ours"
        )
        return train_sb3(params, env, args)

    short, _ = trained(40, [])
    long, training = trained(80, [40])
    assert set(training["snapshots"]) == {40}
    at_40 = training["snapshots"][40]["policy"]
    probe = SimEnv(CAMERA, trainer_params(SMALL), bridge=False)
    observation = probe.reset(EVAL_SEED_BASE)
    actions = []
    for _ in range(10):
        actions.append((short(observation), at_40(observation), long(observation)))
        probe.send(actions[-1][0])
        observation = probe.receive().observation
    assert all(np.array_equal(a, b) for a, b, _ in actions)
    assert not all(np.array_equal(a, c) for a, _, c in actions)  # 40 more steps of learning do change it


def _follow_the_route_at_full_throttle(observation) -> np.ndarray:
    """A scripted driver: steer at the third route point ahead (vehicle frame, y left), throttle 1."""
    x, y = observation.vector[7], observation.vector[8]
    return np.array([np.clip(-2.0 * np.arctan2(y, x), -1.0, 1.0), 1.0], dtype=np.float32)


def test_the_curve_governor_slows_the_car_in_tight_curves_of_a_heldout_track_not_on_straights():
    # The environment the trainer learns in and the evaluation drives applies the action's curve
    # governor: at full throttle under a 10 m/s limit the car rides the limit everywhere without
    # it, and is slower in the tight curves (radius below 30 m) with it, at the same speed on straights.
    def speeds(governor: float) -> dict:
        setting = {"action.speed_limit_mps": 10.0, "action.curve_lateral_accel_mps2": governor}
        result = evaluate_heldout(
            _follow_the_route_at_full_throttle, trainer_params(setting), track_seeds=(7000001,), starts=1
        )
        assert result["summary"]["laps_without_incident"] == 1
        return result["summary"]["speed"]

    free, governed = speeds(0.0), speeds(1.0)
    assert free["mean_speed_tight_curves_mps"] > 9.5
    assert governed["mean_speed_tight_curves_mps"] < 0.8 * free["mean_speed_tight_curves_mps"]
    assert governed["mean_speed_straights_mps"] > 0.85 * free["mean_speed_straights_mps"]
    assert governed["max_speed_mps"] <= 10.2


def test_heldout_obstacles_stand_clear_of_every_start_and_end_the_blind_drivers_laps():
    # Obstacles on the held-out tracks are laid out from each start (none in its first 40 m), as
    # training's are from each spawn point: a start a third of a lap on does not begin in front
    # of a crate. A driver blind to them, which laps the bare track, hits one from every start.
    params = trainer_params({"action.speed_limit_mps": 10.0})
    seed, count, starts = HELD_OUT_TRACK_SEEDS[0], 8, 3
    env = heldout_env(params, seed, (64, 48), obstacles=count)
    track = env.world.track
    for k in range(starts):
        first = env.lap_reset(k / starts, obstacles_seed=seed)
        start_s = track.project(first.x, first.y).s
        ahead = [(track.project(ob.x, ob.y).s - start_s) % track.length for ob in env.world.obstacles]
        assert len(ahead) == count and min(ahead) >= 39.0, (k, sorted(ahead))
    bare = evaluate_heldout(_follow_the_route_at_full_throttle, params, track_seeds=(seed,), starts=starts)
    assert bare["obstacles_per_track"] == 0 and bare["summary"]["laps_without_incident"] == starts
    blocked = evaluate_heldout(
        _follow_the_route_at_full_throttle, params, track_seeds=(seed,), starts=starts, obstacles=count
    )
    assert blocked["obstacles_per_track"] == count
    assert [e["end"] for e in blocked["episodes"]] == ["collision"] * starts
    assert all(e["distance_before_incident_m"] >= 39.0 for e in blocked["episodes"])


def test_the_learning_benchmark_trains_among_the_obstacles_it_is_asked_for():
    from types import SimpleNamespace

    from bench.bench_learning import training_env

    params = trainer_params(SMALL | {"episode_seed": 100, "reset_service": "/carla/{role_name}/reset"})
    args = SimpleNamespace(camera=(64, 48), tracks="procedural", resets="service", obstacles=5)
    env = training_env(params, args)
    layouts = []
    for seed in (100, 101):  # every training episode's own layout, from its episode seed
        env.reset(seed)
        layouts.append([(round(ob.x, 3), round(ob.y, 3)) for ob in env.world.obstacles])
        assert len(layouts[-1]) == 5
    assert layouts[0] != layouts[1]
    command = [sys.executable, "-m", "bench.bench_learning", "--quick", "--obstacles", "3"]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert refused.returncode == 2 and "--obstacles needs --tracks procedural" in refused.stderr, refused.stderr
    refused = subprocess.run(
        [*command[:-2], "--heldout-obstacles", "51"], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert refused.returncode == 2 and "--heldout-obstacles must be in [0, 50]" in refused.stderr, refused.stderr
