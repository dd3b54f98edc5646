"""Throw random and malformed messages at a running driver node over DDS; it must not crash.

Starts the driver (its own process, a small checkpoint written by the trainer's own code:
td3_core.checkpoint.training_payload of TD3Agent.state + the atomic save) and publishes, as fast as it takes them,
random camera images (every encoding the bridge or a camera may send, plus unknown ones;
random sizes, steps and data lengths, empty and oversized data), odometry with any float in
any field (NaN, inf, huge) and routes with random points, interleaved with valid frames. Two
more classes follow the random mix: message size (valid routes of 100,000 points and valid
large images, one of them beyond max_image_bytes), during which the commands must keep their
rate, and frozen stamps (a camera re-sending one frame at full rate), after which every command
must be the safety brake. Then it checks that the driver is still alive, kept publishing
commands at its rate, that every command was finite and in range, and that Ctrl-C ends it
cleanly (exit code 0).

The gaps between commands are measured on the driver's side: from each command's DDS source
timestamp (when the driver published it), so this process's own work (building a 100,000-point
route) does not count.

    python -m tools.fuzz_driver [--inputs N] [--big-messages N] [--seed S]

Prints one JSON object (inputs tried per kind, commands received, out-of-range commands,
largest gap between commands, brakes while frozen, crashes) and a one-line summary; exits
non-zero on any failure.
"""

from __future__ import annotations

import argparse
import array
import itertools
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
RATE_HZ = 20.0
BIG_ROUTE_POINTS = 100_000
BIG_IMAGES = ((1920, 1080), (3840, 2160))  # bgra8: 8 MB (decoded), 33 MB (over max_image_bytes)
FROZEN_S = 1.5  # a camera re-sending one frame this long: the last part must be all brakes
STALE_TIMEOUT_S = 0.3  # the driver's default


