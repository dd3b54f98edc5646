"""The training loop over the in-process environment (no ROS): periodic evaluation drives the
policy without noise, stores nothing and updates nothing."""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from td3_bringup.graph import file_parameters
from td3_sim import node as sim_node
from td3_trainer.config import TD3Config
from td3_trainer.loop import EVALUATION_FIELDS, Evaluation, LoopHooks, LoopSettings, TrainingLoop
from td3_trainer.params import validate
from td3_trainer.replay_buffer import FrameReplayBuffer
from td3_trainer.sim_env import SimEnv
from td3_trainer.td3 import TD3Agent

from .test_trainer_e2e import CONFIG, FAST_TRAINER, SIMULATOR

TRAINER = {**FAST_TRAINER, "learning_starts": 40, "max_episode_steps": 30, "eval_every": 50, "eval_episodes": 2}


def _loop() -> tuple[TrainingLoop, SimEnv]:
    params = validate(file_parameters(CONFIG / "trainer.yaml", "td3_trainer") | TRAINER)
    env = SimEnv(
        sim_node.validate(file_parameters(CONFIG / "simulator.yaml", "carla_simulator") | SIMULATOR).sim, params
    )
    torch.manual_seed(0)
    config = TD3Config.from_dict(params.td3)
    arch = params.architecture
    agent = TD3Agent(arch, config, "cpu")
    buffer = FrameReplayBuffer(1000, (arch.image_size, arch.image_size), arch.frame_stack, arch.vector_dim, seed=0)
    settings = LoopSettings(
        total_steps=160,
        learning_starts=int(params.learning_starts),
        batch_size=int(params.batch_size),
        eval_every=int(params.eval_every),
        eval_episodes=int(params.eval_episodes),
    )
    return TrainingLoop(agent, buffer, config, settings, np.random.default_rng(0)), env


def test_evaluation_runs_without_noise_replay_writes_or_updates():
    loop, env = _loop()
    before: list[tuple] = []
    during: list[tuple[tuple, tuple]] = []
    evaluations: list[tuple[int, Evaluation]] = []

    def state() -> tuple:
        return len(loop.buffer), loop.agent.total_it, str(loop.rng.bit_generator.state)

    def on_evaluation(evaluation: Evaluation, env_steps: int) -> None:
        during.append((before[-1], state()))
        evaluations.append((env_steps, evaluation))

    # on_episode comes right before an evaluation that is due
    loop.hooks = LoopHooks(on_episode=lambda stats, steps: before.append(state()), on_evaluation=on_evaluation)
    loop.run(env)

    assert loop.env_steps == 160
    assert len(evaluations) >= 2, evaluations
    steps = [s for s, _ in evaluations]
    assert all(b // 50 > a // 50 for a, b in itertools.pairwise(steps)), steps  # once per period
    assert loop.agent.total_it > 0  # the policy evaluated later had learned something
    for at_episode_end, after_evaluation in during:
        assert after_evaluation == at_episode_end  # buffer, updates and noise generator untouched
    for _, evaluation in evaluations:
        assert evaluation.episodes == 2
        values = evaluation.as_dict()
        assert set(values) == set(EVALUATION_FIELDS)
        assert all(math.isfinite(v) for v in values.values()), values
        assert 0.0 <= evaluation.route_completion <= 1.0
        assert {r.reason for r in evaluation.results} <= {"collision", "off_road", "goal", "step_limit"}

    # No noise: the same policy on the same evaluation episodes gives the same results.
    again, once_more = loop.evaluate(env), loop.evaluate(env)
    assert again.results == once_more.results
    assert again.results[0] != again.results[1]  # two different start poses


def test_evaluation_start_poses_are_not_training_ones():
    _, env = _loop()
    training = {(round(p.x, 3), round(p.y, 3)) for p in env.start_poses.poses}
    evaluation = {(round(p.x, 3), round(p.y, 3)) for p in env.eval_poses.poses}
    assert evaluation and not evaluation & training
