"""carla_simulator: the embedded simulator behind the carla-ros-bridge topics, for one ego vehicle.

    python -m td3_sim.node --ros-args --params-file config/simulator.yaml [-p name:=value ...]

Conventions (as CARLA through the bridge): map frame x forward / y left / z up (REP-103), yaw
counter-clockwise positive; steer +1 turns RIGHT (yaw decreases), throttle/brake in [0, 1].

Publishes (<role> = role_name), every message of one tick with header.stamp = sim time of the
frame (frame * fixed_delta_seconds), frame_id `map` (odometry, path) or `<role>/rgb_front`
(camera), reliable depth 10 unless noted:
    /clock                                 rosgraph_msgs/Clock
    /carla/<role>/odometry                 nav_msgs/Odometry, child frame <role>, twist in <role>
    /carla/<role>/speedometer              std_msgs/Float32, m/s, negative when reversing
    /carla/<role>/vehicle_status           carla_msgs/CarlaEgoVehicleStatus (the control applied)
    /carla/<role>/collision                carla_msgs/CarlaCollisionEvent, only when one happens
    /carla/<role>/lane_invasion            carla_msgs/CarlaLaneInvasionEvent, only when one happens
    /carla/status                          carla_msgs/CarlaStatus (transient local)
    /diagnostics                           diagnostic_msgs/DiagnosticArray, every second (wall clock):
                                           ticks and the time spent computing and publishing them
    /carla/<role>/rgb_front/camera_info    sensor_msgs/CameraInfo
    /carla/<role>/rgb_front/image          sensor_msgs/Image bgra8, step = width * 4
    /carla/<role>/waypoints                nav_msgs/Path, the route (one lap from the spawn point),
                                           reliable + transient local depth 1, at start and every reset
in that order: the image comes LAST, so a subscriber that has the image of a tick has already
been sent everything else of that tick (odometry, events) with the same stamp.

Consumes: /carla/<role>/vehicle_control_cmd (carla_msgs/CarlaEgoVehicleControl),
/carla/<role>/twist (geometry_msgs/Twist, mapped like carla_twist_to_control: throttle =
linear.x / 10, steer = -angular.z / twist_max_steering_angle, all zero = full brake, negative
linear.x = reverse), /carla/control (carla_msgs/CarlaControl PLAY / PAUSE / STEP_ONCE).

Ticking: synchronous_mode with synchronous_mode_wait_for_vehicle_control_command: the initial
frame at start, then exactly one tick per control command (or twist); with no command for
command_wait_timeout_s, a tick with the last control (like the bridge) - once a first command
or reset has been received, so that the world does not race ahead of a controller that is
still starting (the initial frame is published at start; a reset gives a fresh one). Otherwise a wall-clock
timer ticks at publish_rate_hz with the latest control. All callbacks run on one thread
(single-threaded executor), so ticks never interleave.

Service /carla/<role>/reset (td3_drive/srv/ResetEpisode): respawn at the start of the
route, standing (seed >= 0: new procedural track from the seed / spawn point on the loop),
republish the waypoints and one tick of sensor messages for a new frame, then answer with that
frame number. A non-finite control is treated as full brake and logged, never a crash.
"""

from __future__ import annotations

import math
import secrets
import sys
import time
from dataclasses import dataclass
from typing import Any

import rclpy
from carla_msgs.msg import (
    CarlaCollisionEvent,
    CarlaControl,
    CarlaEgoVehicleControl,
    CarlaEgoVehicleStatus,
    CarlaLaneInvasionEvent,
    CarlaStatus,
)
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry, Path
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.clock import Clock as RosClock
from rclpy.clock import ClockType
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Float32, Header
from td3_drive.srv import ResetEpisode

from td3_sim.messages import image_msg, odometry_msg, route_msg, stamp_of, yaw_quaternion
from td3_sim.world import CollisionEvent, ConfigError, LaneInvasionEvent, SimConfig, SimWorld

