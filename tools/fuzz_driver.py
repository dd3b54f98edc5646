"""Throw random and malformed messages at a running driver node over DDS; it must not crash.

Starts the driver (its own process, a small checkpoint written by the trainer's own code:
TD3Agent.checkpoint_payload + the atomic save) and publishes, as fast as it takes them,
random camera images (every encoding the bridge or a camera may send, plus unknown ones;
random sizes, steps and data lengths, empty and oversized data), odometry with any float in
any field (NaN, inf, huge) and routes with random points, interleaved with valid frames. Then
it checks that the driver is still alive, kept publishing commands at its rate, that every
command was finite and in range, and that Ctrl-C ends it cleanly (exit code 0).

    python -m tools.fuzz_driver [--inputs N] [--seed S]

Prints one JSON object (inputs tried per kind, commands received, out-of-range commands,
crashes) and a one-line summary; exits non-zero on any failure.
"""

from __future__ import annotations

import argparse
import array
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENCODINGS = ("bgra8", "bgr8", "rgb8", "rgba8", "mono8", "mono16", "16UC1", "32FC1", "yuv422", "bayer_rggb8", "", "x")
ROLE = "ego_vehicle"


def write_checkpoint(path: Path) -> Path:
    """A small, untrained policy checkpoint, written the way the trainer writes one."""
    from td3_core.actions import ActionConfig
    from td3_core.checkpoint import save_checkpoint, write_latest_pointer
    from td3_core.networks import Architecture
    from td3_core.preprocessing import PreprocessConfig
    from td3_core.vector_state import ObservationConfig
    from td3_trainer.config import TD3Config
    from td3_trainer.td3 import TD3Agent

    observation = ObservationConfig(num_waypoints=3)
    arch = Architecture(image_size=36, feature_dim=32, hidden_dim=32, vector_dim=observation.vector_dim)
    agent = TD3Agent(arch, TD3Config(), "cpu")
    payload = agent.checkpoint_payload(
        preprocess=PreprocessConfig(image_size=36),
        observation=observation,
        action=ActionConfig(),
        config=TD3Config(),
        extra={"env_steps": 0},
    )
    save_checkpoint(payload, path)
    write_latest_pointer(path.parent, path)
    return path


