"""carla_simulator: the embedded simulator behind the carla-ros-bridge topics, for N ego vehicles.

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

Several ego vehicles (role_name a list): one world clock, one tick for all, each vehicle's
messages in list order after /clock; each drives its own copy of the track from its own spawn
point (vehicle_spacing_m apart), so they never see or hit each other (td3_sim.ego_vehicle).

Ticking: synchronous_mode with synchronous_mode_wait_for_vehicle_control_command: one tick per
control command (or twist) of every ego vehicle, and from launch on, with no command for command_wait_timeout_s, a
tick with the last control (like the bridge); a command after such a tick ticks at once (the
bridge's double tick). Otherwise a wall-clock timer ticks at publish_rate_hz with the latest
control. All callbacks run on one thread (single-threaded executor), so ticks never interleave.

Only with reset_service:=true (the bridge has none): /carla/<role>/reset
(td3_drive/srv/ResetEpisode) respawns at the start of the route, standing (seed >= 0: new
procedural track / spawn point), republishes a lap route and one tick, then answers with that
frame number. A non-finite control is treated as full brake and logged, never a crash.
"""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from builtin_interfaces.msg import Time
from carla_msgs.msg import CarlaControl, CarlaEgoVehicleControl, CarlaStatus
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseWithCovarianceStamped
from rclpy.clock import Clock as RosClock
from rclpy.clock import ClockType
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from td3_drive.srv import ResetEpisode

from td3_bringup.node_main import spin_node
from td3_core.params import Param, ParamError, ParamTable, non_negative, positive, ros_name
from td3_sim.ego_vehicle import LATCHED_QOS, LOG_THROTTLE_S, SENSOR_QOS, EgoVehicle, control_from_twist
from td3_sim.ground_truth import GroundTruthLog
from td3_sim.messages import stamp_of
from td3_sim.world import SimConfig

__all__ = ["LATCHED_QOS", "SENSOR_QOS", "NodeParams", "ParamError", "SimulatorNode", "control_from_twist", "validate"]

DIAGNOSTICS_PERIOD_S = 1.0


PARAMS = (
    Param(
        "role_name",
        "ego_vehicle",
        "ego vehicle role name: topics are /carla/<role_name>/...; a list (or 'a,b') = that many ego vehicles in "
        "one world, ticked together (synchronous: one command of each per tick)",
        ros_name,  # of each name: role_names() splits a list first
    ),
    Param(
        "vehicle_spacing_m", 40.0, "several ego vehicles: each spawns this much further along the track", non_negative
    ),
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
    Param(
        "late_odometry_after_teleport",
        False,
        "tests: the odometry of the first tick after a set_transform goes out with the next tick (a loaded host)",
    ),
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
    "late_odometry_after_teleport",
    "reset_service",
    "goal_behind_spawn_m",
    "ground_truth_log",
)


@dataclass(frozen=True)
class NodeParams:
    role_name: str  # the first vehicle's
    role_names: tuple[str, ...]
    vehicle_spacing_m: float
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
    late_odometry_after_teleport: bool
    reset_service: bool
    goal_behind_spawn_m: float
    ground_truth_log: str
    sim: SimConfig


def role_names(value: Any) -> tuple[str, ...]:
    """role_name as given: one name, a list of names, or names separated by commas."""
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, list | tuple) or not names:
        raise ParamError("role_name", f"must be a string (names separated by ',') or a list of strings, got {value!r}")
    roles = tuple(name.strip() if isinstance(name, str) else name for name in names)
    for role in roles:
        problem = ros_name(role) if isinstance(role, str) else "must be a string"
        if problem:
            raise ParamError("role_name", f"{problem}, got {role!r}")
    if len(set(roles)) != len(roles):
        raise ParamError("role_name", f"lists a vehicle twice: {', '.join(roles)}")
    return roles


