"""What a person (or rviz, rqt, TensorBoard) sees of a training run.

Topics (td3_drive/msg types, read by field name: docs/trainer.md "Monitoring"):
    ~/episode      td3_drive/Episode, once per episode (transient local: the last 100)
    ~/train_stats  td3_drive/TrainStats, every stats_period_s (NaN where there is no value yet)
    ~/evaluation   td3_drive/Evaluation, after each evaluation (eval_every; transient local: the last 100)
    /diagnostics   every stats_period_s: one DiagnosticStatus, WARN while the loop waits
The periodic messages come from a timer on the executor's thread, so they keep coming (and
say what is awaited) while the training loop is blocked waiting for the simulator.
TensorBoard (log_dir/run_name) gets the same scalars; the console a tqdm bar and one line per
episode. TensorBoard and tqdm are optional: without them the topics and log lines remain.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.clock import Clock, ClockType
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from td3_drive.msg import Episode, Evaluation, TrainStats

from td3_trainer.episode import EpisodeStats
from td3_trainer.reward import TERMS

STAT_KEYS = ("critic_loss", "actor_loss", "q1_mean", "q2_mean", "target_q_mean")


def monitoring_message(message_type: type[Any], values: Mapping[str, Any], stamp: Any = None) -> Any:
    """A monitoring message with each field (but the header) from `values` by its name: NaN for a
    missing float, 0 for a missing or non-finite integer. Keys that are no field are not sent."""
    msg = message_type()
    if stamp is not None:
        msg.header.stamp = stamp
    for name, kind in message_type.get_fields_and_field_types().items():
        if name == "header":
            continue
        value = values.get(name, math.nan)
        if kind == "string":
            setattr(msg, name, str(value))
        elif kind.startswith(("int", "uint")):
            setattr(msg, name, int(value) if math.isfinite(value) else 0)
        else:
            setattr(msg, name, float(value))
    return msg


class RateMeter:
    """Events per second over the last `window_s` seconds."""

    def __init__(self, window_s: float = 10.0) -> None:
        self.window_s = window_s
        self._marks: deque[tuple[float, int]] = deque()

    def update(self, count: int, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        self._marks.append((now, count))
        while len(self._marks) > 2 and now - self._marks[0][0] > self.window_s:
            self._marks.popleft()
        (t0, c0), (t1, c1) = self._marks[0], self._marks[-1]
        return (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0


# Episodes and evaluations are a log, not a stream: a monitor that starts late (or whose discovery
# is slow on a loaded machine) subscribes transient-local and still gets the last EVENT_LOG_DEPTH.
EVENT_LOG_DEPTH = 100
FLUSH_TIMEOUT_S = 2.0  # at close, for reliable readers to acknowledge the last events
STATUS_NAME = "td3_trainer: training loop"  # its DiagnosticStatus on /diagnostics
EVENT_LOG_QOS = QoSProfile(
    depth=EVENT_LOG_DEPTH, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)


class Monitor:
    def __init__(
        self,
        node: Node,
        *,
        run_name: str,
        role_name: str,
        log_dir: str,
        total_steps: int,
        start_steps: int,
        stats_period_s: float,
        progress: bool,
        tensorboard: bool,
        status: Callable[[], Mapping[str, Any]],
    ) -> None:
        self.node = node
        self.log = node.get_logger()
        self.role_name = role_name
        self.stats_period_s = stats_period_s
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self._episode_pub = node.create_publisher(Episode, "~/episode", EVENT_LOG_QOS)
        self._stats_pub = node.create_publisher(TrainStats, "~/train_stats", qos)
        self._diag_pub = node.create_publisher(DiagnosticArray, "/diagnostics", qos)
        self._eval_pub = node.create_publisher(Evaluation, "~/evaluation", EVENT_LOG_QOS)
        self._last_eval: dict[str, float] = {}
        self._steps_rate = RateMeter()
        self._updates_rate = RateMeter()
        self._status = status
        self._snapshot: dict[str, float] = {"env_steps": start_steps, "total_it": 0, "buffer_size": 0, "episodes": 0}
        self._last_stats: dict[str, float] = {}
        self._last_return = math.nan
        self.steps_per_s = 0.0
        self.updates_per_s = 0.0
        self.writer = self._tensorboard(Path(log_dir) / run_name) if tensorboard else None
        self.bar = self._progress(total_steps, start_steps) if progress else None
        # Wall-clock period even when the node uses simulation time.
        self._timer = node.create_timer(stats_period_s, self._on_timer, clock=Clock(clock_type=ClockType.STEADY_TIME))

    def _tensorboard(self, directory: Path) -> Any:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:
            self.log.warning(f"TensorBoard unavailable ({error}); scalars go to the topics only")
            return None
        try:
            return SummaryWriter(log_dir=str(directory))
        except OSError as error:
            self.log.error(f"cannot write TensorBoard logs to {directory}: {error}")
            return None

    def _progress(self, total_steps: int, start_steps: int) -> Any:
        try:
            from tqdm import tqdm
        except ImportError:
            return None
        return tqdm(total=total_steps or None, initial=start_steps, unit="step", dynamic_ncols=True, smoothing=0.05)

    def _scalar(self, tag: str, value: float, step: int) -> None:
        if self.writer is not None and math.isfinite(value):
            self.writer.add_scalar(tag, value, step)

    # ------------------------------------------------------------------ events

    def on_step(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def on_train(self, stats: Mapping[str, float], total_it: int) -> None:
        self._last_stats.update({k: float(v) for k, v in stats.items() if k in STAT_KEYS})
        if self.writer is not None and total_it % 10 == 0:  # every update would bloat the event file
            for key, value in stats.items():
                self._scalar(f"train/{key}", float(value), total_it)

    def on_episode(self, stats: EpisodeStats, env_steps: int) -> None:
        self._last_return = stats.episode_return
        # By keyword: a reward term without its field in Episode.msg fails here, not downstream.
        msg = Episode(
            episode=stats.index,
            episode_return=float(stats.episode_return),
            length=stats.steps,
            distance_m=float(stats.distance_m),
            progress_m=float(stats.progress_m),
            env_steps=env_steps,
            end_reason=stats.reason,
            gaps=stats.gaps,
            **{f"reward_{term}": float(stats.terms.get(term, 0.0)) for term in TERMS},
        )
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self._episode_pub.publish(msg)
        values = {"return": stats.episode_return, "length": stats.steps}
        values.update(distance_m=stats.distance_m, progress_m=stats.progress_m)
        for key, value in values.items():
            self._scalar(f"episode/{key}", float(value), env_steps)
        for term in TERMS:
            self._scalar(f"reward/{term}", stats.terms.get(term, 0.0), env_steps)
        line = (
            f"episode {stats.index}: return {stats.episode_return:.1f}, {stats.steps} steps, "
            f"{stats.distance_m:.1f} m driven, {stats.progress_m:.1f} m along the route, end: {stats.reason}"
            + (f", {stats.gaps} gap(s)" if stats.gaps else "")
        )
        self.log.info(line)  # also on /rosout; the bar redraws below it

    def on_evaluation(self, values: Mapping[str, float]) -> None:
        """One evaluation's results (Evaluation's fields): the topic, TensorBoard eval/..., /diagnostics, the log."""
        env_steps = int(values["env_steps"])
        self._eval_pub.publish(monitoring_message(Evaluation, values, self.node.get_clock().now().to_msg()))
        for key, value in values.items():
            if key != "env_steps":
                self._scalar(f"eval/{key}", float(value), env_steps)
        self._last_eval = {f"eval_{key}": float(value) for key, value in values.items()}
        self.log.info(
            f"evaluation at step {env_steps}: mean return {values['mean_return']:.1f} over {int(values['episodes'])} "
            f"episodes, {values['mean_progress_m']:.1f} m along the route ({100 * values['route_completion']:.0f} %), "
            f"{values['collisions_per_km']:.2f} collisions/km, {values['off_road_per_km']:.2f} off-road/km, "
            f"{values['mean_speed_mps']:.2f} m/s, |lateral| {values['mean_abs_lateral_m']:.2f} m; "
            f"best {values['best_score']:.1f}"
        )

    def update(self, **values: float) -> None:
        """The loop's counters (env_steps, total_it, buffer_size, episodes), read by the timer."""
        self._snapshot = {**self._snapshot, **values}

    def _on_timer(self) -> None:
        """~/train_stats and /diagnostics from the executor's thread, so they go on while the loop waits
        (and once more at close, with the final counters)."""
        snapshot = self._snapshot
        now = time.monotonic()
        env_steps, total_it = int(snapshot.get("env_steps", 0)), int(snapshot.get("total_it", 0))
        self.steps_per_s = self._steps_rate.update(env_steps, now)
        self.updates_per_s = self._updates_rate.update(total_it, now)
        values = {**snapshot, "steps_per_s": self.steps_per_s, "updates_per_s": self.updates_per_s, **self._last_stats}
        self._stats_pub.publish(monitoring_message(TrainStats, values, self.node.get_clock().now().to_msg()))
        self._scalar("perf/steps_per_s", self.steps_per_s, env_steps)
        self._scalar("perf/updates_per_s", self.updates_per_s, env_steps)
        self._scalar("buffer/size", float(snapshot.get("buffer_size", 0)), env_steps)
        if self.bar is not None:
            postfix = {"steps/s": f"{self.steps_per_s:.1f}", "upd/s": f"{self.updates_per_s:.1f}"}
            postfix["return"] = f"{self._last_return:.1f}"
            self.bar.set_postfix(postfix, refresh=False)
        self._diag_pub.publish(self._diagnostics(values, self._status()))

    def _diagnostics(self, values: Mapping[str, float], status: Mapping) -> DiagnosticArray:
        waiting = str(status.get("waiting_for", ""))
        diag = DiagnosticStatus()
        diag.name = STATUS_NAME
        diag.hardware_id = self.role_name
        diag.level = DiagnosticStatus.WARN if waiting else DiagnosticStatus.OK
        diag.message = f"waiting for {waiting}" if waiting else "training"
        items = {**values, **self._last_eval, **{k: v for k, v in status.items() if k != "waiting_for"}}
        diag.values = [KeyValue(key=str(k), value=_fmt(v)) for k, v in items.items()]
        array = DiagnosticArray()
        array.header.stamp = self.node.get_clock().now().to_msg()
        array.status = [diag]
        return array

    def close(self) -> None:
        self._timer.cancel()
        # The final counters (the last reset, the last steps) come after the last timer tick: a
        # monitor's last status must be the run's end, not up to stats_period_s before it.
        try:
            self._on_timer()
        except Exception as error:  # the context may already be shut down (a signal)
            self.log.debug(f"no final status at close: {error}")
        # The last messages are published just before the process ends: wait (briefly) until the
        # reliable readers have them, or they die with the writer's history.
        for publisher in (self._episode_pub, self._eval_pub, self._stats_pub, self._diag_pub):
            try:
                if not publisher.wait_for_all_acked(Duration(seconds=FLUSH_TIMEOUT_S)):
                    self.log.warning(f"{publisher.topic_name}: a reader did not acknowledge the last messages")
            except Exception as error:  # the context may already be shut down (a signal)
                self.log.debug(f"{publisher.topic_name}: no flush at close: {error}")
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
