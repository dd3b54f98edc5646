"""Collection scale-out of the embedded simulator: 1, 2, 4 ego vehicles, in one world or one process each.

    nice -n 10 python -m bench.bench_scale_out [--quick] [--vehicles 1 2 4] [--camera 84x84] [--preprocess]

Both shapes come from `td3_bringup.graph.simulation_graph` (what `td3-run sim` starts): `world` =
one simulator process with N ego vehicles (synchronous: one tick once every vehicle has sent a
command, as the bridge), `processes` = N simulator processes (as N servers). This process plays
N collectors with random actions: each vehicle's next command goes out the moment its frame
arrives (raw subscriptions: nothing is deserialized), so each simulator runs as fast as it can.
With --preprocess a preprocessing node per vehicle runs beside the simulator(s) and the
collectors close the loop on its frames instead of the camera's.

Reported per shape and N: environment steps per second (all vehicles), per vehicle, bytes per
second crossing DDS into the collectors, the CPU seconds per second of each part (simulator
processes, preprocessing nodes, the collectors) and its share, and the ratio of env steps/s
against N = 1 in the same run (the baseline). With learning (mode `learning`): the trainer node
itself fed by the N vehicles (`role_name: 'a,b,...'`, config/trainer.yaml's networks, batch 64, on
CPU), measured from its ~/train_stats once the updates have started: env steps/s, updates/s,
CPU of the trainer and of the simulators. Prints one JSON object, then one line per row.
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

from bench.bench_preprocess_bandwidth import cpu_seconds
from td3_bringup.graph import repo_config_dir, simulation_graph
from td3_bringup.runner import running
from td3_core.preprocessing import PREPROCESSED_IMAGE_TOPIC, RAW_IMAGE_TOPIC

SHAPES = ("world", "processes")
KICK_AFTER_S = 1.0  # a vehicle without a frame for this long gets its command again


class Collectors:
    """N closed loops: a vehicle's frame in → its next random command out, from the callback."""

    def __init__(self, node, roles: list[str], topic_suffix: str) -> None:
        from carla_msgs.msg import CarlaEgoVehicleControl
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
        self.control_type = CarlaEgoVehicleControl
        self.rng = random.Random(0)
        self.lock = threading.Lock()
        self.frames = dict.fromkeys(roles, 0)
        self.bytes = dict.fromkeys(roles, 0)
        self.last_frame = dict.fromkeys(roles, time.monotonic())
        self.publishers = {}
        for role in roles:
            self.publishers[role] = node.create_publisher(
                CarlaEgoVehicleControl, f"/carla/{role}/vehicle_control_cmd", qos
            )
            node.create_subscription(
                Image, f"/carla/{role}/{topic_suffix}", lambda data, r=role: self._on_frame(r, data), qos, raw=True
            )

    def command(self, role: str) -> None:
        throttle = self.rng.uniform(0.2, 0.8)
        steer = self.rng.uniform(-0.3, 0.3)
        self.publishers[role].publish(self.control_type(throttle=throttle, steer=steer))

    def _on_frame(self, role: str, data: bytes) -> None:
        with self.lock:
            self.frames[role] += 1
            self.bytes[role] += len(data)
            self.last_frame[role] = time.monotonic()
        self.command(role)

    def kick_stalled(self) -> None:
        now = time.monotonic()
        with self.lock:
            stalled = [r for r, t in self.last_frame.items() if now - t > KICK_AFTER_S]
            for role in stalled:
                self.last_frame[role] = now
        for role in stalled:
            self.command(role)

    def snapshot(self) -> tuple[int, int]:
        with self.lock:
            return sum(self.frames.values()), sum(self.bytes.values())

    def matched(self) -> bool:
        return all(p.get_subscription_count() > 0 for p in self.publishers.values())