def write_checkpoint(path: Path) -> Path:
    """A small, untrained policy checkpoint, written the way the trainer writes one."""
    from td3_core.actions import ActionConfig
    from td3_core.checkpoint import save_checkpoint, training_payload, write_latest_pointer
    from td3_core.networks import Architecture
    from td3_core.preprocessing import PreprocessConfig
    from td3_core.vector_state import ObservationConfig
    from td3_trainer.config import TD3Config
    from td3_trainer.td3 import TD3Agent

    observation = ObservationConfig(num_waypoints=3)
    arch = Architecture(image_size=36, feature_dim=32, hidden_dim=32, vector_dim=observation.vector_dim)
    agent = TD3Agent(arch, TD3Config(), "cpu")
    payload = training_payload(
        agent.state(),
        preprocess=PreprocessConfig(image_size=36),
        observation=observation,
        action=ActionConfig(),
        config=TD3Config().to_dict(),
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
        self.published_ns: list[int] = []  # each command's DDS source timestamp
        command_topic = f"{prefix}/vehicle_control_cmd"
        self.node.create_subscription(CarlaEgoVehicleControl, command_topic, self._on_command, 1000)
        self.tried = {"image": 0, "odometry": 0, "route": 0, "valid_image": 0, "big_route": 0, "big_image": 0}
        self.tried["frozen_image"] = 0
        self._types = (Image, Odometry, PathMsg)

    def _on_command(self, msg, info) -> None:
        self.commands.append(msg)
        self.published_ns.append(int(info["source_timestamp"]))

    @staticmethod
    def now():
        from builtin_interfaces.msg import Time

        seconds, nanoseconds = divmod(time.time_ns(), 1_000_000_000)
        return Time(sec=seconds, nanosec=nanoseconds)

    def any_float(self) -> float:
        return self.rng.choice(
            [math.nan, math.inf, -math.inf, 1e308, -1e308, 0.0, self.rng.uniform(-1e4, 1e4), self.rng.gauss(0, 1)]
        )

    def image(self, valid: bool = False):
        image_type = self._types[0]
        if valid:
            width, height, encoding, channels = 36, 36, "bgra8", 4
            data = bytes(self.rng.getrandbits(8) for _ in range(64)) * (width * height * channels // 64)
            msg = image_type(width=width, height=height, encoding=encoding, step=width * channels, data=data)
            msg.header.stamp = self.now()  # a new frame has a new stamp
            return msg
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
        msg.header.stamp = self.now()  # valid or not, a new message has a new stamp
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

    def big_route(self):
        """A valid route, 0.5 m between points: 100,000 of them."""
        from geometry_msgs.msg import PoseStamped

        msg = self._types[2]()
        msg.header.frame_id = "map"
        for i in range(BIG_ROUTE_POINTS):
            pose = PoseStamped()
            pose.pose.position.x = 0.5 * i
            msg.poses.append(pose)
        return msg

    def big_image(self, width: int, height: int):
        msg = self._types[0](width=width, height=height, encoding="bgra8", step=width * 4)
        msg.data = bytes(self.rng.getrandbits(8) for _ in range(4096)) * (width * height * 4 // 4096)
        return msg

    def send_big(self, count: int) -> None:
        """Valid but large messages, alternating routes and images, with valid frames between."""
        route = self.big_route()
        images = [self.big_image(w, h) for w, h in BIG_IMAGES]
        for i in range(count):
            if i % 2 == 0:
                self.route_pub.publish(route)
                self.tried["big_route"] += 1
            else:
                image = images[(i // 2) % len(images)]
                image.header.stamp = self.now()
                self.image_pub.publish(image)
                self.tried["big_image"] += 1
            self.spin(1.5)  # taken before newer frames replace it (the driver keeps only the newest)
            for _ in range(5):
                self.odometry_pub.publish(self.odometry())
                self.image_pub.publish(self.image(valid=True))
                self.spin(0.05)

    def send_frozen(self, seconds: float) -> tuple[int, int]:
        """One frame re-sent at 50 Hz with its stamp; (commands, safety brakes) in its last part."""
        frozen = self.image(valid=True)
        start = time.time_ns()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.image_pub.publish(frozen)
            self.odometry_pub.publish(self.odometry())
            self.tried["frozen_image"] += 1
            self.spin(0.02)
        self.spin(0.3)
        judged_from = start + int((STALE_TIMEOUT_S + 0.2) * 1e9)  # the driver had stale_timeout to notice
        judged = [msg for msg, ns in zip(self.commands, self.published_ns, strict=True) if ns >= judged_from]
        return len(judged), sum(is_safety_brake(msg) for msg in judged)

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


def is_safety_brake(msg) -> bool:
    return msg.brake == 1.0 and msg.throttle == 0.0 and msg.steer == 0.0


def largest_gap_s(published_ns: list[int]) -> float:
    ordered = sorted(published_ns)
    return max((b - a for a, b in itertools.pairwise(ordered)), default=0) / 1e9


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


def in_range(msg) -> bool:
    values = (msg.steer, msg.throttle, msg.brake)
    finite = all(math.isfinite(v) for v in values)
    return finite and -1 <= msg.steer <= 1 and 0 <= msg.throttle <= 1 and 0 <= msg.brake <= 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=5000)
    parser.add_argument("--big-messages", type=int, default=6, help="valid 100,000-point routes and large images")
    parser.add_argument("--max-gap-s", type=float, default=1.0, help="a larger gap between commands is a failure")
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
                node_command(driver_node(repo_config_dir(), params)),
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        fuzzer = Fuzzer(rng)
        started = time.monotonic()
        gap, frozen_commands, frozen_brakes, peak_mb = 0.0, 0, 0, 0.0
        try:
            deadline = time.monotonic() + 60.0
            while not fuzzer.commands and time.monotonic() < deadline and driver.poll() is None:
                fuzzer.spin(0.1)
            if not fuzzer.commands:
                failures.append(f"no command from the driver before fuzzing (exit {driver.poll()})")
            before = len(fuzzer.commands)
            fuzz_start = time.monotonic()
            first_ns = time.time_ns()
            for _ in range(args.inputs):
                if driver.poll() is not None:
                    failures.append(f"the driver exited with {driver.returncode} during fuzzing")
                    break
                fuzzer.send_one()
                fuzzer.spin(0.002)
            fuzzer.send_big(args.big_messages)
            frozen_commands, frozen_brakes = fuzzer.send_frozen(FROZEN_S)
            fuzzer.spin(1.0)
            fuzz_seconds = time.monotonic() - fuzz_start
            gap = largest_gap_s([ns for ns in fuzzer.published_ns if ns >= first_ns])
            if gap > args.max_gap_s:
                failures.append(f"a gap of {gap:.2f} s between commands (at {RATE_HZ:g} Hz)")
            if frozen_commands == 0 or frozen_brakes < frozen_commands:
                failures.append(f"frozen camera: {frozen_brakes} of {frozen_commands} commands were the safety brake")
            during = len(fuzzer.commands) - before
            out_of_range = sum(not in_range(msg) for msg in fuzzer.commands)
            alive = driver.poll() is None
            if not alive:
                failures.append(f"the driver died (exit {driver.returncode})")
            if out_of_range:
                failures.append(f"{out_of_range} commands out of range")
            if during < 0.5 * RATE_HZ * fuzz_seconds:
                failures.append(f"only {during} commands in {fuzz_seconds:.1f} s of fuzzing (rate {RATE_HZ:g} Hz)")
        finally:
            peak_mb = peak_rss_mb(driver.pid)
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
        "largest_command_gap_s": round(gap, 3),
        "driver_peak_rss_mb": peak_mb,
        "frozen_commands_judged": frozen_commands,
        "frozen_safety_brakes": frozen_brakes,
        "crashes": int(not alive or code != 0),
        "failures": failures,
        "seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(result, indent=2))
    print(
        f"fuzz_driver: {result['inputs_tried']} inputs tried, {result['commands_received']} commands, "
        f"{out_of_range} out of range, largest gap {gap:.3f} s, frozen camera {frozen_brakes}/{frozen_commands} "
        f"brakes, driver peak memory {peak_mb} MB, {result['crashes']} crashes, {len(failures)} failures"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