SENSOR_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
LATCHED_QOS = QoSProfile(
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
    history=HistoryPolicy.KEEP_LAST,
)
STATUS_QOS = QoSProfile(
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
    history=HistoryPolicy.KEEP_LAST,
)
TWIST_MAX_LON_ACCELERATION = 10.0  # carla_twist_to_control: linear.x of throttle 1
LOG_THROTTLE_S = 5.0
DIAGNOSTICS_PERIOD_S = 1.0
EXIT_INVALID_PARAMETER = 2


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    description: str


PARAMS = (
    Param("role_name", "ego_vehicle", "ego vehicle role name: topics are /carla/<role_name>/..."),
    Param("image_width", 800, "camera image width, pixels"),
    Param("image_height", 600, "camera image height, pixels"),
    Param("fov", 90.0, "camera horizontal field of view, degrees"),
    Param("camera_pitch_deg", 5.0, "camera pitch, degrees downwards (the bridge's rgb_front: 0)"),
    Param("fixed_delta_seconds", 0.05, "sim time per tick, seconds"),
    Param("synchronous_mode", True, "tick on commands (true) or on a wall-clock timer (false)"),
    Param("synchronous_mode_wait_for_vehicle_control_command", True, "synchronous mode: one tick per command"),
    Param("command_wait_timeout_s", 1.0, "synchronous mode: tick with the last control after this; 0 = never"),
    Param("track", "loop", "loop (built-in) or procedural (generated from the seed)"),
    Param("seed", 0, "initial track/spawn/lighting seed; < 0 = a random one (logged)"),
    Param("randomize_lighting", False, "per-episode brightness and tint from the reset seed"),
    Param("obstacles", 0, "static obstacles (cones, crates) on the road"),
    Param("publish_rate_hz", 0.0, "ticks per second without waiting for commands; 0 = 1 / fixed_delta_seconds"),
    Param("twist_max_steering_angle", 1.2217, "rad of angular.z at steer 1 on the twist input"),
)


class ParamError(ValueError):
    pass


@dataclass(frozen=True)
class NodeParams:
    role_name: str
    sync: bool
    wait_for_command: bool
    command_wait_timeout_s: float
    publish_rate_hz: float
    twist_max_steering_angle: float
    sim: SimConfig


