"""The driving reward: a weighted sum of five terms, each also returned for logging.

    efficiency    speed along the lane v*cos(heading error) relative to target_speed_mps:
                  rises linearly to 1 at the target, falls back to 0 at twice the target, >= -1;
                  with overspeed_penalty below -1 it falls faster above the target (at -5 it
                  is 0 at 1.2x the target), so riding a speed limiter above the target costs
                  nearly all of it;
                  with standstill_penalty < 0 it rises from standstill_penalty at a standstill
                  instead of from 0, so standing still costs every step (without it a policy
                  that only brakes pays less than one still learning to drive, and some seeds
                  settle there)
    lane_keeping  penalties per metre of |lateral offset| and per radian of |heading error|
    comfort       penalties on the steering magnitude (squared), on the change of action
                  between steps and on longitudinal jerk
    safety        collision, off-road (per step while off the road) and lane invasion (per event)
    progress      metres gained along the route, a bonus each time a new waypoint_spacing_m of
                  route is first reached, and a bonus when the goal (route end) is reached;
                  with progress_speed_cap > 0, a step pays at most the metres driven at
                  progress_speed_cap x target_speed_mps, so speed above it earns nothing (without
                  the cap, progress outweighs what efficiency takes back above the target speed
                  for an immature critic, and learned policies drive at twice the target)
    The target speed: target_speed_mps, and with curve_lateral_accel_mps2 > 0 at most
    sqrt(curve_lateral_accel_mps2 / curvature) for the route's mean curvature over the next
    CURVATURE_PREVIEW_M (td3_core.route): slower ahead of and in tight curves, as a driver is
    asked to; efficiency and the progress cap both measure against it.

All `*_penalty` values are <= 0 and are added as they are, bonuses are >= 0; the five weights
scale the terms. The breakdown holds the weighted terms, so its values sum to the total.
ROS-free: the trainer feeds it numbers taken from its observation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from td3_core.route import RouteProjection
from td3_trainer.episode import Outcome

TERMS = ("efficiency", "lane_keeping", "comfort", "safety", "progress")


NON_NEGATIVE = ("progress_per_m", "progress_speed_cap", "curve_lateral_accel_mps2")


@dataclass(frozen=True)
class RewardConfig:
    efficiency_weight: float = 1.0
    lane_keeping_weight: float = 1.0
    comfort_weight: float = 1.0
    safety_weight: float = 1.0
    progress_weight: float = 1.0
    target_speed_mps: float = 8.33  # 30 km/h
    lateral_penalty: float = -0.5  # per metre of |lateral offset|
    heading_penalty: float = -0.5  # per radian of |heading error|
    steer_penalty: float = -0.2  # per unit of steer^2 (action[0]): steady steering costs, a curve still pays
    action_change_penalty: float = -0.1  # per unit of |d steer| + |d accel| between steps
    jerk_penalty: float = -0.005  # per m/s^3 of |longitudinal jerk|
    standstill_penalty: float = 0.0  # efficiency at a standstill, rising linearly to 1 at the target speed
    overspeed_penalty: float = -1.0  # efficiency lost per target's worth of speed above the target
    max_jerk: float = 50.0  # m/s^3, jerk is clipped here (one bad speed reading stays bounded)
    collision_penalty: float = -100.0
    off_road_penalty: float = -50.0
    lane_invasion_penalty: float = -5.0  # per lane-invasion event
    progress_per_m: float = 1.0  # per metre gained along the route
    max_progress_per_step_m: float = 5.0  # clip of one step's progress (projection jumps)
    progress_speed_cap: float = 0.0  # > 0: progress paid up to this x target_speed_mps x dt per step; 0 = none
    curve_lateral_accel_mps2: float = 0.0  # > 0: the target speed in curves is sqrt(this / curvature); 0 = none
    waypoint_bonus: float = 1.0
    waypoint_spacing_m: float = 10.0
    goal_bonus: float = 100.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not math.isfinite(value):
                raise ValueError(f"{f.name} must be finite, got {value}")
            if f.name.endswith("_penalty") and value > 0:
                raise ValueError(f"{f.name} is a penalty and must be <= 0, got {value}")
            non_negative = f.name.endswith(("_weight", "_bonus")) or f.name in NON_NEGATIVE
            if non_negative and value < 0:
                raise ValueError(f"{f.name} must be >= 0, got {value}")
        for name in ("target_speed_mps", "waypoint_spacing_m", "max_jerk", "max_progress_per_step_m"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)

    def target_speed(self, curvature: float) -> float:
        """The speed asked for on road of this curvature (1/m)."""
        if self.curve_lateral_accel_mps2 > 0.0 and curvature > 0.0:
            return min(self.target_speed_mps, math.sqrt(self.curve_lateral_accel_mps2 / curvature))
        return self.target_speed_mps

    @classmethod
    def from_dict(cls, values: dict) -> RewardConfig:
        return cls(**{k: float(v) for k, v in values.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class StepState:
    """What the reward reads after one action: the new state and the events of the tick."""

    speed: float  # m/s
    lateral: float  # m, signed offset from the route (+ left)
    heading_error: float  # rad, car yaw - route yaw, in (-pi, pi]
    distance_along: float  # m from the route start to the car's projection
    action: np.ndarray  # the action that led here, 2 values in [-1, 1]
    collision: bool = False
    off_road: bool = False
    lane_invasions: int = 0
    goal: bool = False
    curvature: float = 0.0  # 1/m, of the route ahead (RouteProjection.curvature_ahead)

    @classmethod
    def after(
        cls,
        projection: RouteProjection,
        outcome: Outcome,
        *,
        speed: float,
        heading_error: float,
        action: np.ndarray,
        lane_invasions: int,
    ) -> StepState:
        """The state after `action`, from the car's projection on the route and the step's outcome."""
        return cls(
            speed=speed,
            lateral=projection.lateral,
            heading_error=heading_error,
            distance_along=projection.distance_along,
            action=np.asarray(action),
            collision=outcome.collision,
            off_road=outcome.off_road,
            lane_invasions=lane_invasions,
            goal=outcome.goal,
            curvature=projection.curvature_ahead,
        )


@dataclass(frozen=True)
class RewardResult:
    total: float
    terms: dict[str, float]  # weighted terms; they sum to total


class RewardFunction:
    """Stateful across the steps of an episode (progress, previous action, speed history)."""

    def __init__(self, config: RewardConfig, dt: float) -> None:
        if dt <= 0:
            raise ValueError(f"dt must be > 0, got {dt}")
        self.config = config
        self.dt = dt
        self.reset(0.0, 0.0)

    def reset(self, distance_along: float, speed: float) -> None:
        """New episode starting at `distance_along` on the route."""
        self._best_distance = distance_along
        self._next_waypoint = (math.floor(distance_along / self.config.waypoint_spacing_m) + 1) * (
            self.config.waypoint_spacing_m
        )
        self._prev_action: np.ndarray | None = None
        self.resync(distance_along, speed)

    def resync(self, distance_along: float, speed: float) -> None:
        """After a gap in the frames: nothing that happened in it earns or costs anything."""
        self._prev_distance = distance_along
        self._speeds = [speed]
        self._prev_action = None

    def step(self, state: StepState) -> RewardResult:
        c = self.config
        raw = {
            "efficiency": self._efficiency(state),
            "lane_keeping": c.lateral_penalty * abs(state.lateral) + c.heading_penalty * abs(state.heading_error),
            "comfort": self._comfort(state),
            "safety": c.collision_penalty * state.collision
            + c.off_road_penalty * state.off_road
            + c.lane_invasion_penalty * max(state.lane_invasions, 0),
            "progress": self._progress(state),
        }
        terms = {name: getattr(c, f"{name}_weight") * value for name, value in raw.items()}
        return RewardResult(total=float(sum(terms.values())), terms=terms)

    def _efficiency(self, state: StepState) -> float:
        target = self.config.target_speed(state.curvature)
        along_lane = state.speed * math.cos(state.heading_error)
        if along_lane <= target:
            fraction = along_lane / target
            return max(fraction + self.config.standstill_penalty * (1.0 - fraction), -1.0)
        return max(1.0 + self.config.overspeed_penalty * (along_lane - target) / target, -1.0)

    def _comfort(self, state: StepState) -> float:
        c = self.config
        action = np.asarray(state.action, dtype=np.float64).reshape(-1)
        change = 0.0 if self._prev_action is None else float(np.abs(action - self._prev_action).sum())
        self._prev_action = action.copy()
        self._speeds = [*self._speeds[-2:], state.speed]
        jerk = 0.0
        if len(self._speeds) == 3:
            v0, v1, v2 = self._speeds
            jerk = min(abs(v2 - 2.0 * v1 + v0) / (self.dt * self.dt), c.max_jerk)
        steer = float(action[0]) if action.size else 0.0
        return c.steer_penalty * steer * steer + c.action_change_penalty * change + c.jerk_penalty * jerk

    def _progress(self, state: StepState) -> float:
        c = self.config
        gained = state.distance_along - self._prev_distance
        gained = min(max(gained, -c.max_progress_per_step_m), c.max_progress_per_step_m)
        self._prev_distance = state.distance_along
        if c.progress_speed_cap > 0.0:
            gained = min(gained, c.progress_speed_cap * c.target_speed(state.curvature) * self.dt)
        reward = c.progress_per_m * gained
        # Bonuses only for new ground: driving back and forth over a mark earns it once, and a
        # jump of the projection earns at most one step's worth.
        if state.distance_along > self._best_distance:
            self._best_distance = min(state.distance_along, self._best_distance + c.max_progress_per_step_m)
            while self._best_distance >= self._next_waypoint:
                reward += c.waypoint_bonus
                self._next_waypoint += c.waypoint_spacing_m
        if state.goal:
            reward += c.goal_bonus
        return reward
