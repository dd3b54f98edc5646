"""The obstacle probe's labels: the band of the nearest obstacle in the car's path, none off it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.bench_learning import trainer_params
from bench.bench_obstacle_probe import BAND_NAMES, band_of, collect, in_path_distance
from bench.heldout_eval import heldout_env
from td3_sim.obstacles import KINDS, Obstacle


@pytest.fixture(scope="module")
def env():
    return heldout_env(trainer_params({}), 7000001, (84, 84), obstacles=0)


def obstacle_at(env, ahead_m: float, lateral_m: float) -> Obstacle:
    """A crate `ahead_m` along the track from the car and `lateral_m` left of it."""
    track = env.world.track
    car = track.project(*env.world.pose[:2])
    point = track.offset_points(np.array([car.s + ahead_m]), np.array([car.d + lateral_m]))[0]
    length, width, height, rgb = KINDS["crate"]
    return Obstacle(1000, "crate", float(point[0]), float(point[1]), 0.0, length, width, height, rgb)


@pytest.mark.parametrize(
    ("ahead", "lateral", "band"),
    [(5.0, 0.0, "0-10 m"), (15.0, 0.5, "10-20 m"), (25.0, -1.2, "20-30 m"), (35.0, 0.0, "none"), (15.0, 3.5, "none")],
)
def test_the_band_is_that_of_an_obstacle_in_the_cars_path(env, ahead, lateral, band):
    env.lap_reset(0.0)
    assert BAND_NAMES[band_of(in_path_distance(env, [obstacle_at(env, ahead, lateral)]))] == band


def test_the_nearest_obstacle_in_the_path_decides(env):
    env.lap_reset(0.0)
    obstacles = [obstacle_at(env, 25.0, 0.0), obstacle_at(env, 5.0, 4.0), obstacle_at(env, 12.0, 0.3)]
    assert in_path_distance(env, obstacles) == pytest.approx(12.0, abs=0.5)


def test_collected_stacks_are_the_policys_input_with_one_label_each():
    params = trainer_params({})
    stacks, labels = collect(params, [100000], (84, 84), None, starts=1, steps=150, seed=0)
    arch = params.architecture
    assert stacks.dtype == np.uint8 and stacks.shape[1:] == (arch.frame_stack, arch.image_size, arch.image_size)
    assert labels.shape == (len(stacks),) and set(labels.tolist()) <= set(range(len(BAND_NAMES)))
    assert (labels > 0).any()  # the first obstacle stands 40-50 m after the start: in sight by step 150


def test_a_quick_run_at_another_resolution_names_it(capsys):
    from bench.bench_obstacle_probe import main

    assert main(["--quick", "--set", "preprocessing.image_size=64"]) == 0
    out = capsys.readouterr().out
    result = json.loads(out[: out.rindex("}") + 1])
    assert result["set"] == {"preprocessing.image_size": 64} and result["input"]["image_size"] == 64
    assert set(result["probe"]["recall"]) <= set(BAND_NAMES)
    assert out.rstrip().splitlines()[-1].startswith("obstacle_probe: recall on held-out tracks")
