"""TD3 hyper-parameters (Fujimoto et al. 2018 defaults), validated at construction."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

ACTOR_ENCODERS = ("critic", "own")


@dataclass(frozen=True)
class TD3Config:
    gamma: float = 0.99
    tau: float = 0.005
    policy_noise: float = 0.2
    noise_clip: float = 0.5
    policy_delay: int = 2
    batch_size: int = 256
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    actor_cnn_lr: float = 3e-4
    critic_cnn_lr: float = 3e-4
    exploration_noise: float = 0.1
    exploration_correlation: float = 0.0  # AR(1) coefficient of the exploration noise; 0 = independent (TD3)
    warmup_noise: float = 0.6  # std of the correlated warm-up actions (exploration_correlation > 0 only)
    learning_starts: int = 1000
    buffer_size: int = 100_000
    augment: bool = False
    augment_pad: int = 4
    actor_encoder: str = "critic"  # "critic": the actor reads the critic CNN's features; "own": its own CNN
    actor_preactivation_penalty: float = 0.0  # weight of mean(pre-tanh output^2) in the actor loss; 0 = TD3's
    n_step: int = 1  # rewards summed per critic target (n-step return); 1 = TD3's one-step target
    seed: int = 0

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if field.type == "str":
                if not isinstance(value, str):
                    raise ValueError(f"{field.name} must be a string, got {value!r}")
            elif field.type == "bool":
                if not isinstance(value, bool):
                    raise ValueError(f"{field.name} must be a bool, got {value!r}")
            elif field.type == "int":
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError(f"{field.name} must be an int, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{field.name} must be a finite number, got {value!r}")
        self._check("gamma", 0.0 <= self.gamma <= 1.0, "in [0, 1]")
        self._check("tau", 0.0 < self.tau <= 1.0, "in (0, 1]")
        self._check("policy_noise", self.policy_noise >= 0.0, ">= 0")
        self._check("noise_clip", self.noise_clip >= 0.0, ">= 0")
        self._check("policy_delay", self.policy_delay >= 1, ">= 1")
        self._check("batch_size", self.batch_size >= 1, ">= 1")
        for name in ("actor_lr", "critic_lr", "actor_cnn_lr", "critic_cnn_lr"):
            self._check(name, getattr(self, name) > 0.0, "> 0")
        self._check("exploration_noise", self.exploration_noise >= 0.0, ">= 0")
        self._check("exploration_correlation", 0.0 <= self.exploration_correlation < 1.0, "in [0, 1)")
        self._check("warmup_noise", self.warmup_noise >= 0.0, ">= 0")
        self._check("actor_preactivation_penalty", self.actor_preactivation_penalty >= 0.0, ">= 0")
        self._check("learning_starts", self.learning_starts >= 0, ">= 0")
        self._check("buffer_size", self.buffer_size >= 1, ">= 1")
        self._check("n_step", 1 <= self.n_step <= 100, "in 1..100")
        self._check("augment_pad", 0 <= self.augment_pad <= 64, "in 0..64")
        self._check("seed", 0 <= self.seed < 2**63, "in 0..2**63-1")
        self._check("actor_encoder", self.actor_encoder in ACTOR_ENCODERS, f"one of {', '.join(ACTOR_ENCODERS)}")

    def _check(self, name: str, ok: bool, rule: str) -> None:
        if not ok:
            raise ValueError(f"{name} must be {rule}, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TD3Config:
        """Known fields only (a checkpoint's config holds every trainer parameter); ints become floats."""
        known = {}
        for field in fields(cls):
            if field.name not in values:
                continue
            value = values[field.name]
            if field.type == "float" and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            known[field.name] = value
        return cls(**known)
