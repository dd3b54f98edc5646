"""Valid checkpoints with random-initialised networks, written with td3_core only.

`write_checkpoint` gives a format-2 file with every key of SEED_KEYS + TARGET_KEYS +
METADATA_KEYS (Adam optimizer states included), `write_original_checkpoint` the original
format (SEED_KEYS only, no format_version). `constant_action` makes the actor output a fixed
action whatever it sees (e.g. (0.0, 0.9): straight ahead with throttle), for tests that need
the car to move.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch

from td3_core.actions import ActionConfig
from td3_core.checkpoint import FORMAT_VERSION, SEED_KEYS, save_checkpoint, write_latest_pointer
from td3_core.networks import Architecture, Policy, build_cnn, build_critic
from td3_core.preprocessing import PreprocessConfig
from td3_core.vector_state import ObservationConfig

PolicyEdit = Callable[[Policy], None]


def small_architecture(observation: ObservationConfig | None = None, **changes) -> Architecture:
    """A few-MB network (36x36 frames, 64 features) for tests that load many checkpoints."""
    observation = observation or ObservationConfig()
    fields = {"image_size": 36, "feature_dim": 64, "hidden_dim": 64, "vector_dim": observation.vector_dim}
    return Architecture(**{**fields, **changes})


def _adam_state(module: torch.nn.Module) -> dict:
    """A real Adam state dict (one zero-gradient step: moments exist, weights unchanged)."""
    optimizer = torch.optim.Adam(module.parameters(), lr=3e-4)
    for parameter in module.parameters():
        parameter.grad = torch.zeros_like(parameter)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return optimizer.state_dict()


def _set_constant_action(policy: Policy, action: tuple[float, float]) -> None:
    with torch.no_grad():
        policy.actor.fc3.weight.zero_()
        policy.actor.fc3.bias.copy_(torch.tensor([math.atanh(a) for a in action]))


def build_payload(
    observation: ObservationConfig | None = None,
    architecture: Architecture | None = None,
    *,
    seed: int = 0,
    total_it: int = 1000,
    constant_action: tuple[float, float] | None = None,
    edit_policy: PolicyEdit | None = None,
    action: ActionConfig | None = None,
) -> dict:
    """Format-2 payload; the architecture follows the observation unless given explicitly."""
    observation = observation or ObservationConfig()
    arch = architecture or Architecture(vector_dim=observation.vector_dim)
    torch.manual_seed(seed)
    policy = Policy(arch)
    if constant_action is not None:
        _set_constant_action(policy, constant_action)
    if edit_policy is not None:
        edit_policy(policy)
    critic_cnn, critic = build_cnn(arch), build_critic(arch)
    preprocess = PreprocessConfig(image_size=arch.image_size, frame_stack=arch.frame_stack)
    return {
        "format_version": FORMAT_VERSION,
        "actor_cnn_state_dict": policy.actor_cnn.state_dict(),
        "critic_cnn_state_dict": critic_cnn.state_dict(),
        "actor_state_dict": policy.actor.state_dict(),
        "critic_state_dict": critic.state_dict(),
        "actor_cnn_target_state_dict": policy.actor_cnn.state_dict(),
        "critic_cnn_target_state_dict": critic_cnn.state_dict(),
        "actor_target_state_dict": policy.actor.state_dict(),
        "critic_target_state_dict": critic.state_dict(),
        "actor_cnn_optimizer_state_dict": _adam_state(policy.actor_cnn),
        "critic_cnn_optimizer_state_dict": _adam_state(critic_cnn),
        "actor_optimizer_state_dict": _adam_state(policy.actor),
        "critic_optimizer_state_dict": _adam_state(critic),
        "total_it": total_it,
        "config": {"seed": seed, "batch_size": 256, "gamma": 0.99},
        "architecture": arch.to_dict(),
        "preprocessing": preprocess.to_dict(),
        "observation": observation.to_dict(),
        "action": (action or ActionConfig()).to_dict(),
        "rng_state": {"torch": torch.get_rng_state()},
    }


def write_checkpoint(
    path: Path | str,
    observation: ObservationConfig | None = None,
    architecture: Architecture | None = None,
    *,
    latest: bool = True,
    **options,
) -> Path:
    """Write a format-2 checkpoint (atomically) and, by default, point its run's `latest` at it."""
    path = save_checkpoint(build_payload(observation, architecture, **options), path)
    if latest:
        write_latest_pointer(path.parent, path)
    return path


def write_original_checkpoint(path: Path | str, architecture: Architecture | None = None, seed: int = 0) -> Path:
    """The original format: SEED_KEYS only (no format_version, metadata or targets)."""
    arch = architecture or Architecture()
    observation = ObservationConfig(
        use_vector_state=arch.vector_dim > 0, num_waypoints=max(0, (arch.vector_dim - 3) // 2)
    )
    payload = build_payload(observation, arch, seed=seed)
    return save_checkpoint({key: payload[key] for key in SEED_KEYS}, path)
