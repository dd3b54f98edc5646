"""carla_simulator: the embedded simulator behind the carla-ros-bridge topics, for one ego vehicle.

    python -m td3_sim.node --ros-args --params-file config/simulator.yaml [-p name:=value ...]

Conventions (as CARLA through the bridge): map frame x forward / y left / z up (REP-103), yaw
counter-clockwise positive; steer +1 turns RIGHT (yaw decreases), throttle/brake in [0, 1].

By default it behaves as the bridge does (docs/simulator.md, "Against the real bridge"). Per
tick, with header.stamp = frame * fixed_delta_seconds, reliable volatile depth 10, in the
bridge's order: /carla/status, /clock, /carla/<role>/vehicle_status, rgb_front/camera_info and
rgb_front/image (frame `<role>/rgb_front`), collision and lane_invasion events (frames
`<role>/collision`, `<role>/lane_invasion`; with `late_events` those of a tick go out with the
NEXT tick, keeping their own stamp), odometry (frame `map`, child `<role>`), speedometer. The
route (/carla/<role>/waypoints, transient local depth 1) comes from a waypoint-publisher part
(td3_sim.waypoints): open, ~1 m points from the car to the goal, recomputed after a goal on
/carla/<role>/goal or a > 2 m jump, published route_delay_ticks later. Also /diagnostics every
second of wall time.

Consumes: /carla/<role>/vehicle_control_cmd (carla_msgs/CarlaEgoVehicleControl),
/carla/<role>/twist (geometry_msgs/Twist, mapped like carla_twist_to_control: throttle =
linear.x / 10, steer = -angular.z / twist_max_steering_angle, all zero = full brake, negative
linear.x = reverse), /carla/control (carla_msgs/CarlaControl PLAY / PAUSE / STEP_ONCE), the
pseudo control /carla/<role>/control/set_transform (Pose: with the next tick, velocity kept) and
control/set_target_velocity (Twist linear.x), /initialpose, /carla/<role>/goal.

Ticking: synchronous_mode with synchronous_mode_wait_for_vehicle_control_command: one tick per
control command (or twist), and from launch on, with no command for command_wait_timeout_s, a
tick with the last control (like the bridge); a command after such a tick ticks at once (the
bridge's double tick). Otherwise a wall-clock timer ticks at publish_rate_hz with the latest
control. All callbacks run on one thread (single-threaded executor), so ticks never interleave.

Only with reset_service:=true (the bridge has none): /carla/<role>/reset
(td3_drive/srv/ResetEpisode) respawns at the start of the route, standing (seed >= 0: new
procedural track / spawn point), republishes a lap route and one tick, then answers with that
frame number. A non-finite control is treated as full brake and logged, never a crash.
"""

from __future__ import annotations

import math
import secrets
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import rclpy
from builtin_interfaces.msg import Time
from carla_msgs.msg import (
    CarlaCollisionEvent,
    CarlaControl,
    CarlaEgoVehicleControl,
    CarlaEgoVehicleStatus,
    CarlaLaneInvasionEvent,
    CarlaStatus,
)
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Pose, PoseStamped, PoseWithCovarianceStamped, Twist
from nav_msgs.msg import Odometry, Path
from rclpy.clock import Clock as RosClock
from rclpy.clock import ClockType
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Float32, Header
from td3_drive.srv import ResetEpisode

from td3_core.params import Param, ParamError, ParamTable, non_negative, positive, ros_name
from td3_sim.ground_truth import GroundTruthLog
from td3_sim.messages import image_msg, odometry_msg, path_msg, route_msg, stamp_of, yaw_of, yaw_quaternion
from td3_sim.waypoints import PlannedRoute, WaypointPlanner
from td3_sim.world import CollisionEvent, Event, LaneInvasionEvent, SimConfig, SimWorld

