"""ROS messages → the network's observation (uint8 frame stack + float32 vector).

The trainer and the driver each own one ObservationBuilder and feed it the messages they
receive; nothing else turns messages into network inputs. Messages are read by their fields
(sensor_msgs/Image, nav_msgs/Odometry, nav_msgs/Path), so this module needs no rclpy.
"""

from __future__ import annotations

import math

import numpy as np

from td3_core.preprocessing import FrameStacker, PreprocessConfig, frame_reader
from td3_core.route import Route, RouteProjection, resample
from td3_core.vector_state import ObservationConfig, build_vector_state

# The route is resampled to this spacing, so that num_waypoints always look as far ahead (the
# embedded simulator used to publish ~2 m, carla_waypoint_publisher publishes ~1 m).
WAYPOINT_SPACING_M = 2.0


def yaw_from_quaternion(x: float, y: float, z: float, w: float) -> float:
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def pose_from_odometry(odometry) -> tuple[float, float, float, float]:
    """(x, y, yaw, speed) of a nav_msgs/Odometry; speed from the twist (child frame)."""
    pose = odometry.pose.pose
    q = pose.orientation
    twist = odometry.twist.twist.linear
    speed = math.sqrt(twist.x * twist.x + twist.y * twist.y + twist.z * twist.z)
    return pose.position.x, pose.position.y, yaw_from_quaternion(q.x, q.y, q.z, q.w), speed


def route_points_from_path(path) -> np.ndarray:
    return np.array([[p.pose.position.x, p.pose.position.y] for p in path.poses], dtype=np.float64).reshape(-1, 2)


class ObservationBuilder:
    def __init__(self, preprocess: PreprocessConfig, observation: ObservationConfig, image_input: str = "raw") -> None:
        self.preprocess = preprocess
        self.read_frame = frame_reader(image_input)  # raw camera, or the preprocessing node's frames
        self.observation = observation
        self.stacker = FrameStacker(preprocess)
        self.route: Route | None = None

    @property
    def needs_route(self) -> bool:
        return self.observation.use_vector_state

    def reset(self) -> None:
        """New episode: the next frame fills the stack, the route is searched from its start."""
        self.stacker.reset()
        if self.route is not None:
            self.route.reset_progress()

    def set_route_from_path(self, path) -> None:
        """Raises ValueError on a path with fewer than 2 or non-finite points."""
        self.route = Route(resample(route_points_from_path(path), WAYPOINT_SPACING_M))

    def push_image(self, image_msg) -> np.ndarray:
        """Decode, preprocess (raw input) and stack one frame; raises ImageError on a bad message."""
        return self.stacker.push(self.read_frame(image_msg, self.preprocess))

    def frames(self) -> np.ndarray:
        return self.stacker.stacked()

    def vector(self, odometry, speed: float | None = None) -> tuple[np.ndarray, RouteProjection | None]:
        """Vector state from odometry (+ speedometer when given) and the route.

        Without a route (none received yet) the vector is None-equivalent: callers must check
        `route is not None` when `needs_route`; pixels-only policies get an empty vector.
        """
        if not self.needs_route:
            projection = None
            if self.route is not None:
                x, y, _, _ = pose_from_odometry(odometry)
                projection = self.route.project(x, y)
            return np.zeros(0, dtype=np.float32), projection
        if self.route is None:
            raise RuntimeError("vector state needs the route (waypoints) and none has been received")
        x, y, yaw, twist_speed = pose_from_odometry(odometry)
        return build_vector_state(x, y, yaw, twist_speed if speed is None else speed, self.route, self.observation)
