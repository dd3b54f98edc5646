"""The learning report's grouping: a run's variant comes from the parameters it trained with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.learning_report import load, medians, plot, table, variant_of


def result(
    seed: int,
    completion: float,
    budget_extra: dict,
    trainer: str = "td3-drive",
    starts: int = 1,
    eval_obstacles: int | None = None,
) -> dict:
    summary = {
        "route_completion": completion,
        "laps_without_incident": 5 if completion > 0.98 else 0,
        "episodes": 5,
        "collisions_per_km": 0.0,
        "off_road_per_km": 0.0,
        "mean_abs_lateral_m": 0.3,
        "mean_speed_mps": 9.0,
    }
    return {
        "date": "2026-12-01",
        "budget": {"env_steps": 5000, "seed": seed, **budget_extra},
        "training": {"trainer": trainer, "seconds": 100.0 + seed},
        "eval": {"episodes": 5, "td3": {"mean_distance_m": 10.0, "episodes_ended_by_crash": 0}},
        "heldout": {
            "td3": {"summary": summary, "starts_per_track": starts}
            | ({} if eval_obstacles is None else {"obstacles_per_track": eval_obstacles})
        },
    }


def written(folder: Path, runs: list[dict]) -> list[str]:
    """The runs as --json-out files in `folder`."""
    paths = []
    for k, run in enumerate(runs):
        paths.append(folder / f"run{k}.json")
        paths[-1].write_text(json.dumps(run))
    return [str(p) for p in paths]


def ratio_lines(text: str) -> list[str]:
    """The report's ours / SB3 comparisons."""
    return [line for line in text.splitlines() if line.startswith("- ")]


def test_the_variant_is_what_trained_not_what_the_file_says_now():
    assert variant_of({"overrides": {}}) == "-"
    assert variant_of({"overrides": {"actor_preactivation_penalty": 0.05, "augment": True}}) == "penalty 0.05"
    recorded = {"actor_preactivation_penalty": 0.05, "reward.curve_lateral_accel_mps2": 2.0}
    # the recorded parameters win over the overrides (a value from the params file is not an override)
    assert variant_of({"overrides": {}, "trainer_params": recorded}) == "penalty 0.05, curve a 2"
    assert variant_of({"overrides": {}, "trainer_params": {"actor_preactivation_penalty": 0.0}}) == "-"
    # a parameter whose default is not 0 is part of the variant only away from its default
    assert variant_of({"overrides": {}, "trainer_params": {"reward.overspeed_penalty": -1.0}}) == "-"
    assert variant_of({"overrides": {"reward.overspeed_penalty": -5.0}}) == "overspeed -5"


def test_runs_are_grouped_by_trainer_variant_and_budget(tmp_path: Path):
    runs = [
        result(0, 0.996, {"overrides": {}}),
        result(1, 0.0, {"overrides": {}}),
        result(0, 0.996, {"overrides": {}, "trainer_params": {"actor_preactivation_penalty": 0.05}}),
        result(1, 0.997, {"overrides": {"actor_preactivation_penalty": 0.05}}),
        result(0, 0.005, {"overrides": {}}, trainer="sb3-td3"),
    ]
    paths = written(tmp_path, runs)
    text, summary = medians(load(paths))
    assert set(summary) == {("ours", "-", 5000, 1, 0), ("ours", "penalty 0.05", 5000, 1, 0), ("sb3", "-", 5000, 1, 0)}
    assert summary[("ours", "-", 5000, 1, 0)][1] == pytest.approx(0.498)
    assert summary[("ours", "penalty 0.05", 5000, 1, 0)][1] == pytest.approx(0.9965)
    assert "| ours | penalty 0.05 | 5000 | 1 | 0 | 2 | 0.996 | 0.996 | 2/2 |" in text
    assert "5000 steps, ours (penalty 0.05) / SB3 (our settings): median completion 199.30" in text


def test_a_run_with_heldout_at_gives_a_row_per_budget_with_its_own_time(tmp_path: Path):
    run = result(3, 0.996, {"overrides": {}})
    run["budget"]["env_steps"] = 10000
    earlier = result(3, 0.0, {})["heldout"]
    run["heldout_at"] = {"2500": {"seconds": 30.0, **earlier}, "5000": {"seconds": 60.0, **earlier}}
    path = tmp_path / "run.json"
    path.write_text(json.dumps(run))
    rows = load([str(path)])
    assert [(r["steps"], r["seed"], r["completion"], r["seconds"]) for r in rows] == [
        (2500, 3, 0.0, 30.0),
        (5000, 3, 0.0, 60.0),
        (10000, 3, 0.996, 103.0),
    ]
    assert rows[0]["other_m"] is None and rows[2]["other_m"] == 10.0  # the other evaluation ran at the end only


