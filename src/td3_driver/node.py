"""The driver node: newest camera frame (+ route and odometry) → policy → vehicle control.

    python -m td3_driver.node --ros-args -p checkpoint:=models/<run> [-p rate_hz:=20.0] ...

Inference runs in the image callback, once per valid frame with a new stamp, so an action is
ready before the next command is due; the command loop (a thread of its own on the monotonic
clock, `rate_hz`; command_loop.py says why it is not an executor timer) only asks the safety
gate what to send and publishes it. The inputs run on a SingleThreadedExecutor, so no message,
however large or slow to handle, holds up the commands: the rate holds and the gate brakes when
the inputs fall behind.
Image→command latency is measured from the image callback's entry to the
publication of the first command computed from that image (reported on /diagnostics), and the
command's header carries the source image's stamp, so it can be traced from outside too.
Everything the network sees goes through td3_core's ObservationBuilder (DriverInputs below).
"""

from __future__ import annotations

import math
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
import rclpy
import torch
from builtin_interfaces.msg import Time
from carla_msgs.msg import CarlaEgoVehicleControl
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry, Path
from rclpy.clock import Clock, ClockType
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.logging import get_logger
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from rclpy.signals import SignalHandlerOptions
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import Image
from std_msgs.msg import Float32, Header
from visualization_msgs.msg import MarkerArray

from td3_core.actions import VehicleCommand
from td3_core.checkpoint import CheckpointError, CheckpointMeta, resolve_checkpoint
from td3_core.device import DeviceError, select_device
from td3_core.image_codec import ImageError
from td3_core.observation import ObservationBuilder, pose_from_odometry
from td3_core.preprocessing import PreprocessConfig, image_topic
from td3_core.vector_state import ObservationConfig
from td3_driver.command_loop import FixedRateLoop
from td3_driver.hot_reload import CheckpointId, CheckpointWatcher, Rejected, Swap
from td3_driver.params import DriverParams, ParamError, declare
from td3_driver.policy_runner import PolicyRunner, load_runner
from td3_driver.safety import (
    STALE_REASONS,
    Arrival,
    BrakeReason,
    Decision,
    LogEvent,
    SafetyGate,
    StateLog,
    ThrottledLog,
    limited_action_config,
)
from td3_driver.visualization import command_markers, diagnostics_message, network_input_image

NODE_NAME = "td3_driver"
# Sensor data: keep only the newest message, never wait for a lost one (compatible with the
# bridge's reliable publishers too).
SENSOR_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.BEST_EFFORT,
    durability=DurabilityPolicy.VOLATILE,
)
# Still only the newest frame, but lost fragments are repaired: large frames (800x600 bgra8 is
# 1.9 MB) can lose a fragment over UDP on every frame, and a best-effort reader then gets none.
RELIABLE_SENSOR_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)
# Like carla_waypoint_publisher: the route is published once and latched for late subscribers.
ROUTE_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
# Commands: only the newest matters, but it must arrive.
COMMAND_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE)
MONITOR_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE)
DIAGNOSTICS_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
CLOCK_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
TWIST_MAX_LON_ACCELERATION = 10.0  # carla_twist_to_control's MAX_LON_ACCELERATION: linear.x at throttle 1
COMMANDER_CHECK_PERIOD_S = 0.5
SHUTDOWN_WAIT_S = 10.0
# A PoseStamped is 72 bytes in CDR with a 3-letter frame_id; room for frame_ids of ~130 characters.
ROUTE_BYTES_PER_POINT = 200
COMMAND_LOOP_STOP_S = 2.0  # a tick is a publication: it ends well within this


class InvalidMessageError(ValueError):
    """A message with values no observation may be built from."""


def _finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


