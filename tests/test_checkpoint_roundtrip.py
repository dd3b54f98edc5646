"""TD3Agent ↔ td3_core.checkpoint: complete payloads, exact restore, resume, the original format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from td3_core.actions import ActionConfig
from td3_core.checkpoint import (
    METADATA_KEYS,
    SEED_KEYS,
    TARGET_KEYS,
    CheckpointError,
    checkpoint_name,
    load_checkpoint_file,
    read_training_state,
    resolve_checkpoint,
    save_checkpoint,
    training_payload,
    validate_training_state,
    write_latest_pointer,
)
from td3_core.networks import Architecture
from td3_core.preprocessing import PreprocessConfig
from td3_core.vector_state import ObservationConfig
from td3_trainer.config import TD3Config
from td3_trainer.replay_buffer import FrameReplayBuffer
from td3_trainer.td3 import TD3Agent

OBSERVATION = ObservationConfig(num_waypoints=1)
ARCH = Architecture(image_size=36, feature_dim=32, hidden_dim=32, vector_dim=OBSERVATION.vector_dim)
PREPROCESS = PreprocessConfig(image_size=36, frame_stack=ARCH.frame_stack)
CONFIG = TD3Config(batch_size=8, seed=3)
MODULES = (
    "actor_cnn",
    "critic_cnn",
    "actor",
    "critic",
    "actor_cnn_target",
    "critic_cnn_target",
    "actor_target",
    "critic_target",
)
OPTIMIZERS = ("actor_cnn_optimizer", "critic_cnn_optimizer", "actor_optimizer", "critic_optimizer")


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def filled_buffer(seed: int = 0) -> FrameReplayBuffer:
    buffer = FrameReplayBuffer(100, (36, 36), ARCH.frame_stack, ARCH.vector_dim, 2, "cpu", seed=seed)
    rng = np.random.default_rng(seed)
    frame = lambda: rng.integers(0, 256, (36, 36), dtype=np.uint8)  # noqa: E731
    vector = lambda: rng.normal(size=ARCH.vector_dim).astype(np.float32)  # noqa: E731
    buffer.start_episode(frame(), vector())
    for t in range(60):
        done = (t + 1) % 15 == 0
        buffer.add(rng.uniform(-1, 1, 2), float(rng.normal()), frame(), vector(), done and t % 2 == 0, done)
        if done:
            buffer.start_episode(frame(), vector())
    return buffer


def payload(agent: TD3Agent, extra: dict | None = None) -> dict:
    return training_payload(
        agent.state(),
        preprocess=PREPROCESS,
        observation=OBSERVATION,
        action=ActionConfig(max_steer=0.8),
        config=agent.config.to_dict(),
        extra=extra,
    )


def assert_same(a, b, where: str) -> None:
    """Exact equality of nested state (tensors by torch.equal, dtype included)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), f"{where}: {sorted(a)} vs {sorted(b)}"
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


def assert_same_agents(a: TD3Agent, b: TD3Agent) -> None:
    for name in MODULES:
        assert_same(getattr(a, name).state_dict(), getattr(b, name).state_dict(), name)
    for name in OPTIMIZERS:
        assert_same(getattr(a, name).state_dict(), getattr(b, name).state_dict(), name)
    assert a.total_it == b.total_it


def trained_agent(updates: int = 3) -> tuple[TD3Agent, FrameReplayBuffer]:
    agent, buffer = TD3Agent(ARCH, CONFIG), filled_buffer()
    for _ in range(updates):
        agent.update(buffer.sample(CONFIG.batch_size))
    return agent, buffer


def test_payload_has_every_key_and_survives_a_weights_only_round_trip(tmp_path: Path):
    agent, _ = trained_agent()
    data = payload(agent, extra={"env_steps": 60, "episodes": 4, "run_name": "r", "scenario": "scenario_0"})
    assert set(SEED_KEYS) | set(TARGET_KEYS) | set(METADATA_KEYS) <= set(data)
    assert data["total_it"] == 3 and data["action"]["max_steer"] == 0.8
    assert data["extra"]["env_steps"] == 60 and data["env_steps"] == 60  # nested and merged
    path = save_checkpoint(data, tmp_path / checkpoint_name("scenario_0", 60))
    loaded = load_checkpoint_file(path)  # weights_only=True
    meta = validate_training_state(loaded, path)
    assert meta.format_version == 2 and meta.architecture == ARCH and meta.total_it == 3
    assert meta.observation == OBSERVATION and meta.preprocess == PREPROCESS
    assert_same(data, loaded, "payload")


