"""The bridge messages of one simulator frame, built from a SimWorld.

One place builds them, so the node that publishes them and anything that feeds them to the
trainer's or the driver's observation code in-process (benchmarks, tests) see the same fields.
"""

from __future__ import annotations

import array
import math

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseStamped, Quaternion
from nav_msgs.msg import Odometry, Path
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from td3_sim.world import NS_PER_S, SimWorld


def stamp_of(ns: int) -> Time:
    return Time(sec=ns // NS_PER_S, nanosec=ns % NS_PER_S)


def yaw_quaternion(yaw: float) -> Quaternion:
    return Quaternion(x=0.0, y=0.0, z=math.sin(yaw / 2.0), w=math.cos(yaw / 2.0))


def yaw_of(q: Quaternion) -> float:
    """Yaw of a quaternion (rotation about z), rad."""
    return math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))


def odometry_msg(world: SimWorld, role: str) -> Odometry:
    """nav_msgs/Odometry of the ego vehicle: pose in `map`, twist in the vehicle frame."""
    x, y, yaw = world.pose
    odometry = Odometry(header=Header(stamp=stamp_of(world.stamp_ns), frame_id="map"), child_frame_id=role)
    odometry.pose.pose.position.x, odometry.pose.pose.position.y = x, y
    odometry.pose.pose.orientation = yaw_quaternion(yaw)
    odometry.twist.twist.linear.x = world.speed
    odometry.twist.twist.linear.y = world.lateral_velocity
    odometry.twist.twist.angular.z = world.yaw_rate
    return odometry


def image_msg(image: np.ndarray, header: Header) -> Image:
    """sensor_msgs/Image bgra8 of a (height, width, 4) uint8 render."""
    height, width = image.shape[:2]
    return Image(
        header=header,
        height=height,
        width=width,
        encoding="bgra8",
        is_bigendian=0,
        step=width * 4,
        data=array.array("B", image.tobytes()),
    )


def route_msg(world: SimWorld) -> Path:
    """nav_msgs/Path of the world's lap from its spawn point (the reset service's route)."""
    points, yaws = world.route
    return path_msg(points, yaws, stamp_of(world.stamp_ns))


def path_msg(points: np.ndarray, yaws: np.ndarray, stamp: Time) -> Path:
    """nav_msgs/Path in `map` like carla_waypoint_publisher's: the poses carry no header of their own."""
    path = Path(header=Header(stamp=stamp, frame_id="map"))
    for (px, py), yaw in zip(points, yaws, strict=True):
        pose = PoseStamped()
        pose.pose.position.x, pose.pose.position.y = float(px), float(py)
        pose.pose.orientation = yaw_quaternion(float(yaw))
        path.poses.append(pose)
    return path
