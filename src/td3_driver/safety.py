"""When the driver may pass the policy's action to the car, and when it must brake instead.

ROS-free and clock-injected, so every rule is unit-tested without timing: the node tells the
gate when valid inputs arrived, and asks it once per command what to send. Freshness is judged
by arrival time on a monotonic clock (image stamps are in simulation time, which may pause).
Also here: the decisions of rate-limited logging (log on each change of state, then at most
once per period while it lasts), so a stale camera gives one line, not twenty per second.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from enum import Enum

from td3_core.actions import ActionConfig, VehicleCommand, action_to_command

Clock = Callable[[], float]


class BrakeReason(Enum):
    """Why the car gets full brake instead of the policy's action."""

    NO_FRAME = "no camera frame received yet"
    STALE_FRAME = "camera frames stale"
    NO_ROUTE = "no route (waypoints) received"
    NO_ODOMETRY = "no odometry received yet"
    STALE_ODOMETRY = "odometry stale"
    NO_ACTION = "no action computed for the current inputs yet"
    INFERENCE_ERROR = "inference failed"
    NON_FINITE_ACTION = "network output is NaN or inf"


# Reasons that mean "an input is missing or old" (counted as stale events in diagnostics).
STALE_REASONS = frozenset(
    {
        BrakeReason.NO_FRAME,
        BrakeReason.STALE_FRAME,
        BrakeReason.NO_ROUTE,
        BrakeReason.NO_ODOMETRY,
        BrakeReason.STALE_ODOMETRY,
    }
)


@dataclass(frozen=True)
class Decision:
    command: VehicleCommand
    reason: BrakeReason | None = None  # None: the policy's action, clamped
    detail: str = ""  # human-readable cause, for the log and diagnostics

    @property
    def braking_for_safety(self) -> bool:
        return self.reason is not None

    def describe(self) -> str:
        if self.reason is None:
            return "driving"
        return f"full brake: {self.reason.value}" + (f" ({self.detail})" if self.detail else "")


def is_finite_action(action: Sequence[float] | None) -> bool:
    return action is not None and len(action) >= 2 and all(math.isfinite(float(a)) for a in action[:2])


@dataclass
class SafetyGate:
    """Freshness of the inputs + validity of the action → the command to send."""

    stale_timeout: float
    needs_vector: bool  # the policy reads odometry and the route, so they must be there too
    action_config: ActionConfig = field(default_factory=ActionConfig)
    clock: Clock = time.monotonic
    frame_topic: str = "camera"
    odometry_topic: str = "odometry"
    route_topic: str = "waypoints"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.stale_timeout) and self.stale_timeout > 0):
            raise ValueError(f"stale_timeout must be > 0, got {self.stale_timeout}")
        self._started = self.clock()
        self.last_frame: float | None = None
        self.last_odometry: float | None = None
        self.has_route = False

    # -- what arrived (valid messages only; bad ones never reach the gate)
    def frame_received(self) -> None:
        self.last_frame = self.clock()

    def odometry_received(self) -> None:
        self.last_odometry = self.clock()

    def route_received(self) -> None:
        self.has_route = True

    def _age(self, since: float | None) -> float:
        return self.clock() - (self._started if since is None else since)

    def frame_is_fresh(self) -> bool:
        return self.last_frame is not None and self._age(self.last_frame) <= self.stale_timeout

    def odometry_is_fresh(self) -> bool:
        return self.last_odometry is not None and self._age(self.last_odometry) <= self.stale_timeout

    def input_problem(self) -> Decision | None:
        """A brake decision if an input the policy needs is missing or older than stale_timeout."""
        timeout = f"stale_timeout {self.stale_timeout:g} s"
        if self.last_frame is None:
            return _brake(BrakeReason.NO_FRAME, f"nothing valid on {self.frame_topic} for {self._age(None):.2f} s")
        if not self.frame_is_fresh():
            age = self._age(self.last_frame)
            return _brake(BrakeReason.STALE_FRAME, f"last valid frame on {self.frame_topic} {age:.2f} s ago, {timeout}")
        if not self.needs_vector:
            return None
        if not self.has_route:
            return _brake(BrakeReason.NO_ROUTE, f"waiting for {self.route_topic}")
        if self.last_odometry is None:
            return _brake(BrakeReason.NO_ODOMETRY, f"nothing valid on {self.odometry_topic}")
        if not self.odometry_is_fresh():
            age = self._age(self.last_odometry)
            return _brake(BrakeReason.STALE_ODOMETRY, f"last valid {self.odometry_topic} {age:.2f} s ago, {timeout}")
        return None

    def decide(self, action: Sequence[float] | None, inference_error: str = "") -> Decision:
        """The command for this period: the clamped action, or full brake and why."""
        problem = self.input_problem()
        if problem is not None:
            return problem
        if inference_error:
            return _brake(BrakeReason.INFERENCE_ERROR, inference_error)
        if action is None:
            return _brake(BrakeReason.NO_ACTION)
        if not is_finite_action(action):
            return _brake(BrakeReason.NON_FINITE_ACTION, f"action {[float(a) for a in action]}")
        # action_to_command clamps to CarlaEgoVehicleControl's ranges (steer [-1, 1], pedals [0, 1]).
        return Decision(action_to_command(float(action[0]), float(action[1]), self.action_config))


def _brake(reason: BrakeReason, detail: str = "") -> Decision:
    return Decision(VehicleCommand.full_brake(), reason, detail)


class LogEvent(Enum):
    QUIET = "quiet"  # nothing to log
    CHANGED = "changed"  # the state is new: log it
    REMINDER = "reminder"  # the same state for another period: log it again if it is worth repeating


class StateLog:
    """Log a persisting state once when it starts, then at most every `period_s` while it lasts."""

    def __init__(self, period_s: float, clock: Clock = time.monotonic) -> None:
        self.period_s = period_s
        self.clock = clock
        self._state: Hashable = None
        self._last_logged = -math.inf
        self.changes = 0

    def update(self, state: Hashable) -> LogEvent:
        now = self.clock()
        if state != self._state:
            self._state = state
            self._last_logged = now
            self.changes += 1
            return LogEvent.CHANGED
        if now - self._last_logged >= self.period_s:
            self._last_logged = now
            return LogEvent.REMINDER
        return LogEvent.QUIET


class ThrottledLog:
    """At most one line per key (e.g. a topic's bad messages) per `period_s`; counts the rest."""

    def __init__(self, period_s: float, clock: Clock = time.monotonic) -> None:
        self.period_s = period_s
        self.clock = clock
        self._last: dict[Hashable, float] = {}
        self._suppressed: dict[Hashable, int] = {}

    def should_log(self, key: Hashable) -> tuple[bool, int]:
        """(log now?, how many were suppressed since the last line of this key)."""
        now = self.clock()
        if now - self._last.get(key, -math.inf) >= self.period_s:
            self._last[key] = now
            return True, self._suppressed.pop(key, 0)
        self._suppressed[key] = self._suppressed.get(key, 0) + 1
        return False, 0