def stamp_seconds(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


class DriverInputs:
    """The driver's path from messages to network inputs: validation, then ObservationBuilder.

    ROS-free (reads message fields only). The speed fed to a vector policy is the trainer's:
    the speedometer when fresh and `use_speedometer`, else the odometry twist.
    """

    def __init__(
        self,
        preprocess: PreprocessConfig,
        observation: ObservationConfig,
        use_speedometer: bool = True,
        speed_timeout: float = 0.3,
        clock=time.monotonic,
        image_input: str = "raw",
    ) -> None:
        self.builder = ObservationBuilder(preprocess, observation, image_input)
        self.use_speedometer = use_speedometer
        self.speed_timeout = speed_timeout
        self.clock = clock
        self.odometry: Odometry | None = None
        self._speed: float | None = None
        self._speed_time = -math.inf

    @property
    def needs_vector(self) -> bool:
        return self.builder.needs_route

    @property
    def has_route(self) -> bool:
        return self.builder.route is not None

    def push_image(self, msg: Image, restart: bool = False) -> np.ndarray:
        """Decode and stack a frame (ImageError if bad); `restart` drops the frames before a gap."""
        if restart:
            self.builder.stacker.reset()
        return self.builder.push_image(msg)  # decodes before stacking: a bad image changes nothing

    def set_route(self, msg: Path) -> int:
        """Raises ValueError on fewer than 2 or non-finite points; returns the number of points."""
        self.builder.set_route_from_path(msg)
        return len(msg.poses)

    def set_odometry(self, msg: Odometry) -> None:
        pose, twist = msg.pose.pose, msg.twist.twist.linear
        p, q = pose.position, pose.orientation
        if not _finite(p.x, p.y, p.z, q.x, q.y, q.z, q.w, twist.x, twist.y, twist.z):
            raise InvalidMessageError("non-finite pose or twist")
        self.odometry = msg

    def set_speed(self, msg: Float32) -> None:
        if not math.isfinite(msg.data):
            raise InvalidMessageError(f"non-finite speed {msg.data}")
        self._speed, self._speed_time = float(msg.data), self.clock()

    def speed(self) -> float | None:
        """The speedometer reading when it is used and fresh; None = the odometry twist."""
        if self.use_speedometer and self.clock() - self._speed_time <= self.speed_timeout:
            return self._speed
        return None

    def current_speed(self) -> float | None:
        """The speed for the speed limiter: the vector state's (speedometer or twist); None = no odometry."""
        speed = self.speed()
        if speed is not None or self.odometry is None:
            return speed
        return pose_from_odometry(self.odometry)[3]

    def current_curvature(self) -> float | None:
        """The route's mean curvature ahead of the newest odometry's position (the curve governor's);
        None without a route or odometry."""
        if self.builder.route is None or self.odometry is None:
            return None
        x, y, _, _ = pose_from_odometry(self.odometry)
        return self.builder.route.project(x, y).curvature_ahead

    def vector(self) -> np.ndarray:
        """Vector state from the newest odometry and the route (empty for pixels-only policies)."""
        if not self.needs_vector:
            return np.zeros(0, dtype=np.float32)
        if self.odometry is None:
            raise InvalidMessageError("no odometry yet")
        vector, _ = self.builder.vector(self.odometry, self.speed())
        if not np.isfinite(vector).all():
            raise InvalidMessageError("vector state is not finite")
        return vector


@dataclass
class PendingAction:
    action: np.ndarray
    stamp: Time  # header stamp of the image it was computed from
    arrival: float  # monotonic time the image callback started
    published: bool = False


class Window:
    """Samples of the current diagnostics period."""

    def __init__(self) -> None:
        self.samples: deque[float] = deque(maxlen=10_000)

    def add(self, value: float) -> None:
        self.samples.append(value)

    def summary_ms(self) -> tuple[float, float]:
        """(p50, max) in ms, NaN when empty."""
        if not self.samples:
            return math.nan, math.nan
        values = np.fromiter(self.samples, dtype=np.float64) * 1000.0
        return float(np.percentile(values, 50)), float(values.max())


@dataclass
class Counters:
    commands: int = 0
    safety_brakes: int = 0
    stale_events: int = 0
    frames: int = 0
    inferences: int = 0
    non_finite_actions: int = 0
    repeated_frames: int = 0  # a stamp seen before: not new data, not used
    restarts: int = 0  # stamps went back or jumped: frame history started again
    reloads: int = 0
    rejected_reloads: int = 0
    lockstep_waits: int = 0  # one_command_per_frame: command deadlines that waited for the next frame


def twist_from_command(command: VehicleCommand, max_steering_angle: float) -> Twist:
    """carla_twist_to_control's inverse: a braking command is the all-zero Twist (full brake)."""
    twist = Twist()
    if command.brake > 0.0 or command.throttle <= 0.0:
        return twist
    twist.linear.x = float(command.throttle * TWIST_MAX_LON_ACCELERATION)
    twist.angular.z = float(-command.steer * max_steering_angle)  # + steer = right = negative yaw rate
    return twist


def _identity(path) -> CheckpointId | None:
    try:
        return CheckpointId.of(path)
    except OSError:
        return None  # loading will say what is wrong with it


class DriverNode(Node):
    def __init__(self, clock=time.monotonic, **node_options) -> None:
        """`node_options` go to rclpy's Node (context, parameter_overrides) for in-process use."""
        super().__init__(NODE_NAME, **node_options)
        self.params: DriverParams = declare(self)
        p = self.params
        self._mono = clock
        if p.cpu_threads > 0:
            torch.set_num_threads(p.cpu_threads)
        try:
            self.device = select_device(p.device)
        except DeviceError as error:
            raise ParamError("device", str(error)) from error
        try:
            path = resolve_checkpoint(p.checkpoint, p.models_dir)
            identity = _identity(path)  # before loading: a file replaced meanwhile is reloaded later
            self.runner: PolicyRunner = load_runner(str(path), self.device, p.warmup_iterations)
            identity = identity or CheckpointId.of(path)
        except (CheckpointError, OSError) as error:
            raise ParamError("checkpoint", f"{p.checkpoint!r} is unusable: {error}") from error
        except Exception as error:  # whatever else a file can provoke: the documented refusal, not a traceback
            raise ParamError("checkpoint", f"{p.checkpoint!r} is unusable: {type(error).__name__}: {error}") from error
        meta = self.runner.meta
        self.checkpoint = identity

        self.topics = {
            name: p.topic(suffix)
            for name, suffix in (
                ("image", image_topic(p.image_input)),
                ("odometry", "odometry"),
                ("speedometer", "speedometer"),
                ("waypoints", "waypoints"),
                ("command", "vehicle_control_cmd"),
                ("twist", "twist"),
            )
        }
        self.inputs = DriverInputs(
            meta.preprocess, meta.observation, p.use_speedometer, p.stale_timeout, clock, p.image_input
        )
        self.counters = Counters()
        self.dropped: dict[str, int] = {}
        self.inference_window, self.processing_window, self.latency_window = Window(), Window(), Window()
        self._window_commands, self._window_start = 0, clock()
        self._pending: PendingAction | None = None
        self._inference_error = ""
        self._decision: Decision | None = None
        self._no_action_since = 0.0
        self._state_log = StateLog(p.log_throttle_s, clock)
        self._drop_log = ThrottledLog(p.log_throttle_s, clock)

        self._command_pub = self.create_publisher(CarlaEgoVehicleControl, self.topics["command"], COMMAND_QOS)
        self._twist_pub = self.create_publisher(Twist, self.topics["twist"], COMMAND_QOS) if p.publish_twist else None
        self._input_pub = self.create_publisher(Image, "~/network_input", MONITOR_QOS)
        self._marker_pub = self.create_publisher(MarkerArray, "~/command_marker", MONITOR_QOS)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", DIAGNOSTICS_QOS)

        image_qos = RELIABLE_SENSOR_QOS if p.image_reliability == "reliable" else SENSOR_QOS
        subscriptions = [("image", Image, self._on_image, image_qos)]
        try:
            action_config = limited_action_config(meta.action, p.speed_limit_mps)
        except ValueError as error:
            raise ParamError("speed_limit_mps", str(error)) from error
        if self.inputs.needs_vector or action_config.speed_limit_mps > 0.0 or action_config.governs_curves:
            subscriptions.append(("odometry", Odometry, self._on_odometry, SENSOR_QOS))
            if p.use_speedometer:
                subscriptions.append(("speedometer", Float32, self._on_speed, SENSOR_QOS))
        if self.inputs.needs_vector or action_config.governs_curves:  # the curve governor reads the route's curvature
            subscriptions.append(("waypoints", Path, self._on_route_bytes, ROUTE_QOS))
        self._subscribed = {name for name, *_ in subscriptions}
        for name, msg_type, callback, qos in subscriptions:
            raw = callback == self._on_route_bytes  # sized before it is deserialized
            subscription = self.create_subscription(msg_type, self.topics[name], callback, qos, raw=raw)
            self.topics[name] = subscription.topic_name  # as remapped: what logs should name
        self.create_subscription(ClockMsg, "/clock", self._on_clock, CLOCK_QOS)
        for name, publisher in (("command", self._command_pub), ("twist", self._twist_pub)):
            if publisher is not None:
                self.topics[name] = publisher.topic_name
        self.gate = SafetyGate(
            stale_timeout=p.stale_timeout,
            needs_vector=self.inputs.needs_vector,
            action_config=action_config,
            clock=clock,
            frame_topic=self.topics["image"],
            odometry_topic=self.topics["odometry"],
            route_topic=self.topics["waypoints"],
            watchdog_timeout=p.watchdog_timeout,
        )

        self.watcher = None
        steady = Clock(clock_type=ClockType.STEADY_TIME)  # the watchdog must run even if sim time stops
        if p.watch:
            loader = lambda path: load_runner(str(path), self.device, p.warmup_iterations)  # noqa: E731
            self.watcher = CheckpointWatcher(p.checkpoint, p.models_dir, identity, loader, self._compatible)
            self.create_timer(p.watch_period_s, self._on_watch, clock=steady)
        self.create_timer(p.diagnostics_period_s, self._on_diagnostics, clock=steady)
        self.create_timer(COMMANDER_CHECK_PERIOD_S, self._check_commanders, clock=steady)
        self.get_logger().info(
            f"driving with {identity.path} ({self._describe(meta)}) on {self.device}; "
            f"{self.topics['image']} → {self.topics['command']} at {p.rate_hz:g} Hz, "
            f"stale_timeout {p.stale_timeout:g} s (simulation time while /clock is published), "
            f"watchdog_timeout {p.watchdog_timeout:g} s"
            + (f", watching for newer checkpoints every {p.watch_period_s:g} s" if p.watch else "")
        )
        # Last: the policy is loaded and warmed up before the first command is due.
        self.command_loop = FixedRateLoop(1.0 / p.rate_hz, self._send_command, self._on_command_error, "commands")
        self.command_loop.start()

    def destroy_node(self) -> None:
        self.command_loop.stop(COMMAND_LOOP_STOP_S)  # no command may go out on a destroyed publisher
        super().destroy_node()

    @staticmethod
    def _describe(meta: CheckpointMeta) -> str:
        arch = meta.architecture
        vector = f"vector {arch.vector_dim}" if arch.vector_dim else "pixels only"
        return (
            f"format {meta.format_version}, total_it {meta.total_it}, {arch.frame_stack}x{arch.image_size}x"
            f"{arch.image_size} frames, {vector}"
        )

    # ------------------------------------------------------------------ inputs

    def _drop(self, kind: str, error: Exception, log_key: str = "") -> None:
        """Count and (throttled, per `log_key`) log a message that cannot be used; the node carries on."""
        self.dropped[kind] = self.dropped.get(kind, 0) + 1
        log_now, suppressed = self._drop_log.should_log(log_key or kind)
        if log_now:
            more = f" ({suppressed} more since the last report)" if suppressed else ""
            self.get_logger().warning(f"dropped a bad message on {self.topics[kind]}: {error}{more}")

    def _on_image(self, msg: Image) -> None:
        arrival = self._mono()
        if len(msg.data) > self.params.max_image_bytes:
            error = ImageError(
                f"{msg.width}x{msg.height} {msg.encoding} image of {len(msg.data)} bytes exceeds max_image_bytes "
                f"{self.params.max_image_bytes}"
            )
            self._drop("image", error, log_key="image_size")
            return
        stamp = stamp_seconds(msg.header.stamp)
        kind = self.gate.frames.classify(stamp)
        if kind is Arrival.REPEATED:  # a frozen camera re-sending its frame: nothing new to act on
            self.counters.repeated_frames += 1
            self.gate.frame_received(stamp)
            return
        restart = kind in (Arrival.BACKWARDS, Arrival.JUMPED) or not self.gate.frame_is_fresh()
        try:
            frames = self.inputs.push_image(msg, restart=restart)
        except (ImageError, ValueError) as error:
            self._drop("image", error)
            return
        self.gate.frame_received(stamp)
        if kind in (Arrival.BACKWARDS, Arrival.JUMPED):
            self._note_restart(kind, stamp)
        self.counters.frames += 1
        self._infer(frames, msg.header.stamp, arrival)
        if self.params.publish_network_input and self._input_pub.get_subscription_count() > 0:
            self._input_pub.publish(
                network_input_image(frames, Header(stamp=msg.header.stamp, frame_id=msg.header.frame_id))
            )

    def _note_restart(self, kind: Arrival, stamp: float) -> None:
        self.counters.restarts += 1
        if self._drop_log.should_log("restart")[0]:
            how = "went back" if kind is Arrival.BACKWARDS else f"jumped by more than {self.params.stale_timeout:g} s"
            self.get_logger().warning(
                f"camera stamps {how} (now {stamp:.3f} s): frame history started again "
                f"({self.counters.restarts} restarts so far)"
            )

    def _on_clock(self, msg: ClockMsg) -> None:
        self.gate.clock_received(stamp_seconds(msg.clock))

    def _infer(self, frames: np.ndarray, stamp: Time, arrival: float) -> None:
        # The timer runs on another thread: the previous action stays in use until the new one is
        # ready (each of these assignments is atomic), never a gap with no action at all.
        if self.inputs.needs_vector and self.gate.input_problem() is not None:
            self._pending = None
            return  # the timer brakes and says why (no route / odometry)
        try:
            vector = self.inputs.vector()
            result = self.runner.infer(frames, vector)
        except Exception as error:  # never let one observation kill the driver
            self._inference_error, self._pending = f"{type(error).__name__}: {error}", None
            return
        self.counters.inferences += 1
        self.inference_window.add(result.seconds)
        self.processing_window.add(self._mono() - arrival)
        if not result.finite:
            self.counters.non_finite_actions += 1
        self._pending, self._inference_error = PendingAction(result.action, stamp, arrival), ""

    def _on_odometry(self, msg: Odometry) -> None:
        try:
            self.inputs.set_odometry(msg)
        except InvalidMessageError as error:
            self._drop("odometry", error)
            return
        self.gate.odometry_received(stamp_seconds(msg.header.stamp))

    def _on_speed(self, msg: Float32) -> None:
        try:
            self.inputs.set_speed(msg)
        except InvalidMessageError as error:
            self._drop("speedometer", error)

    def _on_route_bytes(self, data: bytes) -> None:
        """A route too large for max_route_points is dropped before rclpy builds its message
        objects (for 100,000 points that alone takes seconds); the rest is deserialized here."""
        limit = self.params.max_route_points * ROUTE_BYTES_PER_POINT + 4096
        if len(data) > limit:
            error = ValueError(
                f"route of {len(data)} bytes: more than max_route_points {self.params.max_route_points} can take"
            )
            self._drop("waypoints", error, log_key="waypoints_size")
            return
        try:
            msg = deserialize_message(data, Path)
        except Exception as error:  # whatever the bytes are, the node carries on
            self._drop("waypoints", ValueError(f"undecodable route: {type(error).__name__}: {error}"))
            return
        self._on_route(msg)

    def _on_route(self, msg: Path) -> None:
        if len(msg.poses) > self.params.max_route_points:
            limit = self.params.max_route_points
            error = ValueError(f"{len(msg.poses)} points exceed max_route_points {limit}")
            self._drop("waypoints", error, log_key="waypoints_size")
            return
        try:
            points = self.inputs.set_route(msg)
        except ValueError as error:
            self._drop("waypoints", error)
            return
        self.gate.route_received()
        self.get_logger().info(
            f"route from {self.topics['waypoints']}: {points} points, {self.inputs.builder.route.length:.0f} m"
        )

    # ------------------------------------------------------------------ output

    def _on_command_error(self, error: BaseException) -> None:
        if self._drop_log.should_log("command_error")[0]:
            self.get_logger().error(f"publishing a command failed: {type(error).__name__}: {error}")

    def _send_command(self) -> None:
        pending = self._pending
        action = None if pending is None else pending.action
        # the route projection only where the curve governor reads it: this runs at the command rate
        curvature = self.inputs.current_curvature() if self.gate.action_config.governs_curves else None
        decision = self.gate.decide(action, self._inference_error, self.inputs.current_speed(), curvature)
        if self.params.one_command_per_frame and decision.reason is None and pending is not None and pending.published:
            # Lockstep with a synchronous simulator: this frame's action went out, and the world
            # waits for the next command; sending it again would tick the world on an old action.
            self.counters.lockstep_waits += 1
            return
        msg = CarlaEgoVehicleControl()
        msg.header.frame_id = self.params.role_name
        if decision.reason is None and pending is not None:
            msg.header.stamp = pending.stamp
        else:
            msg.header.stamp = self.get_clock().now().to_msg()
        command = decision.command
        msg.steer, msg.throttle, msg.brake = float(command.steer), float(command.throttle), float(command.brake)
        self._command_pub.publish(msg)
        if decision.reason is None and pending is not None and not pending.published:
            pending.published = True
            self.latency_window.add(self._mono() - pending.arrival)
        if self._twist_pub is not None:
            self._twist_pub.publish(twist_from_command(command, self.params.twist_max_steering_angle))
        if self._marker_pub.get_subscription_count() > 0:
            self._marker_pub.publish(
                command_markers(command, self.params.role_name, msg.header.stamp, decision.braking_for_safety)
            )
        self._account(decision)

    def _account(self, decision: Decision) -> None:
        now = self._mono()
        self.counters.commands += 1
        self._window_commands += 1
        previous = self._decision.reason if self._decision else None
        self._decision = decision
        if decision.reason is not None:
            self.counters.safety_brakes += 1
            if decision.reason in STALE_REASONS and decision.reason != previous:
                self.counters.stale_events += 1
        if decision.reason is BrakeReason.NO_ACTION:
            # Inputs just became complete (e.g. odometry after the frame): the next frame gives
            # an action. Only worth a line if it lasts.
            self._no_action_since = self._no_action_since if previous is BrakeReason.NO_ACTION else now
            if now - self._no_action_since <= self.params.stale_timeout:
                return
        event = self._state_log.update(decision.reason)
        log = self.get_logger()
        if decision.reason is None:
            if event is LogEvent.CHANGED and self._state_log.changes > 1:  # not at start-up: a recovery
                log.info("inputs valid again: driving with the policy's actions")
        elif event is not LogEvent.QUIET:
            if decision.reason in STALE_REASONS or decision.reason is BrakeReason.NO_ACTION:
                hint = self._camera_hint(decision.reason) if event is LogEvent.REMINDER else ""
                log.warning(decision.describe() + hint)
            else:
                log.error(decision.describe())

    def _camera_hint(self, reason: BrakeReason) -> str:
        """No frame for a while: say whether anyone publishes, and the usual cause if they do."""
        if reason is not BrakeReason.NO_FRAME or self.dropped.get("image"):
            return ""
        publishers = self.count_publishers(self.topics["image"])
        if publishers == 0:
            return f"; nothing publishes {self.topics['image']}"
        if self.params.image_reliability == "best_effort":
            return (
                f"; {publishers} publisher(s) but no frame arrives: large images over best-effort DDS can lose a "
                "fragment of every frame, try image_reliability:=reliable"
            )
        return ""

    def brake_now(self) -> None:
        """Publish full brake immediately (shutdown): CARLA keeps applying the last control."""
        msg = CarlaEgoVehicleControl(brake=1.0)
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.params.role_name
        self._command_pub.publish(msg)
        if self._twist_pub is not None:
            self._twist_pub.publish(Twist())

    def flush_commands(self, timeout_s: float = 1.0) -> bool:
        """Wait (bounded) until reliable subscribers have the last commands: at shutdown the
        node is destroyed right after the final brake, which could otherwise drop it in flight."""
        publishers = [self._command_pub] + ([self._twist_pub] if self._twist_pub is not None else [])
        timeout = Duration(nanoseconds=int(timeout_s * 1e9))
        return all(publisher.wait_for_all_acked(timeout) for publisher in publishers)

    def _check_commanders(self) -> None:
        """Any other publisher on the command topic: the car would get whichever command came last."""
        topic = self.topics["command"]
        names = [f"{i.node_namespace.rstrip('/')}/{i.node_name}" for i in self.get_publishers_info_by_topic(topic)]
        own = f"{self.get_namespace().rstrip('/')}/{self.get_name()}"
        if own in names:
            names.remove(own)  # this node's one publisher (another node of the same name still shows)
        self.gate.other_commanders = tuple(f"{name} also publishes on {topic}" for name in sorted(names))

    # ------------------------------------------------------------------ hot reload

    def _compatible(self, runner: PolicyRunner) -> str | None:
        old, new = self.runner.meta, runner.meta
        if (new.preprocess, new.observation) != (old.preprocess, old.observation):
            return (
                f"its preprocessing/observation ({new.preprocess}, {new.observation}) differ from the running "
                f"policy's ({old.preprocess}, {old.observation}); restart the driver to use it"
            )
        if new.action.speed_limit_mps > 0.0 and "odometry" not in self._subscribed:
            return (
                "it has a speed limit, which needs odometry, and this driver does not subscribe to it; "
                "restart the driver to use it"
            )
        if new.action.governs_curves and "waypoints" not in self._subscribed:
            return (
                "it has a curve governor, which needs the route (waypoints), and this driver does not subscribe "
                "to it; restart the driver to use it"
            )
        return None

    def _on_watch(self) -> None:
        assert self.watcher is not None
        outcome = self.watcher.poll()
        if isinstance(outcome, Swap):
            self.runner, self.checkpoint = outcome.runner, outcome.identity
            self.gate.action_config = limited_action_config(outcome.runner.meta.action, self.params.speed_limit_mps)
            self.counters.reloads += 1
            self.get_logger().info(f"now driving with {outcome.identity} ({self._describe(outcome.runner.meta)})")
        elif isinstance(outcome, Rejected):
            self.counters.rejected_reloads += 1
            self.get_logger().error(
                f"not switching to {outcome.identity}: {outcome.reason}; still driving with {self.checkpoint} "
                "(this file is not tried again unless it changes)"
            )
        elif self.watcher.last_error and self._drop_log.should_log("watch")[0]:
            self.get_logger().warning(f"watching '{self.params.checkpoint}': {self.watcher.last_error}")

    # ------------------------------------------------------------------ monitoring

    def _on_diagnostics(self) -> None:
        now = self._mono()
        elapsed = max(now - self._window_start, 1e-9)
        rate = self._window_commands / elapsed
        inference_p50, inference_max = self.inference_window.summary_ms()
        processing_p50, processing_max = self.processing_window.summary_ms()
        latency_p50, latency_max = self.latency_window.summary_ms()
        self._window_commands, self._window_start = 0, now
        self.inference_window, self.processing_window, self.latency_window = Window(), Window(), Window()

        decision = self._decision or self.gate.decide(None)  # before the first command: what it would be
        reason = decision.reason
        if reason is None:
            level = DiagnosticStatus.OK
        elif reason in STALE_REASONS or reason is BrakeReason.NO_ACTION:
            level = DiagnosticStatus.WARN
        else:
            level = DiagnosticStatus.ERROR
        message = decision.describe()
        c = self.counters
        values = {
            "state": "driving" if reason is None else "full brake",
            "brake_reason": "" if reason is None else reason.name.lower(),
            "rate_hz_target": self.params.rate_hz,
            "rate_hz_achieved": rate,
            "inference_ms_p50": inference_p50,
            "inference_ms_max": inference_max,
            "image_to_action_ms_p50": processing_p50,
            "image_to_action_ms_max": processing_max,
            "image_to_command_ms_p50": latency_p50,
            "image_to_command_ms_max": latency_max,
            "commands": c.commands,
            "safety_brake_commands": c.safety_brakes,
            "stale_events": c.stale_events,
            "frames": c.frames,
            "inferences": c.inferences,
            "non_finite_actions": c.non_finite_actions,
            "repeated_frames": c.repeated_frames,
            "frame_restarts": c.restarts,
            "lockstep_waits": c.lockstep_waits,
            "staleness_clock": "simulation (/clock)" if self.gate.on_sim_time() else "wall",
            "other_commanders": "; ".join(self.gate.other_commanders),
            "dropped_messages": sum(self.dropped.values()),
            **{
                f"dropped_{kind}": self.dropped.get(kind, 0)
                for kind in ("image", "odometry", "speedometer", "waypoints")
            },
            "checkpoint": str(self.checkpoint),
            "total_it": self.runner.meta.total_it,
            "device": str(self.device),
            "reloads": c.reloads,
            "rejected_reloads": c.rejected_reloads,
        }
        stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(
            diagnostics_message(f"{NODE_NAME}: policy", self.params.role_name, level, message, values, stamp)
        )


def _sigterm_as_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(args: list[str] | None = None) -> int:
    """Run the driver until Ctrl-C / SIGTERM; 2 when start-up fails (the message names the parameter)."""
    # rclpy's own handler would shut the context down before we could send the final brake.
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    node: DriverNode | None = None
    executor: SingleThreadedExecutor | None = None
    code = 0
    try:
        node = DriverNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except ParamError as error:
        get_logger(NODE_NAME).fatal(f"cannot start: {error}")
        code = 2  # like the trainer: 2 = unusable configuration
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.command_loop.stop(COMMAND_LOOP_STOP_S)  # first: no policy command after the brake
            if rclpy.ok():
                node.brake_now()
        if executor is not None:
            executor.shutdown(timeout_sec=SHUTDOWN_WAIT_S)  # let running callbacks end before the node goes
        if node is not None:
            if rclpy.ok():
                node.brake_now()
                node.flush_commands()
            if node.watcher is not None:
                node.watcher.wait(timeout=5.0)
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