def validate(values: Mapping[str, Any]) -> NodeParams:
    """Typed, checked parameters (td3_core.params); ParamError names the first bad one."""
    roles = role_names(values.get("role_name", "ego_vehicle"))
    checked = TABLE.validate({**values, "role_name": roles[0]})
    if len(roles) > 1 and checked["reset_service"]:
        raise ParamError(
            "reset_service",
            "offers one vehicle's reset: with several role_name entries each vehicle resets through the bridge's "
            "path (control/set_transform, goal), as with CARLA",
        )
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
        role_name=roles[0],
        role_names=roles,
        vehicle_spacing_m=checked["vehicle_spacing_m"],
        sync=checked["synchronous_mode"],
        wait_for_command=checked["synchronous_mode_wait_for_vehicle_control_command"],
        command_wait_timeout_s=checked["command_wait_timeout_s"],
        publish_rate_hz=rate,
        twist_max_steering_angle=checked["twist_max_steering_angle"],
        **{name: checked[name] for name in BEHAVIOUR_PARAMS},
        sim=sim,
    )


class SimulatorNode(Node):
    def __init__(self) -> None:
        super().__init__("carla_simulator")
        self.params = validate(TABLE.declare(self))
        p = self.params
        self.paused = False
        self.ticks = 0
        self.late_commands = 0  # commands that came after a timeout tick: a double tick
        self._timeout_ticked = False
        self._last_waiting = ""  # the silent vehicles the last timeout line named
        self._last_tick_wall = time.monotonic()
        self.truth = GroundTruthLog(p.ground_truth_log)
        self.vehicles: list[EgoVehicle] = []
        for index, role in enumerate(p.role_names):
            # Spread along the track like the spawn points of a CARLA map (one vehicle: the seed's).
            offset = index * p.vehicle_spacing_m
            tag = len(p.role_names) > 1
            self.vehicles.append(EgoVehicle(self, role, p.sim, p, self.truth, self._on_control, offset, tag))
        self.world = self.vehicles[0].world  # the clock of all: every world ticks together
        self._awaited: set[str] = set(p.role_names)  # vehicles whose command the next tick waits for

        self.pub_clock = self.create_publisher(Clock, "/clock", SENSOR_QOS)
        self.pub_carla_status = self.create_publisher(CarlaStatus, "/carla/status", SENSOR_QOS)
        self.pub_diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", SENSOR_QOS)
        self.tick_compute_s = 0.0
        steady = RosClock(clock_type=ClockType.STEADY_TIME)  # wall-clock period, also under sim time
        self.create_timer(DIAGNOSTICS_PERIOD_S, self._on_diagnostics_timer, clock=steady)

        self.create_subscription(CarlaControl, "/carla/control", self._on_carla_control, SENSOR_QOS)
        # set_initial_pose of the example objects.json: one role (the first vehicle's)
        self.create_subscription(PoseWithCovarianceStamped, "/initialpose", self._on_initial_pose, SENSOR_QOS)
        if p.reset_service:
            self.create_service(ResetEpisode, f"{self.vehicles[0].prefix}/reset", self._on_reset)

        if self.ticks_on_commands:
            if p.command_wait_timeout_s > 0:
                self.create_timer(min(0.05, p.command_wait_timeout_s / 4.0), self._on_wait_timer)
        else:
            self.create_timer(1.0 / p.publish_rate_hz, self._on_rate_timer)

        mode = "synchronous, one tick per command" if self.ticks_on_commands else f"{p.publish_rate_hz:g} ticks/s"
        if len(self.vehicles) > 1:
            mode = mode.replace("per command", f"per command of each of {len(self.vehicles)} vehicles")
        topics = ", ".join(v.prefix for v in self.vehicles)
        self.get_logger().info(
            f"{p.sim.track} track (seed {p.sim.seed}), camera {p.sim.image_width}x{p.sim.image_height} "
            f"fov {p.sim.fov:g}, dt {p.sim.fixed_delta_seconds:g} s, {mode}; topics under {topics}"
        )
        for vehicle in self.vehicles:
            vehicle.publish_routes(vehicle.planner.on_tick(vehicle.car_xy()))
        self._publish_tick()

    @property
    def role(self) -> str:
        return self.params.role_name

    @property
    def ticks_on_commands(self) -> bool:
        return self.params.sync and self.params.wait_for_command

    # ------------------------------------------------------------------ inputs

    def _on_control(self, vehicle: EgoVehicle, msg: CarlaEgoVehicleControl) -> None:
        """Like the bridge: the next tick waits for one command of every ego vehicle; a second
        command of one vehicle before the others' only replaces its control."""
        vehicle.record_command(msg)
        if self._timeout_ticked:
            self.late_commands += 1  # the bridge ticked on the old control; this one counts for the next
        self._timeout_ticked = False
        if vehicle.role not in self._awaited:
            self.get_logger().debug(f"another command from {vehicle.role} before the tick: it replaces the last")
        self._awaited.discard(vehicle.role)
        if self.ticks_on_commands and not self.paused and not self._awaited:
            self._tick()

    def _on_initial_pose(self, msg: PoseWithCovarianceStamped) -> None:
        # set_initial_pose forwards it to control/set_transform (z + 2 m: the car drops; flat here)
        self.vehicles[0].on_set_transform(msg.pose.pose)

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
            waiting = ", ".join(f"/carla/{role}/vehicle_control_cmd" for role in sorted(self._awaited))
            line = (
                f"Timeout ({self.params.command_wait_timeout_s:g}s) while waiting for vehicle control commands: "
                f"ticking with the last control (waiting on {waiting})"
            )
            if waiting != self._last_waiting:  # other vehicles silent now: said at once, repeats throttled
                self._last_waiting = waiting
                self.get_logger().info(line)
            else:
                self.get_logger().info(line, throttle_duration_sec=LOG_THROTTLE_S)
            self._tick()
            self._timeout_ticked = True

    def _on_rate_timer(self) -> None:
        if not self.paused:
            self._tick()

    def _on_reset(self, request: ResetEpisode.Request, response: ResetEpisode.Response) -> ResetEpisode.Response:
        vehicle = self.vehicles[0]  # validate(): the reset service has one vehicle
        try:
            vehicle.reset(int(request.seed))
        except Exception as error:  # a reset must answer, whatever went wrong
            response.success = False
            response.message = f"reset failed: {type(error).__name__}: {error}"
            self.get_logger().error(response.message)
            return response
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
        for vehicle in self.vehicles:
            vehicle.step()
        self._publish_tick(started)

    def _publish_tick(self, started: float | None = None) -> None:
        """Every message of the current frame in the bridge's order (example objects.json): status,
        clock, then each ego vehicle's vehicle_status and sensors in their list order - camera_info
        and image, collision, lane_invasion, odometry, speedometer. Events may come a tick late."""
        started = time.perf_counter() if started is None else started
        world = self.world
        stamp_ns = world.stamp_ns
        self._last_tick_wall = time.monotonic()
        self.ticks += 1
        self._awaited = set(self.params.role_names)
        self.pub_carla_status.publish(
            CarlaStatus(
                frame=world.frame,
                fixed_delta_seconds=world.dt,
                synchronous_mode=self.params.sync,
                synchronous_mode_running=not self.paused,
            )
        )
        self.pub_clock.publish(Clock(clock=stamp_of(stamp_ns)))
        for vehicle in self.vehicles:
            vehicle.publish_tick(stamp_ns)
        self.tick_compute_s += time.perf_counter() - started

    def _on_diagnostics_timer(self) -> None:
        """What the simulator costs: ticks and the wall time spent computing and publishing them."""
        roles = ",".join(self.params.role_names)
        status = DiagnosticStatus(name="carla_simulator: ticks", hardware_id=roles, level=DiagnosticStatus.OK)
        mean_ms = 1000.0 * self.tick_compute_s / self.ticks if self.ticks else 0.0
        status.message = f"{self.ticks} ticks, {mean_ms:.2f} ms each"
        values = {
            "ticks": str(self.ticks),
            "commands": str(sum(v.commands for v in self.vehicles)),
            "frame": str(self.world.frame),
            "tick_compute_s": f"{self.tick_compute_s:.6f}",
            "mean_tick_ms": f"{mean_ms:.3f}",
            "paused": str(self.paused),
            "late_commands": str(self.late_commands),
            "routes": str(sum(v.planner.version for v in self.vehicles)),
        }
        if len(self.vehicles) > 1:
            values["vehicles"] = str(len(self.vehicles))
        status.values = [KeyValue(key=key, value=value) for key, value in values.items()]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.pub_diagnostics.publish(array)


def _stamp_ns(stamp: Time) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def main(args: list[str] | None = None) -> int:
    return spin_node(SimulatorNode, "carla_simulator", args)


if __name__ == "__main__":
    sys.exit(main())
