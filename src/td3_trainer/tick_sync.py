"""Matching the messages of one simulator tick, and waiting for them without ever hanging.

ROS callbacks (executor thread) put messages into a TickBuffer; the training loop (its own
thread) waits on it for the image of the next tick and the odometry with the same stamp. Every
wait has a deadline and, when it expires, a sentence saying exactly what is missing. Nothing
here imports rclpy: messages are stored as they come, stamps are integer nanoseconds.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

NS_PER_S = 1_000_000_000
STAMP_TOLERANCE_NS = 1_000_000  # messages of one tick carry the same stamp; allow 1 ms of rounding
POLL_S = 0.1  # longest sleep between checks of the stop flag


def stamp_to_ns(stamp: Any) -> int:
    """builtin_interfaces/Time → integer nanoseconds."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def ns_to_s(stamp_ns: int) -> float:
    return stamp_ns / NS_PER_S


@dataclass(frozen=True)
class Received:
    seq: int  # arrival order over all streams of one buffer, starting at 1
    stamp_ns: int
    msg: Any


# --------------------------------------------------------------------------- gaps


class GapKind(Enum):
    NONE = "none"
    DROPPED = "dropped"  # stamps jumped by more than max_delta_factor ticks
    TIMEOUT = "timeout"  # frames stopped for several timeouts
    BACKWARDS = "backwards"  # the clock went back: the simulator restarted or was reset


@dataclass(frozen=True)
class StampGap:
    kind: GapKind
    missed_frames: int = 0


def classify_stamps(prev_ns: int | None, new_ns: int, fixed_delta_ns: int, max_delta_factor: float = 1.5) -> StampGap:
    """Is `new_ns` the tick right after `prev_ns`? Frames missed in between make a gap."""
    if prev_ns is None:
        return StampGap(GapKind.NONE)
    delta = new_ns - prev_ns
    if delta <= 0:
        return StampGap(GapKind.BACKWARDS)
    if delta > max_delta_factor * fixed_delta_ns:
        return StampGap(GapKind.DROPPED, max(1, round(delta / fixed_delta_ns) - 1))
    return StampGap(GapKind.NONE)


@dataclass
class SyncCounters:
    """What went wrong so far, for diagnostics and the checkpoint's provenance."""

    timeouts: int = 0
    gaps: int = 0
    dropped_frames: int = 0
    unmatched_odometry: int = 0
    clock_jumps_back: int = 0
    bad_images: int = 0
    # the bridge's behaviour, as it was met (docs/trainer.md, "Resets and the bridge")
    odometry_after_image: int = 0  # the image of a tick came before its odometry
    late_events: int = 0  # collision / lane-invasion events that came with a later tick
    double_ticks: int = 0  # two ticks after one command (the bridge's timeout tick, then ours)
    foreign_ticks: int = 0  # a tick whose applied control was not our last command: skipped
    teleports: int = 0  # the car jumped within an episode: no transition across it
    resets: int = 0  # episodes started through set_transform + goal
    reset_ticks: int = 0  # brake commands sent while a reset settles
    reset_retries: int = 0  # teleports that did not settle in time, retried elsewhere
    reset_failures: int = 0  # resets given up after every attempt
    routes_ignored: int = 0  # routes that came during an episode (only a reset takes a route)

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class ResyncState:
    """Consecutive timeouts → a gap; the next tick after a gap starts a new segment."""

    max_timeouts: int
    counters: SyncCounters = field(default_factory=SyncCounters)
    consecutive_timeouts: int = 0
    in_gap: bool = False

    def on_timeout(self) -> bool:
        """Count one timeout; True exactly when it turns the wait into a gap."""
        self.counters.timeouts += 1
        self.consecutive_timeouts += 1
        if not self.in_gap and self.consecutive_timeouts >= self.max_timeouts:
            self.in_gap = True
            self.counters.gaps += 1
            return True
        return False

    def clear(self) -> None:
        """A tick arrived (or an episode began): the timeout streak and any gap are over."""
        self.consecutive_timeouts = 0
        self.in_gap = False

    def on_tick(self, prev_ns: int | None, new_ns: int, fixed_delta_ns: int) -> StampGap:
        """Classify a tick that arrived; clears the timeout streak."""
        gap = classify_stamps(prev_ns, new_ns, fixed_delta_ns)
        was_gap = self.in_gap
        self.clear()
        if gap.kind is GapKind.BACKWARDS:
            self.counters.clock_jumps_back += 1
            return gap
        if gap.kind is GapKind.DROPPED:
            self.counters.dropped_frames += gap.missed_frames
            if not was_gap:
                self.counters.gaps += 1
            return gap
        return StampGap(GapKind.TIMEOUT) if was_gap else gap


