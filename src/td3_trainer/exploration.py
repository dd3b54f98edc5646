"""Exploration noise: independent Gaussian per step (TD3's default) or temporally correlated.

At 20 Hz a car low-pass filters its controls: independent noise averages out within a few
steps and barely moves the car off the policy's path. With `correlation` rho > 0 the noise is
an AR(1) process, n_t = rho * n_(t-1) + sqrt(1 - rho^2) * std * e_t (stationary std `std`,
correlation time about 1 / (1 - rho) steps, the discrete Ornstein-Uhlenbeck process DDPG used),
so a deviation lasts long enough to change where the car goes. The same process with a larger
std gives the random warm-up actions.
"""

from __future__ import annotations

import math

import numpy as np


class ExplorationNoise:
    def __init__(self, std: float, correlation: float, dim: int, rng: np.random.Generator) -> None:
        if not (std >= 0.0 and math.isfinite(std)):
            raise ValueError(f"std must be >= 0, got {std}")
        if not 0.0 <= correlation < 1.0:
            raise ValueError(f"correlation must be in [0, 1), got {correlation}")
        self.std = std
        self.correlation = correlation
        self.rng = rng
        self._innovation = math.sqrt(1.0 - correlation * correlation) * std
        self._state = np.zeros(dim, dtype=np.float64)
        self.reset()

    def reset(self) -> None:
        """New episode: a fresh draw from the stationary distribution (independent noise has no state)."""
        if self.correlation > 0.0 and self.std > 0.0:
            self._state = self.rng.normal(0.0, self.std, self._state.shape)

    def sample(self) -> np.ndarray:
        if self.correlation == 0.0:
            return self.rng.normal(0.0, self.std, self._state.shape)
        self._state = self.correlation * self._state + self.rng.normal(0.0, self._innovation, self._state.shape)
        return self._state.copy()
