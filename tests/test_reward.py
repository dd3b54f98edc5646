"""Reward terms and their signs, and the episode rules (terminal vs truncated); no ROS."""

from __future__ import annotations

import math

import numpy as np
import pytest

from td3_trainer.episode import EpisodeConfig, EpisodeStats, classify_step
from td3_trainer.reward import TERMS, RewardConfig, RewardFunction, StepState

DT = 0.05
ZERO = np.zeros(2)


def state(**overrides) -> StepState:
    values = {"speed": 0.0, "lateral": 0.0, "heading_error": 0.0, "distance_along": 0.0, "action": ZERO}
    values.update(overrides)
    return StepState(**values)


def only(term: str, **weights: float) -> RewardConfig:
    """A config that weighs one term only."""
    return RewardConfig(**{f"{name}_weight": float(name == term) for name in TERMS}, **weights)


def reward(config: RewardConfig, *steps: StepState, start: float = 0.0):
    fn = RewardFunction(config, DT)
    fn.reset(start, 0.0)
    return [fn.step(s) for s in steps]


def test_terms_sum_to_the_total():
    result = reward(RewardConfig(), state(speed=5.0, lateral=0.7, heading_error=0.2, distance_along=0.3))[0]
    assert set(result.terms) == set(TERMS)
    assert result.total == pytest.approx(sum(result.terms.values()))


def test_efficiency_peaks_at_the_target_speed_along_the_lane():
    config = only("efficiency", target_speed_mps=10.0)
    slow, at_target, fast = (reward(config, state(speed=v))[0].total for v in (5.0, 10.0, 15.0))
    assert slow == pytest.approx(0.5)
    assert at_target == pytest.approx(1.0)
    assert fast == pytest.approx(0.5)
    assert reward(config, state(speed=10.0, heading_error=math.pi / 3))[0].total == pytest.approx(0.5)
    assert reward(config, state(speed=10.0, heading_error=math.pi))[0].total == pytest.approx(-1.0)
    assert reward(config, state(speed=0.0))[0].total == 0.0


def test_lane_keeping_penalises_offset_and_heading_error_in_both_directions():
    config = only("lane_keeping", lateral_penalty=-0.5, heading_penalty=-1.0)
    centred = reward(config, state())[0].total
    assert centred == 0.0
    assert reward(config, state(lateral=2.0))[0].total == pytest.approx(-1.0)
    assert reward(config, state(lateral=-2.0))[0].total == pytest.approx(-1.0)
    assert reward(config, state(heading_error=-0.3))[0].total == pytest.approx(-0.3)


def test_comfort_penalises_a_change_of_action_not_the_first_action():
    config = only("comfort", action_change_penalty=-0.1, jerk_penalty=0.0, steer_penalty=0.0)
    actions = ([1.0, 1.0], [1.0, 1.0], [0.0, -1.0])
    first, same, changed = reward(config, *(state(action=np.array(a)) for a in actions))
    assert first.total == 0.0
    assert same.total == 0.0
    assert changed.total == pytest.approx(-0.3)


def test_comfort_penalises_the_steering_magnitude_squared_in_both_directions():
    config = only("comfort", action_change_penalty=0.0, jerk_penalty=0.0, steer_penalty=-0.2)
    for steer, expected in ((0.0, 0.0), (0.5, -0.05), (-0.5, -0.05), (1.0, -0.2)):
        assert reward(config, state(action=np.array([steer, 0.7])))[0].total == pytest.approx(expected)


def test_comfort_penalises_jerk_and_clips_it():
    config = only("comfort", action_change_penalty=0.0, jerk_penalty=-0.01, max_jerk=50.0, steer_penalty=0.0)
    steady = reward(config, state(speed=1.0), state(speed=2.0), state(speed=3.0))
    assert [r.total for r in steady] == pytest.approx([0.0, 0.0, 0.0])  # constant acceleration
    jolt = reward(config, state(speed=0.0), state(speed=0.0), state(speed=0.01))
    assert jolt[-1].total == pytest.approx(-0.01 * 0.01 / DT**2)
    huge = reward(config, state(speed=0.0), state(speed=0.0), state(speed=30.0))
    assert huge[-1].total == pytest.approx(-0.01 * 50.0)


def test_safety_penalties():
    config = only("safety")
    assert reward(config, state())[0].total == 0.0
    assert reward(config, state(collision=True))[0].total == -100.0
    assert reward(config, state(off_road=True))[0].total == -50.0
    assert reward(config, state(lane_invasions=2))[0].total == -10.0
    assert reward(config, state(collision=True, off_road=True))[0].total == -150.0


def test_progress_rewards_distance_gained_and_penalises_going_back():
    config = only("progress", waypoint_bonus=0.0)
    forward, backward = reward(config, state(distance_along=1.5), state(distance_along=1.0))
    assert forward.total == pytest.approx(1.5)
    assert backward.total == pytest.approx(-0.5)


