"""Driver latency: camera image → vehicle command, and inference alone.

    python bench/bench_driver_latency.py [--quick] [--json-out results.json]

Two measurements, for 800x600 bgra8 camera images (the bridge's default) and 84x84 bgra8
images, both ending as the policy's 4x84x84 input (default architecture, vector state 23):

1. Processing, in-process, no ROS: the driver's path (td3_core decoding + area resize + frame
   stack, then the PolicyRunner: uint8 to the device, inference_mode, warmed up) against a named
   baseline, `naive_float64`: float64 numpy preprocessing (luma and resize in float64, frames as
   float64 in [0, 1]) and the torch model called with autograd on and no warm-up. Reported:
   image→action p50/p99, inference alone p50/p99, and the first call of each.
2. End to end, over DDS: the real DriverNode runs in this process (its callbacks on an executor
   thread); another process publishes images (+ route and odometry) at the camera rate, stamped
   with the wall time of publication. The driver stamps each command with its source image's
   stamp, so a subscriber here measures image published → command received from the stamps
   (first command per image). The node's own samples give image callback → action ready and
   image callback → command published. The command timer runs at rate_hz (20 Hz), so the wait
   for the next tick (uniform 0..50 ms) is part of image→command by design.

Runs on CPU, and on CUDA too when torch sees a GPU. Prints JSON, then a one-line summary.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# DDS isolation before rclpy is imported (inherited by the publisher process).
os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(101, 200)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import numpy as np
import torch

from td3_core.actions import ActionConfig
from td3_core.checkpoint import CheckpointMeta, save_checkpoint
from td3_core.networks import Architecture, Policy
from td3_core.preprocessing import PreprocessConfig, _area_overlaps
from td3_core.vector_state import ObservationConfig

CASES = {"800x600_bgra8": (800, 600), "84x84_bgra8": (84, 84)}
# Slightly off the command rate, so the camera's phase sweeps the command timer's as a real,
# unsynchronised camera's would (at exactly 20 Hz both the phase, and the wait, would be fixed).
CAMERA_HZ = 19.3
BASELINE = "naive_float64"


def percentiles(samples_s: list[float]) -> dict[str, float]:
    values = np.asarray(samples_s, dtype=np.float64) * 1000.0
    if values.size == 0:
        return {"n": 0, "p50_ms": math.nan, "p99_ms": math.nan}
    return {
        "n": int(values.size),
        "p50_ms": round(float(np.percentile(values, 50)), 3),
        "p99_ms": round(float(np.percentile(values, 99)), 3),
        "mean_ms": round(float(values.mean()), 3),
    }


def camera_image(width: int, height: int, seed: int = 0):
    from sensor_msgs.msg import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = ((xx + yy) * 255 // (width + height))[..., None]
    pixels = ((base + rng.integers(0, 60, (height, width, 4))) % 256).astype(np.uint8)
    pixels[..., 3] = 255
    msg = Image(height=height, width=width, encoding="bgra8", is_bigendian=0, step=width * 4)
    msg.header.frame_id = "ego_vehicle/rgb_front"
    msg.data = pixels.tobytes()
    return msg


def route_and_odometry():
    from geometry_msgs.msg import PoseStamped
    from nav_msgs.msg import Odometry, Path

    path = Path()
    path.header.frame_id = "map"
    for i in range(200):
        pose = PoseStamped()
        pose.pose.position.x, pose.pose.position.y = 2.0 * i, 5.0 * math.sin(i / 15.0)
        path.poses.append(pose)
    odometry = Odometry()
    odometry.header.frame_id = "map"
    odometry.pose.pose.position.x = 10.3
    odometry.pose.pose.orientation.w = 1.0
    odometry.twist.twist.linear.x = 6.0
    return path, odometry


def policy_and_meta(vector: bool = True) -> tuple[Policy, CheckpointMeta]:
    observation = ObservationConfig(use_vector_state=vector)
    arch = Architecture(vector_dim=observation.vector_dim)
    torch.manual_seed(0)
    policy = Policy(arch).eval()
    meta = CheckpointMeta(
        None, 2, arch, PreprocessConfig(arch.image_size, arch.frame_stack), observation, ActionConfig(), 0
    )
    return policy, meta


# ----------------------------------------------------------------------------- 1. processing, no ROS


class NaiveFloat64:
    """The baseline: what a direct numpy/torch implementation does without care for latency."""

    def __init__(self, policy: Policy, meta: CheckpointMeta, device: torch.device) -> None:
        self.policy = policy.to(device)
        self.meta = meta
        self.device = device
        self.frames: list[np.ndarray] = []

    def frame(self, msg) -> np.ndarray:
        pixels = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(msg.height, msg.step)
        bgr = pixels[:, : msg.width * 4].reshape(msg.height, msg.width, 4).astype(np.float64)
        gray = 0.114 * bgr[..., 0] + 0.587 * bgr[..., 1] + 0.299 * bgr[..., 2]
        size = self.meta.preprocess.image_size
        rows = _area_overlaps(msg.height, size) / msg.height
        cols = _area_overlaps(msg.width, size) / msg.width
        return (rows @ gray @ cols.T) / 255.0

    def act(self, msg, vector: np.ndarray) -> tuple[np.ndarray, float]:
        frame = self.frame(msg)
        self.frames = [*self.frames, frame][-self.meta.preprocess.frame_stack :]
        while len(self.frames) < self.meta.preprocess.frame_stack:
            self.frames.insert(0, frame)
        start = time.perf_counter()
        frames = torch.tensor(np.stack(self.frames)[None], dtype=torch.float32).to(self.device)
        state = self.policy.actor_cnn(frames)  # autograd on, no inference_mode, no warm-up
        if vector.size:
            state = torch.cat([state, torch.tensor(vector[None], dtype=torch.float32).to(self.device)], dim=1)
        action = self.policy.actor(state)[0].detach().cpu().numpy()
        return action, time.perf_counter() - start


def bench_processing(device: torch.device, iterations: int) -> dict:
    from td3_driver.node import DriverInputs
    from td3_driver.policy_runner import PolicyRunner

    path, odometry = route_and_odometry()
    results: dict[str, dict] = {}
    for case, (width, height) in CASES.items():
        msgs = [camera_image(width, height, seed) for seed in range(4)]
        # The driver's path; the first call is timed before the warm-up the node always does.
        policy, meta = policy_and_meta()
        inputs = DriverInputs(meta.preprocess, meta.observation)
        inputs.set_route(path)
        inputs.set_odometry(odometry)
        runner = PolicyRunner(policy, meta, device)
        start = time.perf_counter()
        runner.infer(inputs.push_image(msgs[0]), inputs.vector())
        first = time.perf_counter() - start  # only the first case of a process is really cold
        runner.warm_up(5)
        start = time.perf_counter()
        runner.infer(inputs.push_image(msgs[1]), inputs.vector())
        first_warm = time.perf_counter() - start
        total, inference = [], []
        for i in range(iterations):
            start = time.perf_counter()
            frames = inputs.push_image(msgs[i % len(msgs)])
            result = runner.infer(frames, inputs.vector())
            total.append(time.perf_counter() - start)
            inference.append(result.seconds)
        driver = {"image_to_action": percentiles(total), "inference": percentiles(inference)}
        driver["first_call_without_warm_up_ms"] = round(first * 1000.0, 3)
        driver["first_call_after_warm_up_ms"] = round(first_warm * 1000.0, 3)

        naive_policy, _ = policy_and_meta()
        naive = NaiveFloat64(naive_policy, meta, device)
        vector = inputs.vector()
        total, inference = [], []
        for i in range(iterations):
            start = time.perf_counter()
            _, seconds = naive.act(msgs[i % len(msgs)], vector)
            total.append(time.perf_counter() - start)
            inference.append(seconds)
        baseline = {"image_to_action": percentiles(total), "inference": percentiles(inference)}
        speedup = baseline["image_to_action"]["p50_ms"] / driver["image_to_action"]["p50_ms"]
        results[case] = {"driver": driver, BASELINE: baseline, "speedup_p50": round(speedup, 2)}
    return results


# ----------------------------------------------------------------------------- 2. end to end over DDS


def publisher_main(width: int, height: int, seconds: float) -> int:
    """Child process: images stamped with the wall time of publication, plus route and odometry."""
    import rclpy
    from nav_msgs.msg import Odometry, Path
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("bench_camera")
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    images = node.create_publisher(Image, "/carla/ego_vehicle/rgb_front/image", 1)
    odometry_pub = node.create_publisher(Odometry, "/carla/ego_vehicle/odometry", 1)
    route_pub = node.create_publisher(Path, "/carla/ego_vehicle/waypoints", latched)
    path, odometry = route_and_odometry()
    route_pub.publish(path)
    msg = camera_image(width, height)
    end = time.monotonic() + seconds
    next_tick = time.monotonic()
    while time.monotonic() < end:
        now_ns = time.time_ns()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now_ns, 1_000_000_000)
        # As the bridge does: each tick's odometry carries that tick's stamp (the driver brakes on
        # odometry that repeats its stamp: frozen).
        odometry.header.stamp = msg.header.stamp
        odometry_pub.publish(odometry)
        images.publish(msg)
        next_tick += 1.0 / CAMERA_HZ
        time.sleep(max(0.0, next_tick - time.monotonic()))
    node.destroy_node()
    rclpy.shutdown()
    return 0


def write_policy_checkpoint(directory: Path) -> Path:
    """A format-2 file with what the driver reads (the trainer's files hold more)."""
    policy, meta = policy_and_meta()
    payload = {
        "format_version": 2,
        "actor_cnn_state_dict": policy.actor_cnn.state_dict(),
        "actor_state_dict": policy.actor.state_dict(),
        "architecture": meta.architecture.to_dict(),
        "preprocessing": meta.preprocess.to_dict(),
        "observation": meta.observation.to_dict(),
        "action": meta.action.to_dict(),
        "total_it": 0,
    }
    return save_checkpoint(payload, directory / "td3_bench_step_0.pth")


MIN_DRIVING_COMMANDS = 20  # fewer in the end-to-end window: the summary warns instead of reporting quietly
E2E_CASES = {  # name: (image case, image_reliability of the driver)
    "800x600_bgra8_best_effort": ("800x600_bgra8", "best_effort"),
    "800x600_bgra8_reliable": ("800x600_bgra8", "reliable"),
    "84x84_bgra8_best_effort": ("84x84_bgra8", "best_effort"),
}


def bench_end_to_end(device: torch.device, seconds: float, checkpoint: Path, threads: int) -> dict:
    import rclpy
    from carla_msgs.msg import CarlaEgoVehicleControl
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    from td3_driver.node import DriverNode

    results: dict[str, dict] = {}
    for case, (image_case, reliability) in E2E_CASES.items():
        width, height = CASES[image_case]
        rclpy.init()
        driver = DriverNode(
            parameter_overrides=[
                Parameter("checkpoint", value=str(checkpoint)),
                Parameter("device", value=device.type),
                Parameter("diagnostics_period_s", value=3600.0),  # keep every sample in the node's windows
                Parameter("publish_network_input", value=False),
                Parameter("image_reliability", value=reliability),
                Parameter("cpu_threads", value=threads),
            ]
        )
        probe = rclpy.create_node("bench_probe")
        received: dict[int, float] = {}

        def on_command(msg: CarlaEgoVehicleControl, received=received) -> None:
            stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            if msg.brake < 1.0 or msg.throttle > 0.0:  # driving commands carry their image's stamp
                received.setdefault(stamp_ns, time.time_ns())

        probe.create_subscription(CarlaEgoVehicleControl, "/carla/ego_vehicle/vehicle_control_cmd", on_command, 50)
        executors = [SingleThreadedExecutor(), SingleThreadedExecutor()]
        executors[0].add_node(driver)
        executors[1].add_node(probe)
        spinners = [threading.Thread(target=e.spin, daemon=True) for e in executors]
        for spinner in spinners:
            spinner.start()
        publisher = subprocess.Popen(
            [sys.executable, __file__, "--publisher", str(width), str(height), str(seconds + 4.0)],
            env=os.environ.copy(),
        )
        try:
            time.sleep(2.0)  # discovery and the first frames
            for window in (driver.processing_window, driver.latency_window, driver.inference_window):
                window.samples.clear()
            received.clear()
            commands_before, frames_before, start = driver.counters.commands, driver.counters.frames, time.monotonic()
            time.sleep(seconds)
            elapsed = time.monotonic() - start
            rate = (driver.counters.commands - commands_before) / elapsed
            frame_rate = (driver.counters.frames - frames_before) / elapsed
            end_to_end = [(r - s) / 1e9 for s, r in list(received.items())]
            results[case] = {
                "image_published_to_command_received": percentiles(end_to_end),
                "image_callback_to_action_ready": percentiles(list(driver.processing_window.samples)),
                "image_callback_to_command_published": percentiles(list(driver.latency_window.samples)),
                "inference": percentiles(list(driver.inference_window.samples)),
                "commands_per_s": round(rate, 2),
                "camera_frames_published_per_s": CAMERA_HZ,
                "camera_frames_received_per_s": round(frame_rate, 2),
            }
        finally:
            publisher.wait(timeout=seconds + 30.0)
            for executor in executors:
                executor.shutdown()
            driver.destroy_node()
            probe.destroy_node()
            rclpy.shutdown()
    return results


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer iterations (well under 90 s)")
    parser.add_argument("--json-out", type=Path, help="also write the JSON here")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads, both pipelines (driver default: 1)")
    parser.add_argument("--publisher", nargs=3, metavar=("W", "H", "SECONDS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.publisher:
        width, height, seconds = args.publisher
        return publisher_main(int(width), int(height), float(seconds))

    iterations, seconds = (60, 5.0) if args.quick else (400, 20.0)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    report: dict = {
        "benchmark": "td3_driver latency",
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "cuda": torch.cuda.is_available()},
        "architecture": Architecture().to_dict(),
        "baseline": BASELINE,
        "camera_hz": CAMERA_HZ,
        "command_rate_hz": 20.0,
        "quick": args.quick,
        "torch_threads": torch.get_num_threads(),
        "results": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = write_policy_checkpoint(Path(tmp))
        for device in devices:
            report["results"][device.type] = {
                "processing": bench_processing(device, iterations),
                "end_to_end": bench_end_to_end(device, seconds, checkpoint, args.threads),
            }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json_out:
        args.json_out.write_text(text + "\n")
    cpu = report["results"]["cpu"]
    big = cpu["processing"]["800x600_bgra8"]
    e2e = cpu["end_to_end"]
    best_effort, reliable = e2e["800x600_bgra8_best_effort"], e2e["800x600_bgra8_reliable"]
    driving = reliable["image_published_to_command_received"]["n"]
    if driving < MIN_DRIVING_COMMANDS:  # a latency over a handful of commands measures nothing
        print(
            f"WARNING: only {driving} driving commands over DDS: the driver braked (its log says why)",
            file=sys.stderr,
        )
    print(
        f"cpu, 800x600 bgra8: image→action p50 {big['driver']['image_to_action']['p50_ms']:.1f} ms "
        f"(inference {big['driver']['inference']['p50_ms']:.1f} ms) vs {BASELINE} "
        f"{big[BASELINE]['image_to_action']['p50_ms']:.1f} ms ({big['speedup_p50']}x); "
        f"image→command over DDS (reliable) p50 {reliable['image_published_to_command_received']['p50_ms']:.1f} ms, "
        f"p99 {reliable['image_published_to_command_received']['p99_ms']:.1f} ms "
        f"on {reliable['image_published_to_command_received']['n']} driving commands; frames received/s "
        f"best_effort {best_effort['camera_frames_received_per_s']} vs reliable "
        f"{reliable['camera_frames_received_per_s']} of {CAMERA_HZ}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
