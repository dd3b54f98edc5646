"""Environment steps per second of simulator + trainer over ROS 2, and where the time goes.

The simulator and the trainer run as separate processes, as `td3-run train` starts them, in a
private DDS domain on this host. Two phases, each a fresh pair of processes:

    collect   random warm-up actions only (learning_starts above the budget): the rate the
              simulator + transport + trainer bookkeeping allow, with no learning at all
    learn     gradient updates every step (learning_starts small): the rate training runs at

The trainer reports the cumulative wall time of its loop's phases (~/train_stats: act, learn,
wait, store, reset; td3_trainer.loop_timing) and the simulator the wall time it spends
computing and publishing ticks (/diagnostics). From them, as fractions of the trainer's loop time:

    learning    gradient updates
    waiting     the trainer waiting for the next frame after its updates (simulator + transport)
    simulation  the simulator's tick computation (world step, rendering, message building)
    transport   waiting minus simulation, at least 0 (DDS both ways, serialisation, wake-ups)
    trainer     everything else in the trainer (policy forward, preprocessing, reward, buffer)

The trainer sends the command before its updates, so the simulator's tick overlaps them: in
the learn phase `simulation` is mostly hidden behind `learning` and `waiting` is what is left.

    python -m bench.bench_end_to_end [--quick] [--steps N] [--batch-size N] [--camera W H]

Prints one JSON object, then a one-line summary.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray
from td3_drive.msg import TrainStats

from td3_bringup.graph import repo_config_dir, training_graph
from td3_bringup.observer import BackgroundNode
from td3_bringup.runner import running, start_node, stop_processes

STATS_TOPIC = "/td3_trainer/train_stats"


class Listener(BackgroundNode):
    """Latest ~/train_stats of the trainer and the simulator's tick diagnostics."""

    def __init__(self) -> None:
        super().__init__("bench_end_to_end")
        self.stats: TrainStats | None = None
        self.sim: dict[str, str] = {}
        self.lock = threading.Lock()
        self.node.create_subscription(TrainStats, STATS_TOPIC, self._on_stats, 10)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def _on_stats(self, msg: TrainStats) -> None:
        with self.lock:
            self.stats = msg

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith("carla_simulator"):
                with self.lock:
                    self.sim = {kv.key: kv.value for kv in status.values}

    def reset(self) -> None:
        with self.lock:
            self.stats, self.sim = None, {}

    def snapshot(self) -> tuple[TrainStats | None, dict[str, str]]:
        with self.lock:
            return self.stats, dict(self.sim)


def run_phase(name: str, args: argparse.Namespace, learning_starts: int, listener: Listener, work: Path) -> dict:
    trainer = {
        "total_steps": args.steps,
        "learning_starts": learning_starts,
        "batch_size": args.batch_size,
        "max_episode_steps": 200,
        "checkpoint_every": 0,
        "progress": False,
        "tensorboard": False,
        "stats_period_s": 0.5,
        "models_dir": str(work / "models"),
        "run_name": name,
    }
    simulator = {"image_width": args.camera[0], "image_height": args.camera[1]}
    sim_spec, trainer_spec = training_graph(repo_config_dir(), "embedded", trainer, simulator)
    listener.reset()
    logs = work / name
    with running([sim_spec], logs):
        proc = start_node(trainer_spec, logs)
        try:
            proc.wait(timeout=args.timeout_s)
        finally:
            stop_processes([proc])
        time.sleep(1.5)  # the simulator's next diagnostics, the trainer's last stats
        stats, sim = listener.snapshot()
    if proc.returncode != 0 or stats is None:
        raise RuntimeError(f"{name}: trainer exit code {proc.returncode}, stats {stats is not None}; logs in {logs}")
    loop = stats.loop_s
    sim_s = float(sim.get("tick_compute_s", "nan"))
    transport = max(stats.wait_s - sim_s, 0.0)
    fractions = {
        "learning": stats.learn_s / loop,
        "waiting": stats.wait_s / loop,
        "simulation": sim_s / loop,
        "transport": transport / loop,
        "trainer": (stats.act_s + stats.store_s + stats.reset_s) / loop,
    }
    return {
        "env_steps": stats.env_steps,
        "updates": stats.total_it,
        "steps_per_s": stats.env_steps / loop,
        "loop_s": loop,
        "phases_s": {k: getattr(stats, f"{k}_s") for k in ("act", "learn", "wait", "store", "reset")},
        "simulator_ticks": int(sim.get("ticks", 0)),
        "simulator_tick_ms": float(sim.get("mean_tick_ms", "nan")),
        "fractions": {k: round(v, 4) for k, v in fractions.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 steps per phase")
    parser.add_argument("--steps", type=int, default=0, help="environment steps per phase (default 1000, quick 300)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--camera", type=int, nargs=2, default=(84, 84), metavar=("W", "H"))
    parser.add_argument("--timeout-s", type=float, default=900.0)
    args = parser.parse_args()
    args.steps = args.steps or (300 if args.quick else 1000)
    os.environ["ROS_DOMAIN_ID"] = str(random.SystemRandom().randint(101, 200))
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    listener = Listener()
    try:
        with tempfile.TemporaryDirectory(prefix="td3_e2e_") as tmp:
            work = Path(tmp)
            phases = {
                "collect": run_phase("collect", args, args.steps + 1, listener, work),
                "learn": run_phase("learn", args, min(args.batch_size, args.steps // 3), listener, work),
            }
    finally:
        listener.close()
    result = {
        "benchmark": "end_to_end",
        "date": time.strftime("%Y-%m-%d"),
        "camera": list(args.camera),
        "steps_per_phase": args.steps,
        "batch_size": args.batch_size,
        "phases": phases,
    }
    print(json.dumps(result, indent=2))
    c, learn = phases["collect"], phases["learn"]
    cf, lf = c["fractions"], learn["fractions"]
    print(
        f"end_to_end: collect {c['steps_per_s']:.1f} steps/s (simulation {cf['simulation']:.0%}, transport "
        f"{cf['transport']:.0%}, trainer {cf['trainer']:.0%}); learn {learn['steps_per_s']:.1f} steps/s "
        f"(learning {lf['learning']:.0%}, waiting for the simulator {lf['waiting']:.0%} (its ticks "
        f"{lf['simulation']:.0%}, overlapping the updates), trainer {lf['trainer']:.0%})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
