"""One ego vehicle of the embedded simulator: its world state, its topics and what it publishes.

The simulator node owns one EgoVehicle per role name and ticks them together; each publishes
its own /carla/<role>/... messages of a tick in the bridge's order (vehicle_status, camera_info
and image, collision and lane_invasion events, odometry, speedometer), and runs its own
waypoint-publisher part. Each vehicle drives its own copy of the track (same track, its own
spawn point): vehicles share the clock and the tick, they do not see or hit each other.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from builtin_interfaces.msg import Time
from carla_msgs.msg import CarlaCollisionEvent, CarlaEgoVehicleControl, CarlaEgoVehicleStatus, CarlaLaneInvasionEvent
from geometry_msgs.msg import Pose, PoseStamped, Twist
from nav_msgs.msg import Odometry, Path
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Float32, Header

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


class EgoVehicle:
    def __init__(
        self,
        node: Node,
        role: str,
        sim: SimConfig,
        behaviour,  # the node's NodeParams: route delay, late events, test switches
        truth: GroundTruthLog,
        on_control: Callable[[EgoVehicle, CarlaEgoVehicleControl], None],
        spawn_offset_m: float = 0.0,
        tag_truth: bool = False,
    ) -> None:
        self.node = node
        self.role = role
        self.params = behaviour
        self.world = SimWorld(sim, spawn_offset_m=spawn_offset_m)
        self.camera_frame = f"{role}/rgb_front"
        self.last_control = CarlaEgoVehicleControl()
        self.commands = 0
        self._late: list[tuple[int, Event]] = []  # (stamp_ns, event) published with the next tick
        self._delay_odometry = False  # late_odometry_after_teleport: a teleport came since the last tick
        self._late_odometry: Odometry | None = None  # a tick's odometry held back to the next tick
        self.planner = WaypointPlanner(self.world.track, self.default_goal(), behaviour.route_delay_ticks)
        self._truth = truth
        self._truth_tag = {"role": role} if tag_truth else {}
        self._on_control = on_control

        self.prefix = prefix = f"/carla/{role}"
        self.pub_odometry = node.create_publisher(Odometry, f"{prefix}/odometry", SENSOR_QOS)
        self.pub_speed = node.create_publisher(Float32, f"{prefix}/speedometer", SENSOR_QOS)
        self.pub_status = node.create_publisher(CarlaEgoVehicleStatus, f"{prefix}/vehicle_status", SENSOR_QOS)
        self.pub_collision = node.create_publisher(CarlaCollisionEvent, f"{prefix}/collision", SENSOR_QOS)
        self.pub_lane = node.create_publisher(CarlaLaneInvasionEvent, f"{prefix}/lane_invasion", SENSOR_QOS)
        self.pub_info = node.create_publisher(CameraInfo, f"{prefix}/rgb_front/camera_info", SENSOR_QOS)
        self.pub_image = node.create_publisher(Image, f"{prefix}/rgb_front/image", SENSOR_QOS)
        self.pub_route = node.create_publisher(Path, f"{prefix}/waypoints", LATCHED_QOS)
        node.create_subscription(
            CarlaEgoVehicleControl, f"{prefix}/vehicle_control_cmd", lambda m: on_control(self, m), SENSOR_QOS
        )
        node.create_subscription(Twist, f"{prefix}/twist", self._on_twist, SENSOR_QOS)
        # actor.pseudo.control of the example objects.json, the waypoint publisher's goal
        node.create_subscription(Pose, f"{prefix}/control/set_transform", self.on_set_transform, SENSOR_QOS)
        node.create_subscription(Twist, f"{prefix}/control/set_target_velocity", self._on_set_velocity, SENSOR_QOS)
        node.create_subscription(PoseStamped, f"{prefix}/goal", self._on_goal, SENSOR_QOS)

    def truth(self, kind: str, **values) -> None:
        self._truth.write(kind, **self._truth_tag, **values)

    def default_goal(self) -> tuple[float, float]:
        """Like a CARLA map's spawn_points[0]: a fixed point, here just behind the spawn."""
        x, y, _ = self.world.track.spawn_pose(self.world.spawn_s - self.params.goal_behind_spawn_m)
        return x, y

    def car_xy(self) -> tuple[float, float]:
        x, y, _ = self.world.pose
        return x, y

    # ------------------------------------------------------------------ inputs

    def record_command(self, msg: CarlaEgoVehicleControl) -> None:
        self.commands += 1
        self.last_control = msg
        self.truth(
            "command",
            frame=self.world.frame,
            answers_ns=_stamp_ns(msg.header.stamp),
            throttle=msg.throttle,
            steer=msg.steer,
            brake=msg.brake,
        )

    def _on_twist(self, msg: Twist) -> None:
        values = (msg.linear.x, msg.angular.z)
        if not all(math.isfinite(v) for v in values):
            control = CarlaEgoVehicleControl(throttle=math.nan)  # a bad input: full brake in the world
        else:
            control = control_from_twist(msg, self.params.twist_max_steering_angle)
        self._on_control(self, control)

    def on_set_transform(self, msg: Pose) -> None:
        x, y, yaw = msg.position.x, msg.position.y, yaw_of(msg.orientation)
        if not all(math.isfinite(v) for v in (x, y, yaw)):
            self.node.get_logger().warning(f"ignoring a non-finite pose on control/set_transform: {msg}")
            return
        self.truth("set_transform", frame=self.world.frame, x=x, y=y, yaw=yaw, ignored=self.params.ignore_set_transform)
        if not self.params.ignore_set_transform:
            self.world.request_transform(x, y, yaw)
            self._delay_odometry = self.params.late_odometry_after_teleport

    def _on_set_velocity(self, msg: Twist) -> None:
        if not math.isfinite(msg.linear.x):
            self.node.get_logger().warning("ignoring a non-finite control/set_target_velocity")
            return
        self.world.request_speed(float(msg.linear.x))

    def _on_goal(self, msg: PoseStamped) -> None:
        x, y = msg.pose.position.x, msg.pose.position.y
        if not (math.isfinite(x) and math.isfinite(y)):
            self.node.get_logger().warning("ignoring a non-finite goal")
            return
        self.truth("goal", frame=self.world.frame, x=x, y=y)
        if self.params.publish_routes:
            self.node.get_logger().info("Received goal, trigger rerouting...")
            self.planner.on_goal(x, y, self.car_xy())

    # ------------------------------------------------------------------ ticks

    def step(self) -> None:
        c = self.last_control
        self.world.step(c.throttle, c.steer, c.brake, c.hand_brake, c.reverse)
        if self.world.input_invalid:
            self.node.get_logger().warning(
                f"non-finite vehicle control (throttle {c.throttle}, steer {c.steer}, brake {c.brake}): full brake",
                throttle_duration_sec=LOG_THROTTLE_S,
            )
        if self.params.publish_routes:
            self.publish_routes(self.planner.on_tick(self.car_xy()))

    def publish_tick(self, stamp_ns: int) -> None:
        """This vehicle's messages of the current frame, in the bridge's order after /clock."""
        world = self.world
        stamp = stamp_of(stamp_ns)
        image = world.render()
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

        if self._late_odometry is not None:  # the previous tick's, with its own stamp
            self.pub_odometry.publish(self._late_odometry)
            self._late_odometry = None
        if self._delay_odometry:
            self._late_odometry, self._delay_odometry = odometry_msg(world, self.role), False
        else:
            self.pub_odometry.publish(odometry_msg(world, self.role))
        self.pub_speed.publish(Float32(data=float(world.speed)))
        x, y, yaw = world.pose
        self.truth(
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

    def reset(self, seed: int) -> None:
        """The reset service's respawn (one vehicle only): new track for seed >= 0, its lap route."""
        self.world.reset(seed)
        self.truth("reset", frame=self.world.frame, seed=seed, track_length_m=self.world.track.length)
        self.last_control = CarlaEgoVehicleControl()
        self._late.clear()
        self._late_odometry, self._delay_odometry = None, False
        self.planner.set_track(self.world.track, self.default_goal())
        self.pub_route.publish(route_msg(self.world))
        self.planner.on_tick(self.car_xy())  # the reset's own route is published above

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
        self.truth("event", event=kind, stamp_ns=stamp_ns, published_with_frame=self.world.frame)
        if isinstance(event, CollisionEvent):
            msg = CarlaCollisionEvent(header=Header(stamp=stamp, frame_id=f"{self.role}/collision"))
            msg.other_actor_id = event.other_actor_id
            msg.normal_impulse.x, msg.normal_impulse.y, msg.normal_impulse.z = event.normal_impulse
            self.pub_collision.publish(msg)
        elif isinstance(event, LaneInvasionEvent):
            lane = CarlaLaneInvasionEvent(header=Header(stamp=stamp, frame_id=f"{self.role}/lane_invasion"))
            lane.crossed_lane_markings = list(event.crossed_lane_markings)
            self.pub_lane.publish(lane)

    def publish_routes(self, routes: list[PlannedRoute]) -> None:
        if not self.params.publish_routes:
            return
        for route in routes:
            if 0 < self.params.max_routes < route.version:
                self.node.get_logger().info(
                    f"route {route.version} not published (max_routes {self.params.max_routes})"
                )
                continue
            self.pub_route.publish(path_msg(route.points, route.yaws, stamp_of(self.world.stamp_ns)))
            self.truth(
                "route",
                frame=self.world.frame,
                version=route.version,
                trigger=route.trigger,
                points=len(route.points),
                first=[float(v) for v in route.points[0]],
                last=[float(v) for v in route.points[-1]],
            )
            self.node.get_logger().info(f"Published {len(route.points)} waypoints.")

    def _camera_info(self, header: Header) -> CameraInfo:
        fx, fy, cx, cy = self.world.renderer.camera.intrinsics()
        config = self.world.config
        info = CameraInfo(header=header, width=config.image_width, height=config.image_height)
        info.distortion_model = "plumb_bob"
        info.d = [0.0] * 5
        info.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
        info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        info.p = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
        return info


def _stamp_ns(stamp: Time) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
