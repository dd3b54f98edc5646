"""When the driver may pass the policy's action to the car, and when it must brake instead.

ROS-free and clock-injected, so every rule is unit-tested without timing: the node tells the
gate when valid inputs arrived (with their header stamps) and what /clock says, and asks it once
per command what to send. Freshness is judged by the progress of the data, not by arrival:

- a frame or odometry whose stamp does not advance (a frozen sensor re-sending its last message)
  refreshes nothing; stamps that go back (a restarted simulator) or jump ahead by more than
  stale_timeout (lost frames) start a new frame history;
- while /clock is alive (a message within `watchdog_timeout` wall seconds) age is simulation time:
  /clock minus the newest stamp, against stale_timeout, so a simulator slower than real time is
  not taken for a dead one; a wall-clock watchdog (no new stamp for `watchdog_timeout`) still
  catches a frozen source and a stopped simulator;
- without /clock (a real car, stamps in wall time) age is wall time since the stamp last
  advanced, against stale_timeout.

Also here: the decisions of rate-limited logging (log on each change of state, then at most
once per period while it lasts), so a stale camera gives one line, not twenty per second.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum

from td3_core.actions import ActionConfig, VehicleCommand, action_to_command

Clock = Callable[[], float]


class BrakeReason(Enum):
    """Why the car gets full brake instead of the policy's action."""

    OTHER_COMMANDER = "another node publishes vehicle control commands"
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


class Arrival(Enum):
    """How a message's stamp relates to the newest one before it."""

    FIRST = "first"
    ADVANCED = "advanced"
    REPEATED = "repeated"  # the same stamp again: no new data
    BACKWARDS = "backwards"  # older than the newest: a restarted source
    JUMPED = "jumped"  # ahead by more than the jump bound: data in between was lost


@dataclass
class StampTrack:
    """Progress of one input stream's header stamps (seconds) on the wall (monotonic) clock."""

    jump_s: float
    last_stamp: float | None = None
    last_progress: float | None = None  # wall time the stamp last changed
    repeated: int = 0  # messages that repeated the newest stamp, in all

    def classify(self, stamp: float | None) -> Arrival:
        """What `stamp` would be (pure); None = a source without stamps: every message is new."""
        if self.last_stamp is None:
            return Arrival.FIRST
        if stamp is None:
            return Arrival.ADVANCED
        if stamp == self.last_stamp:
            return Arrival.REPEATED
        if stamp < self.last_stamp:
            return Arrival.BACKWARDS
        return Arrival.JUMPED if stamp - self.last_stamp > self.jump_s else Arrival.ADVANCED

    def arrive(self, stamp: float | None, now: float) -> Arrival:
        kind = self.classify(stamp)
        if kind is Arrival.REPEATED:
            self.repeated += 1
        else:
            self.last_stamp = stamp if stamp is not None else (self.last_stamp or 0.0)
            self.last_progress = now
        return kind