def test_sb3_is_compared_with_the_runs_that_learned_on_the_same_reward(tmp_path: Path):
    setting = {"actor_preactivation_penalty": 0.05, "reward.standstill_penalty": -1.0}
    runs = [
        result(0, 0.996, {"overrides": {}, "trainer_params": setting}),
        result(0, 0.5, {"overrides": {}}),
        # SB3 does not use our learner's penalty: its variant is the reward's alone
        result(
            0, 0.005, {"overrides": {}, "trainer_params": setting}, trainer="stable-baselines3 TD3 (defaults settings)"
        ),
        result(1, 0.004, {"overrides": {}}, trainer="stable-baselines3 TD3 (ours settings)"),
    ]
    paths = written(tmp_path, runs)
    text, summary = medians(load(paths))
    assert ("sb3-defaults", "standstill -1", 5000, 1, 0) in summary
    assert ratio_lines(text) == [
        "- 5000 steps, ours / SB3 (our settings): median completion 125.00, mean completion 125.00, "
        "median training wall time 0.99",
        "- 5000 steps, ours (penalty 0.05, standstill -1) / SB3 (its defaults, standstill -1): median completion "
        "199.20, mean completion 199.20, median training wall time 1.00",
    ]


def test_the_plot_draws_every_trainer_and_variant(tmp_path: Path):
    runs = []
    for k in range(9):  # more curves than the plot has colours
        runs.append(result(0, 0.1 * k, {"overrides": {"reward.standstill_penalty": -0.1 * (k + 1)}}))
    paths = written(tmp_path, runs)
    labels = plot(load(paths), tmp_path / "plot.png")
    assert len(labels) == 9 and len(set(labels)) == 9
    assert (tmp_path / "plot.png").stat().st_size > 0


def test_a_seed_counts_once_per_budget_where_a_longer_runs_snapshot_repeats_it(tmp_path: Path):
    # Seed 0 trained for 5000 steps (completion 0.5), and again in a 20,000-step run whose
    # snapshot at 5000 laps: the per-seed table shows both, the median and mean take the
    # 5000-step run's; seed 1 exists only as a snapshot, which then counts.
    five_k = result(0, 0.5, {"overrides": {}})
    long_run = result(0, 0.996, {"overrides": {}})
    long_run["budget"]["env_steps"] = 20000
    long_run["heldout_at"] = {"5000": {"seconds": 50.0, **result(0, 0.997, {})["heldout"]}}
    other_seed = result(1, 0.996, {"overrides": {}})
    other_seed["budget"]["env_steps"] = 20000
    other_seed["heldout_at"] = {"5000": {"seconds": 50.0, **result(1, 0.9, {})["heldout"]}}
    rows = load(written(tmp_path, [five_k, long_run, other_seed]))
    assert len(rows) == 5
    text, summary = medians(rows)
    assert summary[("ours", "-", 5000, 1, 0)][1] == pytest.approx((0.5 + 0.9) / 2)
    assert "| ours | - | 5000 | 1 | 0 | 2 |" in text and "| ours | - | 20000 | 1 | 0 | 2 |" in text
    assert "| ours | - | 5000 (of 20000) | 0 | 1 | 0 | 0.997 |" in table(rows)
    assert "| ours | - | 5000 | 0 | 1 | 0 | 0.500 |" in table(rows)