def bench_shape(shape: str, vehicles: int, camera: tuple[int, int], preprocess: bool, seconds: float, logs: Path):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    roles = [f"bench_v{k}" for k in range(vehicles)]
    overrides = {
        "role_name": roles if vehicles > 1 else roles[0],
        "image_width": camera[0],
        "image_height": camera[1],
        "command_wait_timeout_s": 0.0,  # every tick is a collector's: none on the bridge's 1 s timeout
    }
    specs = simulation_graph(repo_config_dir(), True, overrides, (), shape == "processes", preprocess)
    rclpy.init()
    node = rclpy.create_node("scale_out_collectors")
    collectors = Collectors(node, roles, PREPROCESSED_IMAGE_TOPIC if preprocess else RAW_IMAGE_TOPIC)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        with running(specs, logs / f"{shape}_{vehicles}") as processes:
            deadline = time.monotonic() + 120.0
            while not collectors.matched() or min(collectors.frames.values()) < 20:
                if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                    raise RuntimeError(f"{shape} x{vehicles}: no steady frames (logs in {logs})")
                collectors.kick_stalled()
                time.sleep(0.05)
            pids = {spec.name: proc.pid for spec, proc in zip(specs, processes, strict=True)}
            cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
            own0 = time.process_time()
            frames0, bytes0, t0 = *collectors.snapshot(), time.monotonic()
            while time.monotonic() - t0 < seconds:
                collectors.kick_stalled()
                time.sleep(0.1)
            frames1, bytes1, t1 = *collectors.snapshot(), time.monotonic()
            cpu1 = {name: cpu_seconds(pid) for name, pid in pids.items()}
            own1 = time.process_time()
    finally:
        executor.shutdown(timeout_sec=2.0)
        node.destroy_node()
        rclpy.try_shutdown()
    elapsed = t1 - t0
    parts = {
        "simulators": sum(cpu1[n] - cpu0[n] for n in pids if n.startswith("carla_simulator")) / elapsed,
        "preprocessing": sum(cpu1[n] - cpu0[n] for n in pids if n.startswith("td3_preprocess")) / elapsed,
        "collectors": (own1 - own0) / elapsed,
    }
    total = max(sum(parts.values()), 1e-9)
    steps = (frames1 - frames0) / elapsed
    return {
        "shape": shape,
        "vehicles": vehicles,
        "processes": len(specs),
        "window_s": round(elapsed, 2),
        "env_steps_per_s": round(steps, 1),
        "env_steps_per_s_per_vehicle": round(steps / vehicles, 1),
        "bytes_per_s_over_dds": round((bytes1 - bytes0) / elapsed),
        "cpu_s_per_s": {name: round(value, 3) for name, value in parts.items()},
        "cpu_share": {name: round(value / total, 3) for name, value in parts.items()},
    }


LEARNER = {  # the trainer's config/trainer.yaml networks (84x84, 512 features), small batch and buffer, on CPU
    "device": "cpu",
    "progress": False,
    "tensorboard": False,
    "learning_starts": 200,
    "batch_size": 64,
    "buffer_size": 5000,
    "checkpoint_every": 0,
    "max_episode_steps": 300,
    "stats_period_s": 0.5,
}


