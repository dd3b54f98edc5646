"""A Gymnasium view of the shipped in-process environment (td3_trainer.sim_env.SimEnv), so that
Stable-Baselines3 trains on exactly what our trainer trains on: the same frames, vector state,
reward and episode ends, no ROS.

Observations: the stacked frames, uint8 (frame_stack, H, W), or with the vector state a Dict of
"frames" and "vector" (SB3's MultiInputPolicy). Actions: the policy's [-1, 1]^2 (steer, accel),
mapped to the vehicle command by the environment as for our trainer. `reset()` starts a training
episode as the training loop does: the next seeded start pose, or with `episode_seed` >= 0 the
k-th reset's episode of seed episode_seed + k (a procedural track of its own); an episode that
ends on a gap (never in process) or a restart is truncated, as in the trainer.
"""

from __future__ import annotations

from typing import ClassVar

import gymnasium as gym
import numpy as np

from td3_trainer.environment import Observation
from td3_trainer.sim_env import SimEnv


class SimGymEnv(gym.Env):
    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self, env: SimEnv, episode_seed: int = -1) -> None:
        self.env = env
        self.episode_seed = episode_seed
        self.episodes = 0
        arch = env.params.architecture
        frames = gym.spaces.Box(0, 255, (arch.frame_stack, arch.image_size, arch.image_size), np.uint8)
        if arch.vector_dim:
            vector = gym.spaces.Box(-np.inf, np.inf, (arch.vector_dim,), np.float32)
            self.observation_space = gym.spaces.Dict({"frames": frames, "vector": vector})
        else:
            self.observation_space = frames
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.last: Observation | None = None

    def observation(self, observation: Observation):
        frames = np.ascontiguousarray(observation.frames, dtype=np.uint8)
        if isinstance(self.observation_space, gym.spaces.Dict):
            return {"frames": frames, "vector": np.asarray(observation.vector, dtype=np.float32)}
        return frames

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.last = self.env.reset(self.episode_seed + self.episodes if self.episode_seed >= 0 else -1)
        self.episodes += 1
        return self.observation(self.last), {}

    def step(self, action):
        self.env.send(np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0))
        received = self.env.receive()
        step = received.finished
        assert step is not None, "in process every step completes with its tick"
        self.last = received.observation
        info = dict(step.info)
        return self.observation(self.last), float(step.reward), bool(step.terminated), bool(step.truncated), info
