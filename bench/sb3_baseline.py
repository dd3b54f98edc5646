"""Stable-Baselines3 TD3 set up like our learner, for the benchmarks (bench-only dependency).

The comparison point: TD3 CnnPolicy on Box(0, 255, (4, 84, 84), uint8) observations, separate
NatureCNN encoders for actor and critic (share_features_extractor=False), 512 features,
[256, 256] heads, twin critics, policy delay 2, its replay buffer filled with random frames.
"""

from __future__ import annotations

import numpy as np

OBS_SHAPE = (4, 84, 84)
ACTION_DIM = 2


def policy_kwargs(feature_dim: int = 512, hidden_dim: int = 256, dict_observations: bool = False) -> dict:
    """Our network sizes in SB3's terms: separate actor and critic CNNs (NatureCNN, our CNN's layers)
    of feature_dim features, heads of two hidden_dim layers. With Dict observations (the vector
    state beside the frames) SB3's CombinedExtractor names the CNN's size cnn_output_dim."""
    features = {"cnn_output_dim" if dict_observations else "features_dim": feature_dim}
    return dict(share_features_extractor=False, net_arch=[hidden_dim, hidden_dim], features_extractor_kwargs=features)


def make_env(obs_shape: tuple[int, ...] = OBS_SHAPE, action_dim: int = ACTION_DIM):
    """A do-nothing environment: TD3 needs one for its spaces, never steps it here."""
    import gymnasium as gym

    class ConstantEnv(gym.Env):
        observation_space = gym.spaces.Box(0, 255, obs_shape, np.uint8)
        action_space = gym.spaces.Box(-1.0, 1.0, (action_dim,), np.float32)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            return np.zeros(obs_shape, np.uint8), {}

        def step(self, action):
            return np.zeros(obs_shape, np.uint8), 0.0, False, False, {}

    return ConstantEnv()


def make_model(
    buffer_size: int, batch_size: int = 256, seed: int = 0, optimize_memory_usage: bool = False, device: str = "cpu"
):
    """SB3 TD3 with our hyper-parameters, its logger silenced, ready for model.train()."""
    from stable_baselines3 import TD3
    from stable_baselines3.common.logger import Logger

    model = TD3(
        "CnnPolicy",
        make_env(),
        learning_rate=3e-4,
        buffer_size=buffer_size,
        learning_starts=0,
        batch_size=batch_size,
        tau=0.005,
        gamma=0.99,
        policy_delay=2,
        target_policy_noise=0.2,
        target_noise_clip=0.5,
        optimize_memory_usage=optimize_memory_usage,
        replay_buffer_kwargs=dict(handle_timeout_termination=False) if optimize_memory_usage else None,
        policy_kwargs=policy_kwargs(),
        device=device,
        seed=seed,
        verbose=0,
    )
    model.set_logger(Logger(folder=None, output_formats=[]))
    return model


def fill_replay(model, frames: np.ndarray, rng: np.random.Generator) -> None:
    """Write transitions straight into the buffer's arrays: stacks of consecutive random frames."""
    buffer = model.replay_buffer
    n = min(len(frames) - OBS_SHAPE[0], buffer.buffer_size)
    stack = OBS_SHAPE[0]
    index = np.arange(n)[:, None] + np.arange(stack)[None, :]
    buffer.observations[:n, 0] = frames[index]
    if not buffer.optimize_memory_usage:
        buffer.next_observations[:n, 0] = frames[index + 1]
    buffer.actions[:n, 0] = rng.uniform(-1, 1, (n, ACTION_DIM)).astype(np.float32)
    buffer.rewards[:n, 0] = rng.normal(size=n).astype(np.float32)
    buffer.dones[:n, 0] = (rng.random(n) < 0.01).astype(np.float32)
    buffer.pos = n % buffer.buffer_size
    buffer.full = n == buffer.buffer_size