def test_waypoint_bonus_once_per_new_mark_and_goal_bonus():
    config = only("progress", progress_per_m=0.0, waypoint_bonus=1.0, waypoint_spacing_m=10.0, goal_bonus=100.0)
    distances = [4.0, 8.0, 10.5, 9.0, 11.0, 14.0, 18.0, 20.2]
    totals = [r.total for r in reward(config, *(state(distance_along=d) for d in distances))]
    assert totals == [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    assert reward(config, state(distance_along=1.0, goal=True))[0].total == 100.0


def test_a_projection_jump_earns_at_most_one_step():
    config = only("progress", waypoint_bonus=1.0, waypoint_spacing_m=10.0, max_progress_per_step_m=5.0)
    assert reward(config, state(distance_along=100.0))[0].total == pytest.approx(5.0)


def test_resync_skips_what_happened_in_a_gap():
    fn = RewardFunction(only("progress", waypoint_bonus=0.0), DT)
    fn.reset(0.0, 0.0)
    fn.step(state(distance_along=1.0))
    fn.resync(4.0, 0.0)
    assert fn.step(state(distance_along=4.5)).total == pytest.approx(0.5)


def test_weights_scale_their_terms():
    base = reward(RewardConfig(), state(speed=4.0, lateral=1.0, distance_along=1.0, collision=True))[0]
    doubled = reward(
        RewardConfig(safety_weight=2.0), state(speed=4.0, lateral=1.0, distance_along=1.0, collision=True)
    )[0]
    assert doubled.terms["safety"] == pytest.approx(2 * base.terms["safety"])
    assert doubled.terms["efficiency"] == pytest.approx(base.terms["efficiency"])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("collision_penalty", 10.0),
        ("goal_bonus", -1.0),
        ("target_speed_mps", 0.0),
        ("progress_weight", -1.0),
        ("lateral_penalty", math.nan),
    ],
)
def test_invalid_reward_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        RewardConfig(**{field: value})


# --------------------------------------------------------------------------- episode rules

RULES = EpisodeConfig(max_episode_steps=10, off_road_lateral_m=3.0, goal_distance_m=2.0)


def outcome(**overrides):
    values = {"episode_steps": 1, "lateral_m": 0.0, "remaining_m": 100.0, "collisions": 0}
    values.update(overrides)
    return classify_step(RULES, **values)


def test_running_episode():
    result = outcome()
    assert not result.done
    assert result.reason == ""


def test_collision_is_terminal():
    result = outcome(collisions=1)
    assert (result.terminated, result.truncated, result.reason) == (True, False, "collision")


def test_off_road_is_terminal_on_either_side():
    assert outcome(lateral_m=3.1).terminated
    assert outcome(lateral_m=-3.1).reason == "off_road"
    assert not outcome(lateral_m=2.9).done
    assert outcome(lateral_m=math.nan).terminated


def test_step_limit_truncates_without_terminating():
    assert not outcome(episode_steps=9).done
    result = outcome(episode_steps=10)
    assert (result.terminated, result.truncated, result.reason) == (False, True, "step_limit")


def test_goal_ends_the_episode_but_is_not_terminal():
    result = outcome(remaining_m=1.0)
    assert (result.terminated, result.truncated, result.reason) == (False, True, "goal")
    assert result.goal


def test_a_terminal_state_wins_over_truncation():
    result = outcome(episode_steps=10, remaining_m=0.5, collisions=2, lateral_m=5.0)
    assert (result.terminated, result.truncated, result.reason) == (True, False, "collision")
    assert result.off_road and result.goal


def test_terminal_rules_can_be_switched_off_but_still_flag():
    rules = EpisodeConfig(terminate_on_collision=False, terminate_on_off_road=False)
    result = classify_step(rules, episode_steps=1, lateral_m=9.0, remaining_m=100.0, collisions=1)
    assert not result.done
    assert result.collision and result.off_road


def test_episode_stats_accumulate_distance_and_terms():
    stats = EpisodeStats(index=0)
    stats.move_to(0.0, 0.0)
    stats.move_to(3.0, 4.0)
    stats.add_reward(1.5, {"efficiency": 1.0, "safety": 0.5})
    stats.add_reward(-1.0, {"efficiency": -1.0})
    assert stats.distance_m == pytest.approx(5.0)
    assert stats.episode_return == pytest.approx(0.5)
    assert stats.terms == {"efficiency": 0.0, "safety": 0.5}
    stats.jump_to(100.0, 4.0)  # a restarted simulator's car: not driven
    stats.move_to(100.0, 5.0)
    assert stats.distance_m == pytest.approx(6.0)


def test_a_car_a_hair_behind_the_start_of_a_closed_route_is_not_at_the_goal():
    from td3_core.route import Route

    square = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0], [0.0, 0.0]])
    route = Route(square)
    projection = route.project(-1e-6, 0.0)  # the route's start and end are the same point
    assert projection.segment == 0
    assert projection.remaining == pytest.approx(40.0)
    assert not outcome(remaining_m=projection.remaining).done