SENSOR_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
LATCHED_QOS = QoSProfile(
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
    history=HistoryPolicy.KEEP_LAST,
)
TWIST_MAX_LON_ACCELERATION = 10.0  # carla_twist_to_control: linear.x of throttle 1
LOG_THROTTLE_S = 5.0
DIAGNOSTICS_PERIOD_S = 1.0
EXIT_INVALID_PARAMETER = 2


PARAMS = (
    Param("role_name", "ego_vehicle", "ego vehicle role name: topics are /carla/<role_name>/...", ros_name),
    Param("image_width", 800, "camera image width, pixels"),
    Param("image_height", 600, "camera image height, pixels"),
    Param("fov", 90.0, "camera horizontal field of view, degrees"),
    Param("camera_pitch_deg", 5.0, "camera pitch, degrees downwards (the bridge's rgb_front: 0)"),
    Param("fixed_delta_seconds", 0.05, "sim time per tick, seconds"),
    Param("synchronous_mode", True, "tick on commands (true) or on a wall-clock timer (false)"),
    Param("synchronous_mode_wait_for_vehicle_control_command", True, "synchronous mode: one tick per command"),
    Param(
        "command_wait_timeout_s",
        1.0,
        "synchronous mode: tick with the last control after this; 0 = never",
        non_negative,
    ),
    Param("track", "loop", "loop (built-in) or procedural (generated from the seed)"),
    Param("seed", 0, "initial track/spawn/lighting seed; < 0 = a random one (logged)"),
    Param("randomize_lighting", False, "per-episode brightness and tint from the reset seed"),
    Param("obstacles", 0, "static obstacles (cones, crates) on the road"),
    Param(
        "publish_rate_hz",
        0.0,
        "ticks per second without waiting for commands; 0 = 1 / fixed_delta_seconds",
        non_negative,
    ),
    Param("twist_max_steering_angle", 1.2217, "rad of angular.z at steer 1 on the twist input", positive),
    Param("late_events", True, "collision / lane-invasion events published with the NEXT tick, own stamp (bridge)"),
    Param("route_delay_ticks", 3, "ticks between a route's trigger (goal, teleport) and its publication", non_negative),
    Param("publish_routes", True, "run the waypoint-publisher part (false: no route ever comes)"),
    Param("max_routes", 0, "tests: publish only the first max_routes routes (0 = all)", non_negative),
    Param("ignore_set_transform", False, "tests: control/set_transform and /initialpose never take effect"),
    Param("reset_service", False, "offer /carla/<role>/reset (not in the bridge; procedural tracks per episode)"),
    Param(
        "goal_behind_spawn_m",
        5.0,
        "default goal (the map's spawn_points[0]): this far behind the spawn",
        non_negative,
    ),
    Param("ground_truth_log", "", "JSON-lines file of every tick's true state, teleport and route ('' = none)"),
)
TABLE = ParamTable(PARAMS)


# Taken as they are into NodeParams (the bridge's behaviour and the test switches).
BEHAVIOUR_PARAMS = (
    "late_events",
    "route_delay_ticks",
    "publish_routes",
    "max_routes",
    "ignore_set_transform",
    "reset_service",
    "goal_behind_spawn_m",
    "ground_truth_log",
)


@dataclass(frozen=True)
class NodeParams:
    role_name: str
    sync: bool
    wait_for_command: bool
    command_wait_timeout_s: float
    publish_rate_hz: float
    twist_max_steering_angle: float
    late_events: bool
    route_delay_ticks: int
    publish_routes: bool
    max_routes: int
    ignore_set_transform: bool
    reset_service: bool
    goal_behind_spawn_m: float
    ground_truth_log: str
    sim: SimConfig