def bench_learning(shape: str, vehicles: int, camera: tuple[int, int], seconds: float, logs: Path) -> dict:
    """The trainer node itself fed by N vehicles (role_name 'a,b,...'), once learning has started:
    env steps/s and updates/s from its ~/train_stats, CPU of the trainer and the simulators."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from td3_drive.msg import TrainStats

    from td3_bringup.graph import trainer_node

    roles = [f"learn_v{k}" for k in range(vehicles)]
    sim_overrides = {
        "role_name": roles if vehicles > 1 else roles[0],
        "image_width": camera[0],
        "image_height": camera[1],
    }
    sims = simulation_graph(repo_config_dir(), True, sim_overrides, (), shape == "processes")
    run_dir = logs / f"learn_{shape}_{vehicles}"
    trainer = trainer_node(
        repo_config_dir(),
        {**LEARNER, "role_name": ",".join(roles), "models_dir": str(run_dir / "models"), "log_dir": str(run_dir)},
    )
    rclpy.init()
    node = rclpy.create_node("scale_out_learning_probe")
    lock = threading.Lock()
    stats: list[tuple[float, dict]] = []

    def on_stats(msg) -> None:
        with lock:
            stats.append((time.monotonic(), {"env_steps": msg.env_steps, "total_it": msg.total_it}))

    node.create_subscription(TrainStats, "/td3_trainer/train_stats", on_stats, 100)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()

    def newest() -> tuple[float, dict] | None:
        with lock:
            return stats[-1] if stats else None

    try:
        with running([*sims, trainer], run_dir) as processes:
            deadline = time.monotonic() + 240.0
            while (latest := newest()) is None or latest[1].get("total_it", 0) < 1:
                if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                    raise RuntimeError(f"learning {shape} x{vehicles}: no updates (logs in {run_dir})")
                time.sleep(0.2)
            pids = {spec.name: proc.pid for spec, proc in zip([*sims, trainer], processes, strict=True)}
            cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
            t0, first = newest()
            time.sleep(seconds)
            t1, last = newest()
            cpu1 = {name: cpu_seconds(pid) for name, pid in pids.items()}
    finally:
        executor.shutdown(timeout_sec=2.0)
        node.destroy_node()
        rclpy.try_shutdown()
    elapsed = max(t1 - t0, 1e-9)
    parts = {
        "simulators": sum(cpu1[n] - cpu0[n] for n in pids if n.startswith("carla_simulator")) / elapsed,
        "trainer": (cpu1[trainer.name] - cpu0[trainer.name]) / elapsed,
    }
    total = max(sum(parts.values()), 1e-9)
    steps = (last["env_steps"] - first["env_steps"]) / elapsed
    return {
        "shape": shape,
        "vehicles": vehicles,
        "mode": "learning",
        "window_s": round(elapsed, 2),
        "env_steps_per_s": round(steps, 1),
        "env_steps_per_s_per_vehicle": round(steps / vehicles, 1),
        "updates_per_s": round((last["total_it"] - first["total_it"]) / elapsed, 2),
        "cpu_s_per_s": {name: round(value, 3) for name, value in parts.items()},
        "cpu_share": {name: round(value / total, 3) for name, value in parts.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="6 s per configuration instead of 20 s")
    parser.add_argument("--vehicles", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--shapes", nargs="+", choices=SHAPES, default=list(SHAPES))
    parser.add_argument("--camera", default="84x84", help="WxH of every vehicle's camera")
    parser.add_argument("--preprocess", action="store_true", help="+ a preprocessing node per vehicle")
    parser.add_argument("--modes", nargs="+", choices=("random", "learning"), default=["random", "learning"])
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    camera = tuple(int(v) for v in args.camera.split("x"))
    seconds = 6.0 if args.quick else 20.0
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_scale_out_") as tmp:
        for mode in args.modes:
            baseline = None
            for shape in args.shapes:
                for vehicles in sorted(set(args.vehicles)):
                    if vehicles == 1 and baseline is not None:
                        continue  # one vehicle is one simulator process in both shapes
                    if mode == "random":
                        result = bench_shape(shape, vehicles, camera, args.preprocess, seconds, Path(tmp))
                        result["mode"] = "random"
                    else:
                        result = bench_learning(shape, vehicles, camera, seconds, Path(tmp))
                    if vehicles == 1:
                        baseline = result
                        result["shape"] = "one vehicle"
                    base = baseline["env_steps_per_s"] if baseline else None
                    result["env_steps_vs_one_vehicle"] = round(result["env_steps_per_s"] / base, 2) if base else None
                    results.append(result)
    report = {
        "benchmark": "scale_out",
        "baseline": "one vehicle, one simulator process, same run and mode",
        "camera": f"{camera[0]}x{camera[1]} bgra8",
        "preprocess": args.preprocess,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg": os.getloadavg()},
        "results": results,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json_out:
        args.json_out.write_text(text + "\n")
    for result in results:
        print(
            f"{result['mode']} {result['shape']} x{result['vehicles']}: {result['env_steps_per_s']} env steps/s "
            f"({result['env_steps_vs_one_vehicle']}x one vehicle)"
            + (f", {result['updates_per_s']} updates/s" if "updates_per_s" in result else ""),
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
