"""Test isolation for DDS: one ROS_DOMAIN_ID per test run, discovery kept on this host.

Set before anything imports rclpy, and inherited by every node process a test starts, so that
parallel test runs on one machine never hear each other.
"""

import os
import random

os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 100)))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
os.environ["PYTHONUNBUFFERED"] = "1"