# --------------------------------------------------------------------------- the buffer


@dataclass(frozen=True)
class TickQuery:
    """Which image ends the wait.

    An image qualifies if its stamp is newer than `newer_than_ns`, or if it arrived after
    `or_received_after_seq` (after a reset or a long gap the clock may have gone back), or if it
    carries `or_stamp_ns` and arrived after `or_received_after_seq` (the reset frame).
    """

    newer_than_ns: int | None = None
    or_received_after_seq: int | None = None
    or_stamp_ns: int | None = None
    any_after_seq: bool = False
    describe: str = ""  # what a timeout line says is awaited

    def accepts(self, image: Received) -> bool:
        if self.newer_than_ns is None or image.stamp_ns > self.newer_than_ns:
            return True
        after = self.or_received_after_seq
        if after is None or image.seq <= after:
            return False
        if self.any_after_seq:
            return True
        return self.or_stamp_ns is not None and abs(image.stamp_ns - self.or_stamp_ns) <= STAMP_TOLERANCE_NS


@dataclass(frozen=True)
class Tick:
    image: Received
    odometry: Received
    odometry_matched: bool  # False: no odometry with the image's stamp came in time, newest used
    speed: float | None  # speedometer value received since the previous tick, else None
    seq: int  # buffer sequence number when the tick was taken
    odometry_after_image: bool = False  # the image was there before the odometry of its stamp


@dataclass(frozen=True)
class Timeout:
    reason: str


@dataclass(frozen=True)
class Stopped:
    pass