def test_with_the_progress_speed_cap_speed_above_the_target_earns_no_more_progress():
    capped = only("progress", target_speed_mps=10.0, progress_speed_cap=1.0, waypoint_bonus=0.0)
    uncapped = only("progress", target_speed_mps=10.0, waypoint_bonus=0.0)
    # DT = 0.05 s: the target speed covers 0.5 m a step.
    for metres, paid in ((0.3, 0.3), (0.5, 0.5), (1.2, 0.5), (-0.4, -0.4)):
        assert reward(capped, state(distance_along=metres))[0].total == pytest.approx(paid)
        assert reward(uncapped, state(distance_along=metres))[0].total == pytest.approx(metres)
    # Per step, driving at twice the target now pays less than driving at it (efficiency falls).
    both = RewardConfig(target_speed_mps=10.0, progress_speed_cap=1.0, waypoint_bonus=0.0)
    at_target = reward(both, state(speed=10.0, distance_along=0.5))[0].total
    twice = reward(both, state(speed=20.0, distance_along=1.0))[0].total
    assert twice < at_target
    with pytest.raises(ValueError, match="progress_speed_cap"):
        RewardConfig(progress_speed_cap=-1.0)


def test_with_a_curve_lateral_acceleration_the_target_speed_falls_in_tight_curves():
    config = only("efficiency", target_speed_mps=8.33, curve_lateral_accel_mps2=2.0)
    assert config.target_speed(0.0) == 8.33
    assert config.target_speed(1 / 30) == pytest.approx(math.sqrt(60.0))  # 7.75 m/s on a 30 m radius
    assert config.target_speed(1 / 15) == pytest.approx(math.sqrt(30.0))  # 5.48 m/s on a 15 m radius
    assert config.target_speed(1 / 1000) == 8.33  # gentle bends keep the straight's target
    # On a 15 m radius, 5.5 m/s earns the full efficiency and the straight's 8.33 m/s much less.
    curve = 1 / 15
    slow, fast = (reward(config, state(speed=v, curvature=curve))[0].total for v in (math.sqrt(30.0), 8.33))
    assert slow == pytest.approx(1.0) and fast < 0.5
    assert reward(only("efficiency", target_speed_mps=8.33), state(speed=8.33, curvature=curve))[0].total == 1.0
    # The progress cap measures against the same target: 5.48 m/s covers 0.274 m a step.
    capped = only("progress", progress_speed_cap=1.0, curve_lateral_accel_mps2=2.0, waypoint_bonus=0.0)
    assert reward(capped, state(distance_along=0.4, curvature=curve))[0].total == pytest.approx(math.sqrt(30.0) * DT)
    assert reward(capped, state(distance_along=0.4))[0].total == pytest.approx(0.4)
    with pytest.raises(ValueError, match="curve_lateral_accel_mps2"):
        RewardConfig(curve_lateral_accel_mps2=-1.0)


def test_with_a_standstill_penalty_standing_still_costs_every_step_and_the_target_still_pays_most():
    standing_costs = only("efficiency", target_speed_mps=8.0, standstill_penalty=-0.5)
    free = only("efficiency", target_speed_mps=8.0)
    for speed, paid, paid_without in ((0.0, -0.5, 0.0), (4.0, 0.25, 0.5), (8.0, 1.0, 1.0), (12.0, 0.5, 0.5)):
        assert reward(standing_costs, state(speed=speed))[0].total == pytest.approx(paid)
        assert reward(free, state(speed=speed))[0].total == pytest.approx(paid_without)
    # driving backwards along the lane is worse still, and the term stays >= -1
    assert reward(standing_costs, state(speed=-4.0))[0].total == pytest.approx(-1.0)
    assert reward(only("efficiency", standstill_penalty=-1.0), state(speed=-0.1))[0].total == -1.0
    with pytest.raises(ValueError, match="standstill_penalty"):
        RewardConfig(standstill_penalty=0.5)


def test_an_overspeed_penalty_makes_speed_above_the_target_cost_faster():
    gentle = only("efficiency", target_speed_mps=8.0)  # the default -1: 0 at twice the target
    steep = only("efficiency", target_speed_mps=8.0, overspeed_penalty=-5.0)
    speeds_and_pay = ((4.0, 0.5, 0.5), (8.0, 1.0, 1.0), (8.8, 0.5, 0.9), (9.6, 0.0, 0.8), (16.0, -1.0, 0.0))
    for speed, paid, paid_gently in speeds_and_pay:
        assert reward(steep, state(speed=speed))[0].total == pytest.approx(paid)
        assert reward(gentle, state(speed=speed))[0].total == pytest.approx(paid_gently)
    # against the curve's lower target too: 8 m/s on a 15 m radius with a = 2 (target 5.48) is far over
    curve = only("efficiency", target_speed_mps=8.0, overspeed_penalty=-5.0, curve_lateral_accel_mps2=2.0)
    assert reward(curve, state(speed=8.0, curvature=1 / 15))[0].total == -1.0
    assert reward(only("efficiency", overspeed_penalty=0.0), state(speed=30.0))[0].total == 1.0
    with pytest.raises(ValueError, match="overspeed_penalty"):
        RewardConfig(overspeed_penalty=1.0)