@dataclass
class SafetyGate:
    """Freshness of the inputs + validity of the action → the command to send."""

    stale_timeout: float
    needs_vector: bool  # the policy reads odometry and the route, so they must be there too
    action_config: ActionConfig = field(default_factory=ActionConfig)  # with a speed limit, odometry is needed
    clock: Clock = time.monotonic
    frame_topic: str = "camera"
    odometry_topic: str = "odometry"
    route_topic: str = "waypoints"
    watchdog_timeout: float = 1.0  # wall seconds without a new stamp: stale whatever /clock says

    def __post_init__(self) -> None:
        for name in ("stale_timeout", "watchdog_timeout"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be > 0, got {value}")
        self._started = self.clock()
        self.frames = StampTrack(jump_s=self.stale_timeout)
        self.odometry = StampTrack(jump_s=self.stale_timeout)
        self.has_route = False
        self.sim_time: float | None = None  # newest /clock
        self._clock_arrival: float | None = None
        self.other_commanders: tuple[str, ...] = ()

    # -- what arrived (valid messages only; bad ones never reach the gate)
    def frame_received(self, stamp: float | None = None) -> Arrival:
        return self.frames.arrive(stamp, self.clock())

    def odometry_received(self, stamp: float | None = None) -> Arrival:
        return self.odometry.arrive(stamp, self.clock())

    def route_received(self) -> None:
        self.has_route = True

    def clock_received(self, sim_time: float) -> None:
        self.sim_time, self._clock_arrival = sim_time, self.clock()

    @property
    def last_frame(self) -> float | None:
        return self.frames.last_progress

    @property
    def last_odometry(self) -> float | None:
        return self.odometry.last_progress

    def on_sim_time(self) -> bool:
        """Ages are judged in simulation time: /clock is alive."""
        return self._clock_arrival is not None and self._age(self._clock_arrival) <= self.watchdog_timeout

    def _age(self, since: float | None) -> float:
        return self.clock() - (self._started if since is None else since)

    def _staleness(self, track: StampTrack, what: str) -> str | None:
        """Why `track` is stale (None: fresh); it must have had a first message."""
        wall_age = self._age(track.last_progress)
        frozen = f" ({track.repeated} repeated its stamp)" if track.repeated else ""
        if self.on_sim_time() and track.last_stamp is not None and self.sim_time is not None:
            sim_age = self.sim_time - track.last_stamp
            if sim_age > self.stale_timeout:
                return (
                    f"newest {what} is {sim_age:.2f} s old in simulation time (/clock {self.sim_time:.2f}){frozen}, "
                    f"stale_timeout {self.stale_timeout:g} s"
                )
            if wall_age > self.watchdog_timeout:
                return (
                    f"no new {what} for {wall_age:.2f} s of wall time{frozen}, "
                    f"watchdog_timeout {self.watchdog_timeout:g} s"
                )
            return None
        if wall_age > self.stale_timeout:
            return f"last new {what} {wall_age:.2f} s ago{frozen}, stale_timeout {self.stale_timeout:g} s"
        return None

    def frame_is_fresh(self) -> bool:
        return self.frames.last_progress is not None and self._staleness(self.frames, "frame") is None

    def odometry_is_fresh(self) -> bool:
        return self.odometry.last_progress is not None and self._staleness(self.odometry, "odometry") is None

    def input_problem(self) -> Decision | None:
        """A brake decision if an input the policy needs is missing or stale."""
        if self.frames.last_progress is None:
            return _brake(BrakeReason.NO_FRAME, f"nothing valid on {self.frame_topic} for {self._age(None):.2f} s")
        stale = self._staleness(self.frames, "frame")
        if stale is not None:
            return _brake(BrakeReason.STALE_FRAME, f"{self.frame_topic}: {stale}")
        if not (self.needs_vector or self.needs_speed):
            return None
        governs_curves = self.action_config.governs_curves
        if (self.needs_vector or governs_curves) and not self.has_route:
            why = "" if self.needs_vector else " (the curve governor needs the route)"
            return _brake(BrakeReason.NO_ROUTE, f"waiting for {self.route_topic}{why}")
        if self.odometry.last_progress is None:
            why = "" if self.needs_vector else " (the speed limiter needs the speed)"
            return _brake(BrakeReason.NO_ODOMETRY, f"nothing valid on {self.odometry_topic}{why}")
        stale = self._staleness(self.odometry, "odometry")
        if stale is not None:
            return _brake(BrakeReason.STALE_ODOMETRY, f"{self.odometry_topic}: {stale}")
        return None

    @property
    def needs_speed(self) -> bool:
        return self.action_config.speed_limit_mps > 0.0 or self.action_config.governs_curves

    def decide(
        self,
        action: Sequence[float] | None,
        inference_error: str = "",
        speed: float | None = None,
        curvature: float | None = None,
    ) -> Decision:
        """The command for this period: the clamped (and speed-limited) action, or full brake and why.
        `curvature` (the route's ahead) feeds the curve governor."""
        if self.other_commanders:
            return _brake(BrakeReason.OTHER_COMMANDER, ", ".join(self.other_commanders))
        problem = self.input_problem()
        if problem is not None:
            return problem
        if inference_error:
            return _brake(BrakeReason.INFERENCE_ERROR, inference_error)
        if action is None:
            return _brake(BrakeReason.NO_ACTION)
        if not is_finite_action(action):
            return _brake(BrakeReason.NON_FINITE_ACTION, f"action {[float(a) for a in action]}")
        # action_to_command clamps to CarlaEgoVehicleControl's ranges (steer [-1, 1], pedals [0, 1])
        # and applies the speed limiter with the newest speed (and curvature ahead).
        return Decision(action_to_command(float(action[0]), float(action[1]), self.action_config, speed, curvature))


def limited_action_config(checkpoint: ActionConfig, driver_limit_mps: float) -> ActionConfig:
    """The checkpoint's action mapping with the driver's speed limit, when that is tighter (or the
    checkpoint has none); driver_limit_mps 0 = the checkpoint's. ValueError for an invalid limit."""
    limits = [v for v in (checkpoint.speed_limit_mps, driver_limit_mps) if v > 0.0]
    return replace(checkpoint, speed_limit_mps=min(limits) if limits else 0.0)


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
