"""Exploration noise: TD3's independent Gaussian, or an AR(1) process with the same spread."""

from __future__ import annotations

import numpy as np
import pytest

from td3_trainer.exploration import ExplorationNoise


def _series(std: float, correlation: float, n: int = 20000) -> np.ndarray:
    noise = ExplorationNoise(std, correlation, 2, np.random.default_rng(0))
    return np.array([noise.sample() for _ in range(n)])


def _lag1(x: np.ndarray) -> float:
    return float(np.corrcoef(x[:-1], x[1:])[0, 1])


def test_independent_noise_has_the_std_and_no_memory():
    series = _series(0.3, 0.0)
    assert series.std(axis=0) == pytest.approx([0.3, 0.3], rel=0.05)
    assert abs(_lag1(series[:, 0])) < 0.05


def test_correlated_noise_keeps_the_std_and_remembers():
    series = _series(0.3, 0.9)
    assert series.std(axis=0) == pytest.approx([0.3, 0.3], rel=0.15)
    assert _lag1(series[:, 0]) == pytest.approx(0.9, abs=0.03)
    assert abs(float(np.corrcoef(series[:, 0], series[:, 1])[0, 1])) < 0.1  # dimensions independent


def test_same_seed_same_noise_and_reset_starts_afresh():
    a = ExplorationNoise(0.2, 0.8, 2, np.random.default_rng(5))
    b = ExplorationNoise(0.2, 0.8, 2, np.random.default_rng(5))
    assert np.array_equal([a.sample() for _ in range(5)], [b.sample() for _ in range(5)])
    a.reset()
    b.reset()
    assert np.array_equal(a.sample(), b.sample())


@pytest.mark.parametrize(("std", "correlation"), [(-0.1, 0.0), (float("nan"), 0.0), (0.1, 1.0), (0.1, -0.2)])
def test_invalid_settings_are_refused(std: float, correlation: float):
    with pytest.raises(ValueError):
        ExplorationNoise(std, correlation, 2, np.random.default_rng(0))
