"""The main job on the embedded default, end to end, in a few minutes on 2 CPU cores.

    td3-demo        (what `make demo` runs)

1. simulator (synchronous) + trainer as separate processes, a short bounded run with the
   trainer's progress bar on the console, until the trainer exits at its step budget;
2. the driver on the checkpoint the trainer wrote, with the simulator free-running, for a
   fixed time while this process watches the car;
3. a short report: steps, episodes, returns, distance driven, checkpoint path.

Same node graph and parameter files as `ros2 launch` (td3_bringup.graph), plus
config/demo.yaml for the short budget. Every process is stopped on exit, whatever happens:
Ctrl-C, SIGTERM and SIGHUP alike (exit status 128 + the signal number).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from carla_msgs.msg import CarlaCollisionEvent, CarlaEgoVehicleControl, CarlaLaneInvasionEvent
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry
from std_msgs.msg import Float32MultiArray

from td3_bringup.graph import driving_graph, repo_config_dir, training_graph
from td3_bringup.observer import BackgroundNode
from td3_bringup.runner import StopSignal, running, start_node, stop_on_signals, stop_processes
from td3_trainer.monitor import labelled_values

EPISODE_TOPIC = "/td3_trainer/episode"


@dataclass
class TrainingWatch:
    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    distances: list[float] = field(default_factory=list)


@dataclass
class DrivingWatch:
    commands: int = 0
    first_command_at: float | None = None
    last_command_at: float | None = None
    out_of_range: int = 0
    distance_m: float = 0.0
    distance_before_incident_m: float | None = None
    collisions: int = 0
    lane_invasions: int = 0
    checkpoint_in_use: str = ""
    _last_xy: tuple[float, float] | None = None

    def on_odometry(self, x: float, y: float) -> None:
        if self._last_xy is not None:
            step = math.hypot(x - self._last_xy[0], y - self._last_xy[1])
            if step < 5.0:  # a respawn is not driving
                self.distance_m += step
        self._last_xy = (x, y)

    def on_incident(self) -> None:
        if self.distance_before_incident_m is None:
            self.distance_before_incident_m = self.distance_m


class Observer(BackgroundNode):
    """A node in this process that records what the trainer and the driver do."""

    def __init__(self) -> None:
        super().__init__("td3_demo_observer")

    def watch_training(self) -> TrainingWatch:
        watch = TrainingWatch()

        def on_episode(msg: Float32MultiArray) -> None:
            values = labelled_values(msg)
            watch.returns.append(float(values.get("return", math.nan)))
            watch.lengths.append(int(values.get("length", 0)))
            watch.distances.append(float(values.get("distance_m", math.nan)))

        self.node.create_subscription(Float32MultiArray, EPISODE_TOPIC, on_episode, 100)
        return watch

    def watch_driving(self, role: str) -> DrivingWatch:
        watch = DrivingWatch()

        def on_command(msg: CarlaEgoVehicleControl) -> None:
            now = time.monotonic()
            watch.commands += 1
            watch.first_command_at = watch.first_command_at or now
            watch.last_command_at = now
            in_range = -1.0 <= msg.steer <= 1.0 and 0.0 <= msg.throttle <= 1.0 and 0.0 <= msg.brake <= 1.0
            watch.out_of_range += 0 if in_range else 1

        def on_collision(_msg: CarlaCollisionEvent) -> None:
            watch.collisions += 1
            watch.on_incident()

        def on_lane_invasion(_msg: CarlaLaneInvasionEvent) -> None:
            watch.lane_invasions += 1

        def on_diagnostics(msg: DiagnosticArray) -> None:
            for status in msg.status:
                for item in status.values:
                    if item.key == "checkpoint":
                        watch.checkpoint_in_use = item.value

        prefix = f"/carla/{role}"
        self.node.create_subscription(CarlaEgoVehicleControl, f"{prefix}/vehicle_control_cmd", on_command, 50)

        def on_odometry(msg: Odometry) -> None:
            watch.on_odometry(msg.pose.pose.position.x, msg.pose.pose.position.y)

        self.node.create_subscription(Odometry, f"{prefix}/odometry", on_odometry, 50)
        self.node.create_subscription(CarlaCollisionEvent, f"{prefix}/collision", on_collision, 10)
        self.node.create_subscription(CarlaLaneInvasionEvent, f"{prefix}/lane_invasion", on_lane_invasion, 10)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
        return watch


def _train(config_dir: Path, demo_file: Path, run_name: str, models_dir: Path, log_dir: Path, timeout_s: float) -> int:
    specs = training_graph(
        config_dir,
        "embedded",
        trainer_overrides={
            "run_name": run_name,
            "models_dir": str(models_dir),
            "log_dir": str(log_dir / "tensorboard"),
        },
        extra_files=(demo_file,),
    )
    simulator, trainer = specs
    with running([simulator], log_dir):
        trainer_proc = start_node(trainer)  # console output: the progress bar
        try:
            trainer_proc.wait(timeout=timeout_s)
        except BaseException:  # timeout or Ctrl-C: stop it, then let it propagate
            stop_processes([trainer_proc])
            raise
        return trainer_proc.returncode


def _drive(config_dir: Path, demo_file: Path, checkpoint: Path, log_dir: Path, seconds: float, watch_ready) -> None:
    overrides = {"checkpoint": str(checkpoint)}
    specs = driving_graph(config_dir, "embedded", driver_overrides=overrides, extra_files=(demo_file,))
    with running(specs, log_dir) as processes:
        watch = watch_ready()
        deadline = time.monotonic() + 60.0
        while watch.first_command_at is None and time.monotonic() < deadline:
            if any(p.poll() is not None for p in processes):
                break
            time.sleep(0.1)
        end = time.monotonic() + seconds
        while time.monotonic() < end and all(p.poll() is None for p in processes):
            time.sleep(0.1)


def _summarise_returns(returns: list[float]) -> str:
    if not returns:
        return "no episode finished"
    recent = returns[-5:]
    mean = sum(recent) / len(recent)
    return f"last {returns[-1]:.1f}, best {max(returns):.1f}, mean of last {len(recent)} {mean:.1f}"


def _format_report(lines: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="td3-demo", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--config-dir", type=Path, default=repo_config_dir())
    parser.add_argument("--demo-params", type=Path, help="params file with the short budget (default config/demo.yaml)")
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--drive-seconds", type=float, default=20.0)
    parser.add_argument("--train-timeout-s", type=float, default=900.0)
    args = parser.parse_args(argv)

    # A private DDS domain on this host, so a demo never hears another graph.
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 100)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    demo_file = args.demo_params or args.config_dir / "demo.yaml"
    run_name = time.strftime("demo-%Y%m%d-%H%M%S")
    log_dir = Path("runs") / run_name
    with stop_on_signals():
        try:
            return _run(args, demo_file, run_name, log_dir)
        except StopSignal as stop:
            print(f"[demo] {signal.Signals(stop.signum).name}: stopped every node", file=sys.stderr)
            return stop.exit_code


def _run(args: argparse.Namespace, demo_file: Path, run_name: str, log_dir: Path) -> int:
    from td3_core.checkpoint import CheckpointError, load_checkpoint_file, resolve_checkpoint, validate_policy

    role = "ego_vehicle"
    observer = Observer()
    try:
        training = observer.watch_training()
        print(f"[demo] 1/2 training: simulator + trainer, run '{run_name}' (node logs in {log_dir}/)", flush=True)
        started = time.monotonic()
        code = _train(args.config_dir, demo_file, run_name, args.models_dir, log_dir, args.train_timeout_s)
        train_s = time.monotonic() - started
        if code != 0:
            print(f"[demo] the trainer exited with code {code}; see the output above", file=sys.stderr)
            return code or 1
        try:
            checkpoint = resolve_checkpoint(args.models_dir / run_name)
            ckpt = load_checkpoint_file(checkpoint)
            validate_policy(ckpt, checkpoint)
        except CheckpointError as error:
            print(f"[demo] no usable checkpoint: {error}", file=sys.stderr)
            return 1
        extra = ckpt.get("extra", {}) if isinstance(ckpt.get("extra"), dict) else {}

        print(f"[demo] 2/2 driving: simulator (free-running) + driver on {checkpoint}", flush=True)
        holder: dict[str, object] = {}

        def ready():
            holder["watch"] = observer.watch_driving(role)
            return holder["watch"]

        _drive(args.config_dir, demo_file, checkpoint, log_dir, args.drive_seconds, ready)
        driving: DrivingWatch = holder["watch"]  # type: ignore[assignment]
    finally:
        observer.close()

    returns = [r for r in training.returns if math.isfinite(r)]
    drive_span = (driving.last_command_at or 0.0) - (driving.first_command_at or 0.0)
    rate = (driving.commands - 1) / drive_span if drive_span > 0 else 0.0
    loaded = driving.checkpoint_in_use and Path(driving.checkpoint_in_use).resolve() == checkpoint.resolve()
    clean = driving.distance_before_incident_m if driving.distance_before_incident_m is not None else driving.distance_m
    report = [
        ("training steps", f"{extra.get('env_steps', '?')} environment steps, {ckpt.get('total_it')} gradient updates"),
        ("training time", f"{train_s:.0f} s"),
        ("episodes", f"{extra.get('episodes', len(training.returns))}"),
        ("episode return", _summarise_returns(returns)),
        ("checkpoint", f"{checkpoint}"),
        ("driver", f"{'loaded it' if loaded else 'did not report it'}; {driving.commands} commands at {rate:.1f} Hz"),
        ("commands out of range", f"{driving.out_of_range}"),
        ("distance driven", f"{driving.distance_m:.1f} m in {args.drive_seconds:.0f} s"),
        ("before the first collision", f"{clean:.1f} m"),
        ("collisions / lane invasions", f"{driving.collisions} / {driving.lane_invasions}"),
    ]
    print("\n[demo] report\n" + _format_report(report), flush=True)
    return 0 if loaded and driving.commands > 0 and driving.out_of_range == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