class Fuzzer:
    def __init__(self, rng: random.Random) -> None:
        import rclpy
        from carla_msgs.msg import CarlaEgoVehicleControl
        from nav_msgs.msg import Odometry
        from nav_msgs.msg import Path as PathMsg
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        rclpy.init()
        self.rclpy = rclpy
        self.rng = rng
        self.node = rclpy.create_node("driver_fuzzer")
        prefix = f"/carla/{ROLE}"
        self.image_pub = self.node.create_publisher(Image, f"{prefix}/rgb_front/image", 10)
        self.odometry_pub = self.node.create_publisher(Odometry, f"{prefix}/odometry", 10)
        latched = QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
        )
        self.route_pub = self.node.create_publisher(PathMsg, f"{prefix}/waypoints", latched)
        self.commands: list[CarlaEgoVehicleControl] = []
        command_topic = f"{prefix}/vehicle_control_cmd"
        self.node.create_subscription(CarlaEgoVehicleControl, command_topic, self.commands.append, 100)
        self.tried = {"image": 0, "odometry": 0, "route": 0, "valid_image": 0}
        self._types = (Image, Odometry, PathMsg)

    def any_float(self) -> float:
        return self.rng.choice(
            [math.nan, math.inf, -math.inf, 1e308, -1e308, 0.0, self.rng.uniform(-1e4, 1e4), self.rng.gauss(0, 1)]
        )

    def image(self, valid: bool = False):
        image_type = self._types[0]
        if valid:
            width, height, encoding, channels = 36, 36, "bgra8", 4
            data = bytes(self.rng.getrandbits(8) for _ in range(64)) * (width * height * channels // 64)
            return image_type(width=width, height=height, encoding=encoding, step=width * channels, data=data)
        encoding = self.rng.choice(ENCODINGS)
        width = self.rng.choice([0, 1, 2, 36, 84, 161, 800, 100000])
        height = self.rng.choice([0, 1, 3, 36, 84, 600, 100000])
        step = self.rng.choice([0, width, width * 3, width * 4, width * 2 + 1, 2**31 - 1])
        size = self.rng.choice([0, 1, 17, 36 * 36 * 4, 84 * 84 * 3, 5000])
        msg = image_type(width=width, height=height, encoding=encoding, step=step, is_bigendian=self.rng.randint(0, 1))
        msg.data = array.array("B", bytes(self.rng.getrandbits(8) for _ in range(size)))
        return msg

    def odometry(self):
        msg = self._types[1]()
        p, q, t = msg.pose.pose.position, msg.pose.pose.orientation, msg.twist.twist.linear
        p.x, p.y, p.z, q.x, q.y, q.z, q.w, t.x, t.y, t.z = (self.any_float() for _ in range(10))
        if self.rng.random() < 0.5:  # often a plausible one, so the vector path is reached too
            p.x, p.y = self.rng.uniform(-5, 5), self.rng.uniform(-5, 5)
            p.z, q.x, q.y, q.z, q.w = 0.0, 0.0, 0.0, 0.0, 1.0
            t.x, t.y, t.z = 3.0, 0.0, 0.0
        return msg

    def route(self):
        from geometry_msgs.msg import PoseStamped

        msg = self._types[2]()
        for _ in range(self.rng.choice([0, 1, 2, 5, 50])):
            pose = PoseStamped()
            valid = self.rng.random() < 0.7
            pose.pose.position.x = self.rng.uniform(-50, 50) if valid else self.any_float()
            pose.pose.position.y = self.rng.uniform(-50, 50) if valid else self.any_float()
            msg.poses.append(pose)
        return msg

    def send_one(self) -> None:
        kind = self.rng.choices(["image", "valid_image", "odometry", "route"], weights=[5, 2, 4, 1])[0]
        if kind == "image":
            self.image_pub.publish(self.image())
        elif kind == "valid_image":
            self.image_pub.publish(self.image(valid=True))
        elif kind == "odometry":
            self.odometry_pub.publish(self.odometry())
        else:
            self.route_pub.publish(self.route())
        self.tried[kind] += 1

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.rclpy.spin_once(self.node, timeout_sec=max(0.0, min(0.01, end - time.monotonic())))

    def close(self) -> None:
        self.node.destroy_node()
        self.rclpy.try_shutdown()


def in_range(msg) -> bool:
    values = (msg.steer, msg.throttle, msg.brake)
    finite = all(math.isfinite(v) for v in values)
    return finite and -1 <= msg.steer <= 1 and 0 <= msg.throttle <= 1 and 0 <= msg.brake <= 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", type=Path)
    args = parser.parse_args(argv)
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(101, 200)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    from td3_bringup.graph import driver_node, repo_config_dir
    from td3_bringup.runner import node_command

    rng = random.Random(args.seed)
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="td3_fuzz_") as tmp:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        checkpoint = write_checkpoint(work / "run" / "td3_fuzz_step_0.pth")
        params = {"checkpoint": str(checkpoint), "device": "cpu", "cpu_threads": 1, "log_throttle_s": 5.0}
        log = work / "driver.log"
        with open(log, "wb") as handle:
            driver = subprocess.Popen(
                node_command(driver_node(repo_config_dir(), params)), stdout=handle, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        fuzzer = Fuzzer(rng)
        started = time.monotonic()
        try:
            deadline = time.monotonic() + 60.0
            while not fuzzer.commands and time.monotonic() < deadline and driver.poll() is None:
                fuzzer.spin(0.1)
            if not fuzzer.commands:
                failures.append(f"no command from the driver before fuzzing (exit {driver.poll()})")
            before = len(fuzzer.commands)
            fuzz_start = time.monotonic()
            for _ in range(args.inputs):
                if driver.poll() is not None:
                    failures.append(f"the driver exited with {driver.returncode} during fuzzing")
                    break
                fuzzer.send_one()
                fuzzer.spin(0.002)
            fuzzer.spin(1.0)
            fuzz_seconds = time.monotonic() - fuzz_start
            during = len(fuzzer.commands) - before
            out_of_range = sum(not in_range(msg) for msg in fuzzer.commands)
            alive = driver.poll() is None
            if not alive:
                failures.append(f"the driver died (exit {driver.returncode})")
            if out_of_range:
                failures.append(f"{out_of_range} commands out of range")
            if during < 0.5 * 20.0 * fuzz_seconds:
                failures.append(f"only {during} commands in {fuzz_seconds:.1f} s of fuzzing (rate 20 Hz)")
        finally:
            if driver.poll() is None:
                os.killpg(driver.pid, signal.SIGINT)
            try:
                code = driver.wait(timeout=20.0)
            except subprocess.TimeoutExpired:
                os.killpg(driver.pid, signal.SIGKILL)
                code = driver.wait()
            fuzzer.close()
        text = log.read_text(errors="replace")
        if code != 0:
            failures.append(f"Ctrl-C exit code {code}")
        if "Traceback" in text:
            failures.append("a traceback in the driver's log")
    result = {
        "inputs_tried": sum(fuzzer.tried.values()),
        "by_kind": fuzzer.tried,
        "commands_received": len(fuzzer.commands),
        "commands_during_fuzzing": during,
        "fuzz_seconds": round(fuzz_seconds, 1),
        "out_of_range": out_of_range,
        "crashes": int(not alive or code != 0),
        "failures": failures,
        "seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(result, indent=2))
    print(
        f"fuzz_driver: {result['inputs_tried']} inputs tried, {result['commands_received']} commands, "
        f"{out_of_range} out of range, {result['crashes']} crashes, {len(failures)} failures"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
