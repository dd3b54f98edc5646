"""When an episode ends, and whether its last transition is terminal.

Only true terminal states (collision, leaving the road) are `terminated`: the TD3 target zeroes
the bootstrap for them. Time limits and the end of the route are `truncated`: the car could have
driven on, so the value of the last state still counts. Precedence when several apply at once:
collision > off_road > goal > step_limit (a terminal state always wins over a truncation).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class EpisodeConfig:
    max_episode_steps: int = 1000  # truncate after this many actions
    off_road_lateral_m: float = 3.0  # |lateral offset from the route| beyond this is off the road
    goal_distance_m: float = 2.0  # the route end is reached when less than this remains
    terminate_on_collision: bool = True
    terminate_on_off_road: bool = True

    def __post_init__(self) -> None:
        if self.max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1, got {self.max_episode_steps}")
        if not (math.isfinite(self.off_road_lateral_m) and self.off_road_lateral_m > 0):
            raise ValueError(f"off_road_lateral_m must be > 0, got {self.off_road_lateral_m}")
        if not (math.isfinite(self.goal_distance_m) and self.goal_distance_m >= 0):
            raise ValueError(f"goal_distance_m must be >= 0, got {self.goal_distance_m}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Outcome:
    """What happened at one step; `reason` names the rule that ended the episode ('' = running)."""

    terminated: bool = False
    truncated: bool = False
    reason: str = ""
    collision: bool = False
    off_road: bool = False
    goal: bool = False

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated


def classify_step(
    config: EpisodeConfig, *, episode_steps: int, lateral_m: float, remaining_m: float, collisions: int
) -> Outcome:
    """Outcome after the `episode_steps`-th action of an episode (1-based)."""
    collision = collisions > 0
    off_road = not math.isfinite(lateral_m) or abs(lateral_m) > config.off_road_lateral_m
    goal = remaining_m < config.goal_distance_m
    flags = {"collision": collision, "off_road": off_road, "goal": goal}
    if collision and config.terminate_on_collision:
        return Outcome(terminated=True, reason="collision", **flags)
    if off_road and config.terminate_on_off_road:
        return Outcome(terminated=True, reason="off_road", **flags)
    if goal:
        return Outcome(truncated=True, reason="goal", **flags)
    if episode_steps >= config.max_episode_steps:
        return Outcome(truncated=True, reason="step_limit", **flags)
    return Outcome(**flags)


@dataclass
class EpisodeStats:
    """Running totals of one episode, for the log line, ~/episode and TensorBoard."""

    index: int
    steps: int = 0
    transitions: int = 0  # steps stored in the replay buffer (fewer than steps after gaps)
    episode_return: float = 0.0
    distance_m: float = 0.0  # path length driven, from odometry positions
    progress_m: float = 0.0  # distance gained along the route
    gaps: int = 0
    reason: str = ""
    terms: dict[str, float] = field(default_factory=dict)
    _last_xy: tuple[float, float] | None = None

    def move_to(self, x: float, y: float) -> None:
        if self._last_xy is not None:
            self.distance_m += math.hypot(x - self._last_xy[0], y - self._last_xy[1])
        self._last_xy = (x, y)

    def jump_to(self, x: float, y: float) -> None:
        """A position not driven to (a restarted simulator's car is in another world): the next
        distance counts from here."""
        self._last_xy = (x, y)

    def add_reward(self, total: float, terms: dict[str, float]) -> None:
        self.episode_return += total
        for name, value in terms.items():
            self.terms[name] = self.terms.get(name, 0.0) + value
