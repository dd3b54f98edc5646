"""Bytes per second per vehicle over DDS: the raw camera against the preprocessing node's frames.

    nice -n 10 python -m bench.bench_preprocess_bandwidth [--quick] [--json-out results.json]

For each camera (800x600 bgra8: the bridge's rgb_front default and the embedded simulator's;
160x120: the demo's; 84x84: the tests'), the simulator runs free at 20 Hz as its own process,
the preprocessing node (td3_preprocess) as another, and this process subscribes to both
/carla/<role>/rgb_front/image and /carla/<role>/rgb_front/preprocessed with raw (serialized)
subscriptions: what it counts is exactly the CDR payload that crosses DDS per message. Reported
per camera: frames/s and bytes/s received on each topic, bytes per frame, bytes/s at the
nominal 20 Hz, the ratio raw / preprocessed (the baseline is the raw camera, same run), and the
CPU the preprocessing node spends per frame (its /proc utime + stime over the window). Also,
in process, the cost of td3_core's frame_from_image_msg per frame for each camera.

Prints one JSON object, then a one-line summary.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(101, 200)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import numpy as np

from td3_bringup.graph import preprocess_node, repo_config_dir, simulator_node
from td3_bringup.runner import running
from td3_core.preprocessing import PREPROCESSED_IMAGE_TOPIC, RAW_IMAGE_TOPIC, PreprocessConfig, frame_from_image_msg

CAMERAS = {"800x600": (800, 600), "160x120": (160, 120), "84x84": (84, 84)}
RATE_HZ = 20.0
ROLE = "bandwidth_vehicle"


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (and its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ByteCounter:
    """Raw subscriptions: the serialized size of every message on each topic."""

    def __init__(self, node, topics: dict[str, str]) -> None:
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
        self.lock = threading.Lock()
        self.counts = {name: [0, 0] for name in topics}  # messages, bytes
        for name, topic in topics.items():
            node.create_subscription(Image, topic, lambda data, n=name: self._count(n, data), qos, raw=True)

    def _count(self, name: str, data: bytes) -> None:
        with self.lock:
            self.counts[name][0] += 1
            self.counts[name][1] += len(data)

    def snapshot(self) -> dict[str, tuple[int, int]]:
        with self.lock:
            return {name: (c[0], c[1]) for name, c in self.counts.items()}


def bench_camera(label: str, width: int, height: int, seconds: float, log_dir: Path) -> dict:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    config = repo_config_dir()
    sim = simulator_node(
        config,
        sync=False,
        overrides={"role_name": ROLE, "image_width": width, "image_height": height, "publish_rate_hz": RATE_HZ},
    )
    prep = preprocess_node(config, {"role_name": ROLE})
    rclpy.init()
    node = rclpy.create_node("bandwidth_probe")
    topics = {"raw": f"/carla/{ROLE}/{RAW_IMAGE_TOPIC}", "preprocessed": f"/carla/{ROLE}/{PREPROCESSED_IMAGE_TOPIC}"}
    counter = ByteCounter(node, topics)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        with running([sim, prep], log_dir / label) as processes:
            deadline = time.monotonic() + 120.0
            while min(c for c, _ in counter.snapshot().values()) < 10:  # both streams flowing
                if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                    raise RuntimeError(f"{label}: no frames on both topics (logs in {log_dir / label})")
                time.sleep(0.1)
            before, t0, cpu0 = counter.snapshot(), time.monotonic(), cpu_seconds(processes[1].pid)
            time.sleep(seconds)
            after, t1, cpu1 = counter.snapshot(), time.monotonic(), cpu_seconds(processes[1].pid)
    finally:
        executor.shutdown(timeout_sec=2.0)
        node.destroy_node()
        rclpy.try_shutdown()
    elapsed = t1 - t0
    result: dict = {"camera": f"{width}x{height} bgra8", "window_s": round(elapsed, 2)}
    for name in topics:
        messages = after[name][0] - before[name][0]
        size = after[name][1] - before[name][1]
        per_frame = size / max(messages, 1)
        result[name] = {
            "frames_per_s": round(messages / elapsed, 2),
            "bytes_per_s": round(size / elapsed),
            "bytes_per_frame": round(per_frame),
            "bytes_per_s_at_20hz": round(per_frame * RATE_HZ),
            "mbit_per_s_at_20hz": round(per_frame * RATE_HZ * 8 / 1e6, 3),
        }
    frames = max(after["preprocessed"][0] - before["preprocessed"][0], 1)
    result["raw_over_preprocessed_bytes_per_frame"] = round(
        result["raw"]["bytes_per_frame"] / max(result["preprocessed"]["bytes_per_frame"], 1), 1
    )
    result["preprocess_node_cpu_ms_per_frame"] = round((cpu1 - cpu0) / frames * 1000.0, 2)
    return result


def preprocessing_cost_ms(width: int, height: int, repeats: int) -> float:
    """td3_core's frame_from_image_msg on one camera message, median over `repeats`."""
    from sensor_msgs.msg import Image

    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 4), dtype=np.uint8)
    msg = Image(height=height, width=width, encoding="bgra8", step=width * 4, data=pixels.tobytes())
    config = PreprocessConfig()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        frame_from_image_msg(msg, config)
        times.append(time.perf_counter() - start)
    return round(float(np.median(times)) * 1000.0, 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5 s per camera instead of 15 s")
    parser.add_argument("--cameras", nargs="+", choices=CAMERAS, default=list(CAMERAS))
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    selected = {label: CAMERAS[label] for label in args.cameras}
    seconds = 5.0 if args.quick else 15.0
    with tempfile.TemporaryDirectory(prefix="bench_bandwidth_") as tmp:
        cameras = {label: bench_camera(label, w, h, seconds, Path(tmp)) for label, (w, h) in selected.items()}
    report = {
        "benchmark": "preprocess_bandwidth",
        "baseline": "raw camera topic (rgb_front/image) of the same vehicle, same run",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg": os.getloadavg()},
        "nominal_rate_hz": RATE_HZ,
        "cameras": cameras,
        "frame_from_image_msg_ms": {label: preprocessing_cost_ms(w, h, 20) for label, (w, h) in selected.items()},
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json_out:
        args.json_out.write_text(text + "\n")
    label, big = next(iter(cameras.items()))
    print(
        f"{label} bgra8: {big['raw']['mbit_per_s_at_20hz']} Mbit/s raw vs "
        f"{big['preprocessed']['mbit_per_s_at_20hz']} Mbit/s preprocessed per vehicle at 20 Hz "
        f"({big['raw_over_preprocessed_bytes_per_frame']}x less); node CPU {big['preprocess_node_cpu_ms_per_frame']} "
        "ms/frame",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