def validate(values: dict[str, Any]) -> NodeParams:
    """Typed, checked parameters; ParamError names the first bad one."""
    checked: dict[str, Any] = {}
    for p in PARAMS:
        value = values.get(p.name, p.default)
        if isinstance(p.default, bool):
            ok = isinstance(value, bool)
        elif isinstance(p.default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(p.default, float):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            value = float(value) if ok else value
            ok = ok and math.isfinite(value)
        else:
            ok = isinstance(value, str)
        if not ok:
            raise ParamError(f"parameter '{p.name}' must be a finite {type(p.default).__name__}, got {value!r}")
        checked[p.name] = value
    role = checked["role_name"]
    if not role or not all(ch.isalnum() or ch == "_" for ch in role) or role[0].isdigit():
        raise ParamError(f"parameter 'role_name' must be a ROS name token (letters, digits, _), got {role!r}")
    for name in ("command_wait_timeout_s", "publish_rate_hz"):
        if checked[name] < 0:
            raise ParamError(f"parameter '{name}' must be >= 0, got {checked[name]}")
    if checked["twist_max_steering_angle"] <= 0:
        raise ParamError(f"parameter 'twist_max_steering_angle' must be > 0, got {checked['twist_max_steering_angle']}")
    seed = checked["seed"]
    if seed < 0:
        seed = secrets.randbelow(2**31)
    sim = SimConfig(
        image_width=checked["image_width"],
        image_height=checked["image_height"],
        fov=checked["fov"],
        camera_pitch_deg=checked["camera_pitch_deg"],
        fixed_delta_seconds=checked["fixed_delta_seconds"],
        track=checked["track"],
        seed=seed,
        randomize_lighting=checked["randomize_lighting"],
        obstacles=checked["obstacles"],
    )
    try:
        sim.validate()
    except ConfigError as error:
        raise ParamError(str(error)) from None
    rate = checked["publish_rate_hz"] or 1.0 / sim.fixed_delta_seconds
    return NodeParams(
        role_name=role,
        sync=checked["synchronous_mode"],
        wait_for_command=checked["synchronous_mode_wait_for_vehicle_control_command"],
        command_wait_timeout_s=checked["command_wait_timeout_s"],
        publish_rate_hz=rate,
        twist_max_steering_angle=checked["twist_max_steering_angle"],
        sim=sim,
    )


def control_from_twist(twist: Twist, max_steering_angle: float) -> CarlaEgoVehicleControl:
    """carla_twist_to_control's mapping (the driver's Twist output is its inverse)."""
    control = CarlaEgoVehicleControl()
    if twist == Twist():
        control.brake = 1.0
        return control
    speed = twist.linear.x
    if speed > 0:
        control.throttle = min(TWIST_MAX_LON_ACCELERATION, speed) / TWIST_MAX_LON_ACCELERATION
    else:
        control.reverse = True
        control.throttle = max(-TWIST_MAX_LON_ACCELERATION, speed) / -TWIST_MAX_LON_ACCELERATION
    yaw_rate = twist.angular.z
    control.steer = -max(-max_steering_angle, min(max_steering_angle, yaw_rate)) / max_steering_angle
    return control


class SimulatorNode(Node):
    def __init__(self) -> None:
        super().__init__("carla_simulator")
        values = {}
        for p in PARAMS:
            descriptor = ParameterDescriptor(description=p.description, dynamic_typing=True)
            values[p.name] = self.declare_parameter(p.name, p.default, descriptor).value
        self.params = validate(values)
        p = self.params
        self.world = SimWorld(p.sim)
        self.role = p.role_name
        self.camera_frame = f"{self.role}/rgb_front"
        self.paused = False
        self.last_control = CarlaEgoVehicleControl()
        self.commands = 0
        self.ticks = 0
        self._last_tick_wall = time.monotonic()
        self._controlled = False  # a command or reset has been received

        prefix = f"/carla/{self.role}"
        self.pub_clock = self.create_publisher(Clock, "/clock", SENSOR_QOS)
        self.pub_odometry = self.create_publisher(Odometry, f"{prefix}/odometry", SENSOR_QOS)
        self.pub_speed = self.create_publisher(Float32, f"{prefix}/speedometer", SENSOR_QOS)
        self.pub_status = self.create_publisher(CarlaEgoVehicleStatus, f"{prefix}/vehicle_status", SENSOR_QOS)
        self.pub_collision = self.create_publisher(CarlaCollisionEvent, f"{prefix}/collision", SENSOR_QOS)
        self.pub_lane = self.create_publisher(CarlaLaneInvasionEvent, f"{prefix}/lane_invasion", SENSOR_QOS)
        self.pub_carla_status = self.create_publisher(CarlaStatus, "/carla/status", STATUS_QOS)
        self.pub_info = self.create_publisher(CameraInfo, f"{prefix}/rgb_front/camera_info", SENSOR_QOS)
        self.pub_image = self.create_publisher(Image, f"{prefix}/rgb_front/image", SENSOR_QOS)
        self.pub_route = self.create_publisher(Path, f"{prefix}/waypoints", LATCHED_QOS)
        self.pub_diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", SENSOR_QOS)
        self.tick_compute_s = 0.0
        steady = RosClock(clock_type=ClockType.STEADY_TIME)  # wall-clock period, also under sim time
        self.create_timer(DIAGNOSTICS_PERIOD_S, self._on_diagnostics_timer, clock=steady)

        self.create_subscription(CarlaEgoVehicleControl, f"{prefix}/vehicle_control_cmd", self._on_control, SENSOR_QOS)
        self.create_subscription(Twist, f"{prefix}/twist", self._on_twist, SENSOR_QOS)
        self.create_subscription(CarlaControl, "/carla/control", self._on_carla_control, SENSOR_QOS)
        self.create_service(ResetEpisode, f"{prefix}/reset", self._on_reset)

        if self.ticks_on_commands:
            if p.command_wait_timeout_s > 0:
                self.create_timer(min(0.05, p.command_wait_timeout_s / 4.0), self._on_wait_timer)
        else:
            self.create_timer(1.0 / p.publish_rate_hz, self._on_rate_timer)

        mode = "synchronous, one tick per command" if self.ticks_on_commands else f"{p.publish_rate_hz:g} ticks/s"
        self.get_logger().info(
            f"{p.sim.track} track (seed {p.sim.seed}), camera {p.sim.image_width}x{p.sim.image_height} "
            f"fov {p.sim.fov:g}, dt {p.sim.fixed_delta_seconds:g} s, {mode}; topics under {prefix}"
        )
        self._publish_route()
        self._publish_tick()

    @property
    def ticks_on_commands(self) -> bool:
        return self.params.sync and self.params.wait_for_command

    # ------------------------------------------------------------------ inputs

    def _on_control(self, msg: CarlaEgoVehicleControl) -> None:
        self.commands += 1
        self._controlled = True
        self.last_control = msg
        if self.ticks_on_commands and not self.paused:
            self._tick()

    def _on_twist(self, msg: Twist) -> None:
        values = (msg.linear.x, msg.angular.z)
        if not all(math.isfinite(v) for v in values):
            control = CarlaEgoVehicleControl(throttle=math.nan)  # a bad input: full brake in the world
        else:
            control = control_from_twist(msg, self.params.twist_max_steering_angle)
        self._on_control(control)

    def _on_carla_control(self, msg: CarlaControl) -> None:
        if msg.command == CarlaControl.PAUSE:
            self.paused = True
        elif msg.command == CarlaControl.PLAY:
            self.paused = False
        elif msg.command == CarlaControl.STEP_ONCE:
            self._tick()
        else:
            self.get_logger().warning(f"unknown /carla/control command {msg.command}", throttle_duration_sec=5.0)

    def _on_wait_timer(self) -> None:
        if self.paused or not self._controlled:
            # Nobody drives yet (or paused): the world waits instead of racing ahead of a
            # controller that is still starting; its first command or reset arms the timeout.
            self._last_tick_wall = time.monotonic()
            return
        if time.monotonic() - self._last_tick_wall >= self.params.command_wait_timeout_s:
            self.get_logger().info(
                f"no vehicle control command for {self.params.command_wait_timeout_s:g} s: ticking with the last "
                f"control (waiting on /carla/{self.role}/vehicle_control_cmd)",
                throttle_duration_sec=LOG_THROTTLE_S,
            )
            self._tick()

    def _on_rate_timer(self) -> None:
        if not self.paused:
            self._tick()

    def _on_reset(self, request: ResetEpisode.Request, response: ResetEpisode.Response) -> ResetEpisode.Response:
        try:
            self.world.reset(int(request.seed))
        except Exception as error:  # a reset must answer, whatever went wrong
            response.success = False
            response.message = f"reset failed: {type(error).__name__}: {error}"
            self.get_logger().error(response.message)
            return response
        self.last_control = CarlaEgoVehicleControl()
        self._controlled = True
        self._publish_route()
        self._publish_tick()
        response.success = True
        response.frame = self.world.frame
        track = self.world.track
        response.message = f"{track.name} track (seed {track.seed}), route {self.world.route_points.shape[0]} points"
        self.get_logger().debug(f"reset (seed {request.seed}): frame {self.world.frame}")
        return response

    # ------------------------------------------------------------------ ticks

    def _tick(self) -> None:
        started = time.perf_counter()
        c = self.last_control
        self.world.step(c.throttle, c.steer, c.brake, c.hand_brake, c.reverse)
        if self.world.input_invalid:
            self.get_logger().warning(
                f"non-finite vehicle control (throttle {c.throttle}, steer {c.steer}, brake {c.brake}): full brake",
                throttle_duration_sec=LOG_THROTTLE_S,
            )
        self._publish_tick(started)

    def _publish_tick(self, started: float | None = None) -> None:
        """Every message of the current frame, the image last."""
        started = time.perf_counter() if started is None else started
        world = self.world
        stamp = stamp_of(world.stamp_ns)
        self._last_tick_wall = time.monotonic()
        self.ticks += 1
        image = world.render()

        self.pub_clock.publish(Clock(clock=stamp))

        _, _, yaw = world.pose
        self.pub_odometry.publish(odometry_msg(world, self.role))
        self.pub_speed.publish(Float32(data=float(world.speed)))

        applied = world.control
        status = CarlaEgoVehicleStatus(header=Header(stamp=stamp, frame_id="map"))
        status.velocity = float(abs(world.speed))
        status.acceleration.linear.x, status.acceleration.linear.y = world.acceleration_xy
        status.orientation = yaw_quaternion(yaw)
        status.control = CarlaEgoVehicleControl(
            header=Header(stamp=stamp, frame_id="map"),
            throttle=applied.throttle,
            steer=applied.steer,
            brake=applied.brake,
            hand_brake=applied.hand_brake,
            reverse=applied.reverse,
            gear=-1 if applied.reverse else 1,
        )
        self.pub_status.publish(status)

        for event in world.events:
            if isinstance(event, CollisionEvent):
                msg = CarlaCollisionEvent(header=Header(stamp=stamp, frame_id=self.role))
                msg.other_actor_id = event.other_actor_id
                msg.normal_impulse.x, msg.normal_impulse.y, msg.normal_impulse.z = event.normal_impulse
                self.pub_collision.publish(msg)
            elif isinstance(event, LaneInvasionEvent):
                msg = CarlaLaneInvasionEvent(header=Header(stamp=stamp, frame_id=self.role))
                msg.crossed_lane_markings = list(event.crossed_lane_markings)
                self.pub_lane.publish(msg)

        self.pub_carla_status.publish(
            CarlaStatus(
                frame=world.frame,
                fixed_delta_seconds=world.dt,
                synchronous_mode=self.params.sync,
                synchronous_mode_running=not self.paused,
            )
        )
        camera_header = Header(stamp=stamp, frame_id=self.camera_frame)
        self.pub_info.publish(self._camera_info(camera_header))
        self.pub_image.publish(image_msg(image, camera_header))
        self.tick_compute_s += time.perf_counter() - started

    def _on_diagnostics_timer(self) -> None:
        """What the simulator costs: ticks and the wall time spent computing and publishing them."""
        status = DiagnosticStatus(name="carla_simulator: ticks", hardware_id=self.role, level=DiagnosticStatus.OK)
        mean_ms = 1000.0 * self.tick_compute_s / self.ticks if self.ticks else 0.0
        status.message = f"{self.ticks} ticks, {mean_ms:.2f} ms each"
        values = {
            "ticks": str(self.ticks),
            "commands": str(self.commands),
            "frame": str(self.world.frame),
            "tick_compute_s": f"{self.tick_compute_s:.6f}",
            "mean_tick_ms": f"{mean_ms:.3f}",
            "paused": str(self.paused),
        }
        status.values = [KeyValue(key=key, value=value) for key, value in values.items()]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.pub_diagnostics.publish(array)

    def _camera_info(self, header: Header) -> CameraInfo:
        fx, fy, cx, cy = self.world.renderer.camera.intrinsics()
        info = CameraInfo(header=header, width=self.params.sim.image_width, height=self.params.sim.image_height)
        info.distortion_model = "plumb_bob"
        info.d = [0.0] * 5
        info.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
        info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        info.p = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
        return info

    def _publish_route(self) -> None:
        self.pub_route.publish(route_msg(self.world))


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args)
    node = None
    try:
        try:
            node = SimulatorNode()
        except ParamError as error:
            print(f"[carla_simulator] invalid parameter: {error}", file=sys.stderr, flush=True)
            return EXIT_INVALID_PARAMETER
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