def test_loading_restores_parameters_and_optimizer_states_exactly(tmp_path: Path):
    agent, _ = trained_agent()
    path = save_checkpoint(payload(agent), tmp_path / "a.pth")
    fresh = TD3Agent(ARCH, TD3Config(batch_size=8, seed=11))  # other initial weights
    fresh.restore(read_training_state(load_checkpoint_file(path)))
    assert_same_agents(agent, fresh)
    saved = load_checkpoint_file(path)
    restored = TD3Agent.from_state(read_training_state(saved), TD3Config.from_dict(saved["config"]))
    assert restored.config == agent.config
    assert_same_agents(agent, restored)


def test_resume_continues_exactly_where_the_saved_run_would_have(tmp_path: Path):
    k = 3
    agent_a, buffer_a = trained_agent(k)
    run = tmp_path / "run"
    path = save_checkpoint(payload(agent_a, {"env_steps": 60}), run / checkpoint_name("scenario_0", 60))
    write_latest_pointer(run, path)
    torch.save(buffer_a.state_dict(), run / "replay.pt")
    for _ in range(k):
        agent_a.update(buffer_a.sample(CONFIG.batch_size))

    torch.manual_seed(1234)  # whatever happened in between
    np.random.seed(1234)
    checkpoint = load_checkpoint_file(resolve_checkpoint(run))
    agent_b = TD3Agent.from_state(read_training_state(checkpoint), TD3Config.from_dict(checkpoint["config"]), "cpu")
    buffer_b = FrameReplayBuffer(100, (36, 36), ARCH.frame_stack, ARCH.vector_dim, 2, "cpu", seed=77)
    buffer_b.load_state_dict(torch.load(run / "replay.pt", weights_only=True))
    assert agent_b.total_it == k
    for _ in range(k):
        agent_b.update(buffer_b.sample(CONFIG.batch_size))
    assert agent_b.total_it == 2 * k
    assert_same_agents(agent_a, agent_b)


def test_resume_with_augmentation_restores_the_agents_random_stream(tmp_path: Path):
    config = TD3Config(batch_size=8, seed=5, augment=True)
    agent_a, buffer = TD3Agent(ARCH, config), filled_buffer()
    agent_a.update(buffer.sample(8))
    saved = payload(agent_a)
    batch = buffer.sample(8)
    agent_a.update(batch)
    agent_b = TD3Agent(ARCH, config)
    agent_b.restore(read_training_state(saved))
    agent_b.update(batch)
    assert_same_agents(agent_a, agent_b)


def original_format(agent: TD3Agent) -> dict:
    """SEED_KEYS only, no format_version: the layout of the original project's files."""
    full = payload(agent)
    return {key: full[key] for key in SEED_KEYS}


def test_original_format_loads_with_targets_copied_from_the_online_networks(tmp_path: Path):
    arch = Architecture(feature_dim=32, hidden_dim=32, vector_dim=ARCH.vector_dim)  # 84 px: what that format implies
    source = TD3Agent(arch, TD3Config(seed=2))
    batch = FrameReplayBuffer(10, (84, 84), 4, arch.vector_dim, 2)
    batch.start_episode(np.zeros((84, 84), np.uint8), np.zeros(arch.vector_dim, np.float32))
    for _ in range(3):
        batch.add(np.zeros(2), 1.0, np.full((84, 84), 9, np.uint8), np.ones(arch.vector_dim, np.float32), False, False)
    for _ in range(2):
        source.update(batch.sample(4))
    path = save_checkpoint(original_format(source), tmp_path / "original.pth")
    loaded = load_checkpoint_file(path)
    assert "format_version" not in loaded and validate_training_state(loaded).format_version == 1

    agent = TD3Agent.from_state(read_training_state(loaded), TD3Config(seed=9))
    assert agent.total_it == 2
    for online in ("actor_cnn", "critic_cnn", "actor", "critic"):
        assert_same(getattr(agent, online).state_dict(), getattr(source, online).state_dict(), online)
        assert_same(getattr(agent, f"{online}_target").state_dict(), getattr(source, online).state_dict(), online)
    for name in OPTIMIZERS:
        assert_same(getattr(agent, name).state_dict(), getattr(source, name).state_dict(), name)
    agent.update(batch.sample(4))  # and it trains on


def test_refuses_invalid_payloads_and_other_architectures():
    agent, _ = trained_agent(1)
    broken = payload(agent)
    del broken["critic_target_state_dict"]
    with pytest.raises(CheckpointError, match="critic_target_state_dict"):
        read_training_state(broken)
    other = TD3Agent(Architecture(image_size=36, feature_dim=16, hidden_dim=32, vector_dim=ARCH.vector_dim), CONFIG)
    with pytest.raises(ValueError, match="architecture"):
        other.restore(read_training_state(payload(agent)))
    with pytest.raises(ValueError, match="total_it"):
        payload(agent, extra={"total_it": 5})