def test_runs_evaluated_from_other_starts_per_track_are_neither_pooled_nor_compared(tmp_path: Path):
    # Three starts per track drive other episodes than one: seed 0 evaluated both ways counts in
    # two groups, and SB3 with three starts is compared only with ours with three.
    runs = [
        result(0, 0.996, {"overrides": {}}),
        result(1, 0.996, {"overrides": {}}),
        result(0, 0.5, {"overrides": {}}, starts=3),
        result(0, 0.004, {"overrides": {}}, trainer="stable-baselines3 TD3 (ours settings)", starts=3),
    ]
    rows = load(written(tmp_path, runs))
    text, summary = medians(rows)
    assert summary[("ours", "-", 5000, 1, 0)][:2] == (0.996, 0.996)
    assert summary[("ours", "-", 5000, 3, 0)][:2] == (0.5, 0.5)
    assert "| ours | - | 5000 | 0 | 3 | 0 | 0.500 |" in table(rows)
    assert ratio_lines(text) == [
        "- 5000 steps (3 starts per track), ours / SB3 (our settings): median completion 125.00, mean completion "
        "125.00, median training wall time 1.00"
    ]
    labels = plot(rows, tmp_path / "plot.png")
    assert labels == [
        "td3-drive (mean; dots: seeds)",
        "td3-drive, 3 starts (mean; dots: seeds)",
        "SB3 TD3, our settings, 3 starts (mean; dots: seeds)",
    ]


def test_obstacles_in_training_are_part_of_the_variant_and_on_heldout_tracks_part_of_the_episodes(tmp_path: Path):
    # Obstacles on the training tracks are the environment both trainers learned on; obstacles on
    # the held-out tracks make other evaluation episodes. Runs from before obstacles had none.
    runs = [
        result(0, 0.996, {"overrides": {}}),
        result(1, 0.996, {"overrides": {}}, eval_obstacles=0),
        result(0, 0.9, {"overrides": {}, "obstacles": 8}, eval_obstacles=8),
        result(0, 0.7, {"overrides": {}, "obstacles": 8}, eval_obstacles=0),
        result(
            0,
            0.004,
            {"overrides": {}, "obstacles": 8},
            trainer="stable-baselines3 TD3 (ours settings)",
            eval_obstacles=8,
        ),
        result(0, 0.002, {"overrides": {}}, trainer="stable-baselines3 TD3 (ours settings)", eval_obstacles=8),
    ]
    rows = load(written(tmp_path, runs))
    text, summary = medians(rows)
    assert set(summary) == {
        ("ours", "-", 5000, 1, 0),
        ("ours", "obstacles 8", 5000, 1, 8),
        ("ours", "obstacles 8", 5000, 1, 0),
        ("sb3", "obstacles 8", 5000, 1, 8),
        ("sb3", "-", 5000, 1, 8),
    }
    assert summary[("ours", "-", 5000, 1, 0)][:2] == (0.996, 0.996)  # both seeds: the same episodes
    assert "| ours | obstacles 8 | 5000 | 0 | 1 | 8 | 0.900 |" in table(rows)
    assert ratio_lines(text) == [
        "- 5000 steps (8 obstacles per track), ours (obstacles 8) / SB3 (our settings, obstacles 8): median "
        "completion 225.00, mean completion 225.00, median training wall time 1.00"
    ]
    labels = plot(rows, tmp_path / "plot.png")
    assert "td3-drive, obstacles 8, 8 obstacles on held-out tracks (mean; dots: seeds)" in labels


def test_updates_per_step_are_part_of_the_variant_for_sb3_with_our_settings_not_at_its_defaults(tmp_path: Path):
    setting = {"reward.standstill_penalty": -1.0, "updates_per_step": 2}
    runs = [
        result(0, 0.996, {"overrides": {}, "trainer_params": setting}),
        result(0, 0.004, {"overrides": {}, "trainer_params": setting}, trainer="stable-baselines3 TD3 (ours settings)"),
        # one update per step: another setting, not compared with ours at two
        result(0, 0.5, {"overrides": {}, "trainer_params": {"reward.standstill_penalty": -1.0}}, trainer="sb3"),
        # SB3 at its defaults makes its own updates whatever the setting says: compared on the reward
        result(
            0, 0.002, {"overrides": {}, "trainer_params": setting}, trainer="stable-baselines3 TD3 (defaults settings)"
        ),
    ]
    text, summary = medians(load(written(tmp_path, runs)))
    assert {key[:2] for key in summary} == {
        ("ours", "standstill -1, updates 2"),
        ("sb3", "standstill -1, updates 2"),
        ("sb3", "standstill -1"),
        ("sb3-defaults", "standstill -1"),
    }
    assert [line.split(":")[0] for line in ratio_lines(text)] == [
        "- 5000 steps, ours (standstill -1, updates 2) / SB3 (our settings, standstill -1, updates 2)",
        "- 5000 steps, ours (standstill -1, updates 2) / SB3 (its defaults, standstill -1)",
    ]