class TickBuffer:
    """Thread-safe store of the recent messages of each stream."""

    def __init__(self, image_topic: str, odometry_topic: str, history: int = 16) -> None:
        self.image_topic = image_topic
        self.odometry_topic = odometry_topic
        self._cond = threading.Condition()
        self._seq = 0
        self._images: deque[Received] = deque(maxlen=history)
        self._odometry: deque[Received] = deque(maxlen=history * 4)
        self._speed: Received | None = None
        self._route: Received | None = None
        self._events: deque[tuple[str, Received]] = deque(maxlen=1024)
        self._status: deque[Received] = deque(maxlen=history * 4)  # vehicle_status: the control applied

    # ---- writers (ROS callbacks)

    def _put(self, stamp_ns: int, msg: Any) -> Received:
        self._seq += 1
        return Received(self._seq, stamp_ns, msg)

    def put_image(self, stamp_ns: int, msg: Any) -> None:
        with self._cond:
            self._images.append(self._put(stamp_ns, msg))
            self._cond.notify_all()

    def put_odometry(self, stamp_ns: int, msg: Any) -> None:
        with self._cond:
            self._odometry.append(self._put(stamp_ns, msg))
            self._cond.notify_all()

    def put_status(self, stamp_ns: int, msg: Any) -> None:
        with self._cond:
            self._status.append(self._put(stamp_ns, msg))
            self._cond.notify_all()

    def wait_status(self, stamp_ns: int, timeout_s: float, stop: threading.Event) -> Any | None:
        """The vehicle status of the tick with `stamp_ns`, waiting up to `timeout_s` for it."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for status in reversed(self._status):
                    if abs(status.stamp_ns - stamp_ns) <= STAMP_TOLERANCE_NS:
                        return status.msg
                now = time.monotonic()
                if stop.is_set() or now >= deadline or not self._status:
                    return None  # none with this stamp (or no status stream at all)
                self._cond.wait(min(deadline - now, POLL_S))

    def put_speed(self, value: float) -> None:
        with self._cond:
            self._speed = self._put(0, float(value))

    def put_route(self, stamp_ns: int, msg: Any) -> None:
        with self._cond:
            self._route = self._put(stamp_ns, msg)
            self._cond.notify_all()

    def put_event(self, kind: str, stamp_ns: int, msg: Any) -> None:
        with self._cond:
            self._events.append((kind, self._put(stamp_ns, msg)))

    # ---- readers (training loop)

    @property
    def seq(self) -> int:
        with self._cond:
            return self._seq

    def newest_image_stamp(self) -> int | None:
        with self._cond:
            return max((image.stamp_ns for image in self._images), default=None)

    def forget_stale(self, clock_ns: int, received_before_seq: int) -> int:
        """After the clock went back (a restarted simulator): drop the images and odometry that
        came before `received_before_seq` stamped later than `clock_ns`. They belong to the old
        clock and would otherwise look newer than every frame of the new one. Returns how many."""
        with self._cond:
            before = len(self._images) + len(self._odometry)

            def keep(item: Received) -> bool:
                return item.seq >= received_before_seq or item.stamp_ns <= clock_ns

            self._images = deque(filter(keep, self._images), maxlen=self._images.maxlen)
            self._odometry = deque(filter(keep, self._odometry), maxlen=self._odometry.maxlen)
            return before - len(self._images) - len(self._odometry)

    def route(self) -> Received | None:
        with self._cond:
            return self._route

    def take_events(self, up_to_ns: int, min_stamp_ns: int | None = None, min_seq: int = 0) -> dict[str, list]:
        """Pop the events stamped up to `up_to_ns`; drop those older than the episode."""
        taken: dict[str, list] = {}
        with self._cond:
            keep: deque[tuple[str, Received]] = deque(maxlen=self._events.maxlen)
            for kind, event in self._events:
                if event.seq <= min_seq or (min_stamp_ns is not None and event.stamp_ns < min_stamp_ns):
                    continue  # belongs to a previous episode
                if event.stamp_ns <= up_to_ns:
                    taken.setdefault(kind, []).append(event.msg)
                else:
                    keep.append((kind, event))  # a later tick's event that came early
            self._events = keep
        return taken

    def _select_image(self, query: TickQuery) -> Received | None:
        candidates = [image for image in self._images if query.accepts(image)]
        return max(candidates, key=lambda image: image.seq) if candidates else None

    def _match_odometry(self, stamp_ns: int) -> Received | None:
        for odometry in reversed(self._odometry):
            if abs(odometry.stamp_ns - stamp_ns) <= STAMP_TOLERANCE_NS:
                return odometry
        return None

    def wait_tick(
        self,
        query: TickQuery,
        timeout_s: float,
        odometry_wait_s: float,
        speed_after_seq: int,
        stop: threading.Event,
        clock: Callable[[], float] = time.monotonic,
    ) -> Tick | Timeout | Stopped:
        """Wait for an image `query` accepts and the odometry of the same stamp.

        Once the image is there, the matching odometry gets `odometry_wait_s` more (topics are
        not ordered across each other); then the newest odometry is used and the tick says so.
        """
        start = clock()
        deadline = start + timeout_s
        image_seen_at: float | None = None
        waited_for_odometry = False
        with self._cond:
            while True:
                if stop.is_set():
                    return Stopped()
                now = clock()
                image = self._select_image(query)
                if image is not None:
                    odometry = self._match_odometry(image.stamp_ns)
                    matched = odometry is not None
                    if image_seen_at is None:
                        image_seen_at = now
                        waited_for_odometry = odometry is None
                    if odometry is None and now - image_seen_at >= odometry_wait_s and self._odometry:
                        odometry = self._odometry[-1]
                    if odometry is not None:
                        speed = self._speed
                        fresh = speed.msg if speed is not None and speed.seq > speed_after_seq else None
                        return Tick(image, odometry, matched, fresh, self._seq, waited_for_odometry)
                if now >= deadline:
                    return Timeout(self._reason(query, image, timeout_s))
                wake = min(deadline, now + POLL_S)
                if image_seen_at is not None:
                    wake = min(wake, max(image_seen_at + odometry_wait_s, now + 0.001))
                self._cond.wait(max(wake - now, 0.0))

    def _reason(self, query: TickQuery, image: Received | None, timeout_s: float) -> str:
        if image is None:
            if query.describe:
                what = query.describe
            elif query.newer_than_ns is None:
                what = "a first frame"
            else:
                what = f"newer than stamp {ns_to_s(query.newer_than_ns):.2f} s"
            return f"waiting for {self.image_topic} {what} ({timeout_s:.1f} s)"
        if not self._odometry:
            return f"waiting for {self.odometry_topic}: none received yet ({timeout_s:.1f} s)"
        return f"waiting for {self.odometry_topic} with stamp {ns_to_s(image.stamp_ns):.2f} s ({timeout_s:.1f} s)"

    def wait_route(self, after_seq: int, timeout_s: float, stop: threading.Event) -> Received | None:
        """The route if one arrived after `after_seq`, waiting up to `timeout_s` for it."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                if self._route is not None and self._route.seq > after_seq:
                    return self._route
                now = time.monotonic()
                if stop.is_set() or now >= deadline:
                    return None
                self._cond.wait(min(deadline - now, POLL_S))