def validate(values: Mapping[str, Any]) -> NodeParams:
    """Typed, checked parameters (td3_core.params); ParamError names the first bad one."""
    checked = TABLE.validate(values)
    role = checked["role_name"]
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
    sim.validate()  # its ConfigError is a ParamError naming the parameter
    rate = checked["publish_rate_hz"] or 1.0 / sim.fixed_delta_seconds
    return NodeParams(
        role_name=role,
        sync=checked["synchronous_mode"],
        wait_for_command=checked["synchronous_mode_wait_for_vehicle_control_command"],
        command_wait_timeout_s=checked["command_wait_timeout_s"],
        publish_rate_hz=rate,
        twist_max_steering_angle=checked["twist_max_steering_angle"],
        **{name: checked[name] for name in BEHAVIOUR_PARAMS},
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
        self.params = validate(TABLE.declare(self))
        p = self.params
        self.world = SimWorld(p.sim)
        self.role = p.role_name
        self.camera_frame = f"{self.role}/rgb_front"
        self.paused = False
        self.last_control = CarlaEgoVehicleControl()
        self.commands = 0
        self.ticks = 0
        self.late_commands = 0  # commands that came after a timeout tick: a double tick
        self._timeout_ticked = False
        self._last_tick_wall = time.monotonic()
        self._late: list[tuple[int, Event]] = []  # (stamp_ns, event) published with the next tick
        self.planner = WaypointPlanner(self.world.track, self._default_goal(), p.route_delay_ticks)
        self.truth = GroundTruthLog(p.ground_truth_log)

        prefix = f"/carla/{self.role}"
        self.pub_clock = self.create_publisher(Clock, "/clock", SENSOR_QOS)
        self.pub_odometry = self.create_publisher(Odometry, f"{prefix}/odometry", SENSOR_QOS)
        self.pub_speed = self.create_publisher(Float32, f"{prefix}/speedometer", SENSOR_QOS)
        self.pub_status = self.create_publisher(CarlaEgoVehicleStatus, f"{prefix}/vehicle_status", SENSOR_QOS)
        self.pub_collision = self.create_publisher(CarlaCollisionEvent, f"{prefix}/collision", SENSOR_QOS)
        self.pub_lane = self.create_publisher(CarlaLaneInvasionEvent, f"{prefix}/lane_invasion", SENSOR_QOS)
        self.pub_carla_status = self.create_publisher(CarlaStatus, "/carla/status", SENSOR_QOS)
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
        # actor.pseudo.control of the example objects.json, set_initial_pose, the waypoint publisher
        self.create_subscription(Pose, f"{prefix}/control/set_transform", self._on_set_transform, SENSOR_QOS)
        self.create_subscription(Twist, f"{prefix}/control/set_target_velocity", self._on_set_velocity, SENSOR_QOS)
        self.create_subscription(PoseWithCovarianceStamped, "/initialpose", self._on_initial_pose, SENSOR_QOS)
        self.create_subscription(PoseStamped, f"{prefix}/goal", self._on_goal, SENSOR_QOS)
        if p.reset_service:
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
        self._publish_routes(self.planner.on_tick(self._car_xy()))
        self._publish_tick()

    def _default_goal(self) -> tuple[float, float]:
        """Like a CARLA map's spawn_points[0]: a fixed point, here just behind the spawn."""
        x, y, _ = self.world.track.spawn_pose(self.world._spawn_s - self.params.goal_behind_spawn_m)
        return x, y

    def _car_xy(self) -> tuple[float, float]:
        x, y, _ = self.world.pose
        return x, y

    @property
    def ticks_on_commands(self) -> bool:
        return self.params.sync and self.params.wait_for_command

    # ------------------------------------------------------------------ inputs

    def _on_control(self, msg: CarlaEgoVehicleControl) -> None:
        self.commands += 1
        self.last_control = msg
        if self._timeout_ticked:
            self.late_commands += 1  # the bridge ticked on the old control; this one ticks again at once
        self._timeout_ticked = False
        self.truth.write(
            "command",
            frame=self.world.frame,
            answers_ns=_stamp_ns(msg.header.stamp),
            throttle=msg.throttle,
            steer=msg.steer,
            brake=msg.brake,
        )
        if self.ticks_on_commands and not self.paused:
            self._tick()

    def _on_twist(self, msg: Twist) -> None:
        values = (msg.linear.x, msg.angular.z)
        if not all(math.isfinite(v) for v in values):
            control = CarlaEgoVehicleControl(throttle=math.nan)  # a bad input: full brake in the world
        else:
            control = control_from_twist(msg, self.params.twist_max_steering_angle)
        self._on_control(control)

    def _on_set_transform(self, msg: Pose) -> None:
        x, y, yaw = msg.position.x, msg.position.y, yaw_of(msg.orientation)
        if not all(math.isfinite(v) for v in (x, y, yaw)):
            self.get_logger().warning(f"ignoring a non-finite pose on control/set_transform: {msg}")
            return
        self.truth.write(
            "set_transform", frame=self.world.frame, x=x, y=y, yaw=yaw, ignored=self.params.ignore_set_transform
        )
        if not self.params.ignore_set_transform:
            self.world.request_transform(x, y, yaw)

    def _on_set_velocity(self, msg: Twist) -> None:
        if not math.isfinite(msg.linear.x):
            self.get_logger().warning("ignoring a non-finite control/set_target_velocity")
            return
        self.world.request_speed(float(msg.linear.x))

    def _on_initial_pose(self, msg: PoseWithCovarianceStamped) -> None:
        # set_initial_pose forwards it to control/set_transform (z + 2 m: the car drops; flat here)
        self._on_set_transform(msg.pose.pose)

    def _on_goal(self, msg: PoseStamped) -> None:
        x, y = msg.pose.position.x, msg.pose.position.y
        if not (math.isfinite(x) and math.isfinite(y)):
            self.get_logger().warning("ignoring a non-finite goal")
            return
        self.truth.write("goal", frame=self.world.frame, x=x, y=y)
        if self.params.publish_routes:
            self.get_logger().info("Received goal, trigger rerouting...")
            self.planner.on_goal(x, y, self._car_xy())

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
        if self.paused:
            self._last_tick_wall = time.monotonic()
            return
        # Like the bridge: it ticks from launch on, whether or not a command ever comes.
        if time.monotonic() - self._last_tick_wall >= self.params.command_wait_timeout_s:
            self.get_logger().info(
                f"Timeout ({self.params.command_wait_timeout_s:g}s) while waiting for vehicle control commands: "
                f"ticking with the last control (waiting on /carla/{self.role}/vehicle_control_cmd)",
                throttle_duration_sec=LOG_THROTTLE_S,
            )
            self._tick()
            self._timeout_ticked = True

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
        self._late.clear()
        self.planner.set_track(self.world.track, self._default_goal())
        self._publish_route()
        self.planner.on_tick(self._car_xy())  # the reset's own route is published above
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
        if self.params.publish_routes:
            self._publish_routes(self.planner.on_tick(self._car_xy()))
        self._publish_tick(started)

    def _publish_tick(self, started: float | None = None) -> None:
        """Every message of the current frame in the bridge's order (example objects.json): status,
        clock, the ego's vehicle_status, then its sensors in their list order - camera_info and
        image, collision, lane_invasion, odometry, speedometer. Events may come a tick late."""
        started = time.perf_counter() if started is None else started
        world = self.world
        stamp_ns = world.stamp_ns
        stamp = stamp_of(stamp_ns)
        self._last_tick_wall = time.monotonic()
        self.ticks += 1
        image = world.render()

        self.pub_carla_status.publish(
            CarlaStatus(
                frame=world.frame,
                fixed_delta_seconds=world.dt,
                synchronous_mode=self.params.sync,
                synchronous_mode_running=not self.paused,
            )
        )
        self.pub_clock.publish(Clock(clock=stamp))
        self.pub_status.publish(self._vehicle_status(stamp))
        camera_header = Header(stamp=stamp, frame_id=self.camera_frame)
        self.pub_info.publish(self._camera_info(camera_header))
        self.pub_image.publish(image_msg(image, camera_header))

        # The bridge's event sensors publish what CARLA has delivered so far; an event of this
        # frame that comes after that goes out with the next frame, with its own stamp.
        due, self._late = self._late, []
        events = [(stamp_ns, event) for event in world.events]
        if self.params.late_events:
            self._late = events
        else:
            due += events
        for event_ns, event in due:
            self._publish_event(event_ns, event)

        self.pub_odometry.publish(odometry_msg(world, self.role))
        self.pub_speed.publish(Float32(data=float(world.speed)))
        x, y, yaw = world.pose
        self.truth.write(
            "tick",
            frame=world.frame,
            stamp_ns=stamp_ns,
            x=x,
            y=y,
            yaw=yaw,
            speed=world.speed,
            on_road=world.on_road,
            lateral=world.lateral_offset,
            collision=world.collided,
            route_version=self.planner.version if self.params.publish_routes else 0,
        )
        self.tick_compute_s += time.perf_counter() - started

    def _vehicle_status(self, stamp: Time) -> CarlaEgoVehicleStatus:
        world = self.world
        applied = world.control
        status = CarlaEgoVehicleStatus(header=Header(stamp=stamp, frame_id="map"))
        status.velocity = float(abs(world.speed))
        status.acceleration.linear.x, status.acceleration.linear.y = world.acceleration_xy
        status.orientation = yaw_quaternion(world.pose[2])
        status.control = CarlaEgoVehicleControl(
            header=Header(stamp=stamp, frame_id="map"),
            throttle=applied.throttle,
            steer=applied.steer,
            brake=applied.brake,
            hand_brake=applied.hand_brake,
            reverse=applied.reverse,
            gear=-1 if applied.reverse else 1,
        )
        return status

    def _publish_event(self, stamp_ns: int, event: Event) -> None:
        stamp = stamp_of(stamp_ns)
        kind = "collision" if isinstance(event, CollisionEvent) else "lane_invasion"
        self.truth.write("event", event=kind, stamp_ns=stamp_ns, published_with_frame=self.world.frame)
        if isinstance(event, CollisionEvent):
            msg = CarlaCollisionEvent(header=Header(stamp=stamp, frame_id=f"{self.role}/collision"))
            msg.other_actor_id = event.other_actor_id
            msg.normal_impulse.x, msg.normal_impulse.y, msg.normal_impulse.z = event.normal_impulse
            self.pub_collision.publish(msg)
        elif isinstance(event, LaneInvasionEvent):
            lane = CarlaLaneInvasionEvent(header=Header(stamp=stamp, frame_id=f"{self.role}/lane_invasion"))
            lane.crossed_lane_markings = list(event.crossed_lane_markings)
            self.pub_lane.publish(lane)

    def _publish_routes(self, routes: list[PlannedRoute]) -> None:
        if not self.params.publish_routes:
            return
        for route in routes:
            if 0 < self.params.max_routes < route.version:
                self.get_logger().info(f"route {route.version} not published (max_routes {self.params.max_routes})")
                continue
            self.pub_route.publish(path_msg(route.points, route.yaws, stamp_of(self.world.stamp_ns)))
            self.truth.write(
                "route",
                frame=self.world.frame,
                version=route.version,
                trigger=route.trigger,
                points=len(route.points),
                first=[float(v) for v in route.points[0]],
                last=[float(v) for v in route.points[-1]],
            )
            self.get_logger().info(f"Published {len(route.points)} waypoints.")

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
            "late_commands": str(self.late_commands),
            "routes": str(self.planner.version),
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


def _stamp_ns(stamp: Time) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args)
    node = None
    try:
        try:
            node = SimulatorNode()
        except ParamError as error:
            print(f"[carla_simulator] invalid {error}", file=sys.stderr, flush=True)
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
