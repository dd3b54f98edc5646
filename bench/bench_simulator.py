"""Simulator throughput: ticks per second of step + render, in-process and through ROS.

    python -m bench.bench_simulator [--quick] [--no-ros] [--json-out results.json]

1. In-process, ROS-free: SimWorld.step + SimWorld.render on the loop track at 84x84 and
   800x600 (the bridge's default camera), driving with a fixed command. Reported: ticks/s,
   per-tick p50/p99 of step and render, and the one-off set-up (track, ground map, rays).
2. Through ROS (84x84, synchronous mode, one tick per command): the simulator node runs as its
   own process; this process sends a command, waits for the image of the new frame, sends the
   next. Reported: ticks/s and the command -> image round trip p50/p99.

Prints one JSON object, then a one-line summary.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# DDS isolation before rclpy is imported (inherited by the simulator process).
os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(101, 200)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import numpy as np

from td3_sim.world import SimConfig, SimWorld

SIZES = {"84x84": (84, 84), "800x600": (800, 600)}


def percentiles_ms(samples_s: list[float]) -> dict[str, float]:
    values = np.asarray(samples_s, dtype=np.float64) * 1000.0
    return {"p50_ms": round(float(np.percentile(values, 50)), 3), "p99_ms": round(float(np.percentile(values, 99)), 3)}


def bench_in_process(width: int, height: int, seconds: float) -> dict:
    start = time.perf_counter()
    world = SimWorld(SimConfig(image_width=width, image_height=height))
    world.render()
    setup_s = time.perf_counter() - start
    step_s, render_s = [], []
    begin = time.perf_counter()
    ticks = 0
    while time.perf_counter() - begin < seconds or ticks < 20:
        t0 = time.perf_counter()
        # Gentle throttle with a little steering: stays on the road for the whole run.
        world.step(0.3, 0.02 * np.sin(ticks / 20.0), 0.0)
        t1 = time.perf_counter()
        world.render()
        t2 = time.perf_counter()
        step_s.append(t1 - t0)
        render_s.append(t2 - t1)
        ticks += 1
        if ticks % 400 == 0:
            world.reset(None)  # stay near the start
    elapsed = time.perf_counter() - begin
    return {
        "ticks": ticks,
        "ticks_per_s": round(ticks / elapsed, 1),
        "step": percentiles_ms(step_s),
        "render": percentiles_ms(render_s),
        "setup_s": round(setup_s, 3),
    }


def bench_ros(commands: int, timeout_s: float = 60.0) -> dict:
    import rclpy
    from carla_msgs.msg import CarlaEgoVehicleControl
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    args = [sys.executable, "-m", "td3_sim.node", "--ros-args"]
    for key, value in {"image_width": 84, "image_height": 84, "command_wait_timeout_s": 0.0}.items():
        args += ["-p", f"{key}:={value}"]
    log = tempfile.NamedTemporaryFile(prefix="bench_simulator_", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    rclpy.init()
    node = rclpy.create_node("bench_simulator_client")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    images: list[float] = []
    node.create_subscription(
        Image, "/carla/ego_vehicle/rgb_front/image", lambda _m: images.append(time.perf_counter()), qos
    )
    publisher = node.create_publisher(CarlaEgoVehicleControl, "/carla/ego_vehicle/vehicle_control_cmd", qos)
    try:
        deadline = time.monotonic() + timeout_s
        while (
            publisher.get_subscription_count() == 0 or node.count_publishers("/carla/ego_vehicle/rgb_front/image") == 0
        ):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"simulator not up (exit {proc.poll()}); log: {log.name}")
            executor.spin_once(timeout_sec=0.05)
        executor.spin_once(timeout_sec=0.5)  # let discovery settle
        round_trips = []
        warmup = 20  # first round trips (connections, caches) are not counted
        for i in range(warmup + commands):
            if i == warmup:
                round_trips.clear()
                begin = time.perf_counter()
            count = len(images)
            sent = time.perf_counter()
            publisher.publish(CarlaEgoVehicleControl(throttle=0.3, steer=0.0))
            while len(images) == count:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no image after command {i}; log: {log.name}")
                executor.spin_once(timeout_sec=0.01)
            round_trips.append(images[count] - sent)
        elapsed = time.perf_counter() - begin
        return {
            "commands": commands,
            "ticks_per_s": round(commands / elapsed, 1),
            "round_trip": percentiles_ms(round_trips),
        }
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
        Path(log.name).unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_simulator", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (< 60 s in all)")
    parser.add_argument("--no-ros", action="store_true", help="skip the measurement through the ROS node")
    parser.add_argument("--json-out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    seconds = 3.0 if args.quick else 15.0
    report: dict = {
        "benchmark": "simulator_ticks",
        "quick": args.quick,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "in_process": {name: bench_in_process(w, h, seconds) for name, (w, h) in SIZES.items()},
    }
    if not args.no_ros:
        try:
            report["ros_sync_84x84"] = bench_ros(200 if args.quick else 1000)
        except Exception as error:  # report what failed; the in-process numbers stand
            report["ros_sync_84x84"] = {"error": f"{type(error).__name__}: {error}"}
    text = json.dumps(report, indent=2)
    print(text)
    if args.json_out:
        args.json_out.write_text(text + "\n")
    inproc = report["in_process"]
    summary = (
        f"simulator: {inproc['84x84']['ticks_per_s']} ticks/s at 84x84, "
        f"{inproc['800x600']['ticks_per_s']} ticks/s at 800x600 (in-process step+render)"
    )
    ros = report.get("ros_sync_84x84", {})
    if "ticks_per_s" in ros:
        summary += (
            f"; {ros['ticks_per_s']} ticks/s through ROS (84x84, sync, round trip p50 {ros['round_trip']['p50_ms']} ms)"
        )
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
