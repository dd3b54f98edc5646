"""The environment contract of the training loop, and the one scoring of a step.

An environment starts an episode with `reset(seed)` (its first Observation) and takes a step in
two halves, so that gradient updates can overlap the simulator's tick:

    send(action)   command for the newest observation
    receive()      the next observation, and the Step of an action that is now complete

A Step is complete when the events of the tick its action produced are known. In process that
is at once; over the bridge a tick's collision or lane-invasion event may come with the next
tick, so the ROS environment completes a step one tick later (after the next action went out).
`flush()` completes a step still open when the loop stops, with the events known so far.

Both environments score a step through StepScorer: the episode rules (td3_trainer.episode),
the reward (td3_trainer.reward) and what a gap in the frames means.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from td3_core.route import RouteProjection
from td3_trainer.episode import EpisodeConfig, Outcome, classify_step
from td3_trainer.reward import RewardFunction, StepState
from td3_trainer.tick_sync import GapKind

EVAL_SEED_BASE = 1_000_000  # with a reset service: evaluation episode k has seed EVAL_SEED_BASE + k


@dataclass(frozen=True)
class Observation:
    frames: np.ndarray  # (frame_stack, H, W) uint8, oldest first
    frame: np.ndarray  # the newest (H, W) frame: what the replay buffer stores
    vector: np.ndarray  # float32 vector state (empty without use_vector_state)
    stamp_ns: int
    x: float
    y: float
    speed: float  # m/s
    projection: RouteProjection
    heading_error: float
    collisions: int = 0
    lane_invasions: int = 0
    late_collisions: int = 0  # events of the PREVIOUS tick that came with this one (own, earlier stamp)
    late_lane_invasions: int = 0
    new_segment: bool = True  # first frame of an episode or after a gap: no transition into it
    gap: GapKind = GapKind.NONE
    odometry_matched: bool = True


@dataclass(frozen=True)
class Step:
    """The result of one action: what it led to, its reward and whether the episode ended."""

    before: Observation
    action: np.ndarray
    observation: Observation  # after the action
    reward: float
    terminated: bool  # a terminal state (collision, off the road): no bootstrap
    truncated: bool  # the episode ended without a terminal state (goal, step limit, restart)
    continuity_lost: bool  # frames are missing between before and observation: no transition
    info: dict = field(default_factory=dict)  # reason, reward terms, progress_m, episode_steps

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated


@dataclass(frozen=True)
class Received:
    observation: Observation  # the newest one: the next action answers it
    finished: Step | None  # a step completed by this tick (None: none yet)


class Environment(Protocol):
    def reset(self, seed: int) -> Observation | None:
        """Start a training episode (seed < 0: the next training start; >= 0: that evaluation episode);
        None when stopping or when no episode can be started."""

    def evaluation_reset(self, k: int, count: int) -> Observation | None:
        """Start the k-th of `count` evaluation episodes: always the same ones, from start poses
        (or tracks) that training never has."""

    def send(self, action: np.ndarray) -> None: ...

    def receive(self) -> Received | None:
        """None when stopping."""

    def flush(self) -> Step | None:
        """The step still open when the loop stops, with the events known so far."""

    def brake(self) -> None: ...


def with_late_events(after: Observation, following: Observation) -> Observation:
    """`after` with the events of its tick that came only with the next one."""
    if not (following.late_collisions or following.late_lane_invasions):
        return after
    return replace(
        after,
        collisions=after.collisions + following.late_collisions,
        lane_invasions=after.lane_invasions + following.late_lane_invasions,
    )


class StepScorer:
    """Reward and episode end of each action of an episode (stateful: the reward's progress,
    previous action and speed history, and the step count of the episode)."""

    def __init__(self, episode: EpisodeConfig, reward: RewardFunction) -> None:
        self.episode = episode
        self.reward_fn = reward
        self.steps = 0

    def start(self, first: Observation) -> None:
        self.steps = 0
        self.reward_fn.reset(first.projection.distance_along, first.speed)

    def score(self, before: Observation, action: np.ndarray, after: Observation) -> Step:
        self.steps += 1
        projection = after.projection
        outcome = classify_step(
            self.episode,
            episode_steps=self.steps,
            lateral_m=projection.lateral,
            remaining_m=projection.remaining,
            collisions=after.collisions,
        )
        info: dict = {"episode_steps": self.steps, "reason": outcome.reason, "terms": {}, "progress_m": 0.0}
        if after.gap is GapKind.BACKWARDS:
            info["reason"] = "restart"
            return Step(before, action, after, 0.0, False, True, True, info)
        if after.new_segment:
            # Frames are missing between `before` and `after`: no transition across them, and the
            # reward forgets what it cannot see.
            self.reward_fn.resync(projection.distance_along, after.speed)
            return self._step(before, action, after, 0.0, outcome, True, info)
        state = StepState.after(
            projection,
            outcome,
            speed=after.speed,
            heading_error=after.heading_error,
            action=action,
            lane_invasions=after.lane_invasions,
        )
        result = self.reward_fn.step(state)
        info["terms"] = result.terms
        info["progress_m"] = projection.distance_along - before.projection.distance_along
        return self._step(before, action, after, result.total, outcome, False, info)

    @staticmethod
    def _step(
        before: Observation,
        action: np.ndarray,
        after: Observation,
        reward: float,
        outcome: Outcome,
        lost: bool,
        info: dict,
    ) -> Step:
        return Step(before, action, after, reward, outcome.terminated, outcome.truncated, lost, info)
