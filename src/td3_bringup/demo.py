"""The main job on the embedded default, end to end, in a few minutes on 2 CPU cores.

    td3-demo        (what `make demo` runs)

1. simulator (synchronous) + trainer as separate processes, a short bounded run with the
   trainer's progress bar on the console, until the trainer exits at its step budget (the
   pipeline at work: a 1500-step policy does not drive yet);
2. the driver on the shipped policy (models/shipped/, trained by this trainer, see
   models/README.md) with the simulator ticking once per driver command (--free-running: at
   the camera rate), until the car has driven one full lap of the route (or
   --drive-timeout-s), while this process watches and records it;
3. the report: training steps, episodes, returns, the lap (time, distance, collisions, lane
   invasions, safety-gate brakes), and in the run directory runs/<run>/ the recordings
   (train.mcap, drive.mcap: ROS 2 bag format) and the pictures made from drive.mcap
   (trajectory.png, timeline.png, camera.gif; td3_bringup.drive_report).

--view serves every topic to Foxglove while it runs (td3_bringup.live_view).
Same node graph and parameter files as `ros2 launch` (td3_bringup.graph), plus
config/demo.yaml for the short budget. Every process is stopped on exit, whatever happens:
Ctrl-C, SIGTERM and SIGHUP alike (exit status 128 + the signal number).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from carla_msgs.msg import CarlaCollisionEvent, CarlaEgoVehicleControl, CarlaLaneInvasionEvent
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry
from nav_msgs.msg import Path as PathMsg
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from td3_drive.msg import Episode

from td3_bringup.drive_report import write_report
from td3_bringup.graph import driving_graph, repo_config_dir, training_graph
from td3_bringup.observer import BackgroundNode
from td3_bringup.recording import Recorder
from td3_bringup.runner import StopSignal, running, start_node, stop_on_signals, stop_processes
from td3_bringup.topic_tap import TapConfig
from td3_bringup.watching import add_view_arguments, watching
from td3_core.route import Route
from td3_trainer.monitor import EVENT_LOG_QOS

EPISODE_TOPIC = "/td3_trainer/episode"
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
SHIPPED_POLICY = Path(__file__).resolve().parents[2] / "models" / "shipped" / "td3_policy.pth"
LAP_TOLERANCE_M = 3.0  # a lap is complete when less than this remains of the (one-lap) route
TRAIN_IMAGE_HZ = 2.0  # camera frames per second in train.mcap (the trainer's statistics are the point there)
DRIVE_IMAGE_HZ = 10.0  # in drive.mcap: enough for the animation
STARTUP_TIMEOUT_S = 90.0  # for the driver's first command: imports and discovery on a busy machine
AFTER_LAP_S = 0.5  # the last messages of the lap reach the recording
TRAIN_RECORDING = "train.mcap"
DRIVE_RECORDING = "drive.mcap"


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
    collisions: int = 0  # until the lap is complete
    lane_invasions: int = 0  # until the lap is complete
    collisions_after_lap: int = 0  # the route ends with the lap: what the car does there is not the lap
    gate_brakes: int = 0  # brake commands of the driver's safety gate since the first command
    gate_brake_baseline: int | None = None
    checkpoint_in_use: str = ""
    route: Route | None = None
    progress_m: float = 0.0  # along the route, from where the car started
    lap_completed_at: float | None = None  # monotonic time
    moving_since: float | None = None
    _last_xy: tuple[float, float] | None = None

    def on_odometry(self, x: float, y: float) -> None:
        if self._last_xy is not None:
            step = math.hypot(x - self._last_xy[0], y - self._last_xy[1])
            if step < 5.0:  # a respawn is not driving
                self.distance_m += step
                if step > 0.0 and self.moving_since is None:
                    self.moving_since = time.monotonic()
        self._last_xy = (x, y)
        if self.route is not None:
            projection = self.route.project(x, y)
            if projection.distance_along < self.progress_m + 20.0:  # never a jump across the track
                self.progress_m = max(self.progress_m, projection.distance_along)
            if (
                self.lap_completed_at is None
                and projection.remaining < LAP_TOLERANCE_M
                and self.progress_m > 0.5 * self.route.length
            ):
                self.lap_completed_at = time.monotonic()

    @property
    def lap_completed(self) -> bool:
        return self.lap_completed_at is not None

    @property
    def lap_time_s(self) -> float | None:
        if self.lap_completed_at is None or self.moving_since is None:
            return None
        return self.lap_completed_at - self.moving_since

    def on_incident(self) -> None:
        if self.distance_before_incident_m is None:
            self.distance_before_incident_m = self.distance_m


class Observer(BackgroundNode):
    """A node in this process that records what the trainer and the driver do."""

    def __init__(self) -> None:
        super().__init__("td3_demo_observer")

    def watch_training(self) -> TrainingWatch:
        watch = TrainingWatch()

        def on_episode(msg: Episode) -> None:
            watch.returns.append(msg.episode_return)
            watch.lengths.append(msg.length)
            watch.distances.append(msg.distance_m)

        self.node.create_subscription(Episode, EPISODE_TOPIC, on_episode, EVENT_LOG_QOS)
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
            if watch.lap_completed:
                watch.collisions_after_lap += 1
                return
            watch.collisions += 1
            watch.on_incident()

        def on_lane_invasion(_msg: CarlaLaneInvasionEvent) -> None:
            if not watch.lap_completed:
                watch.lane_invasions += 1

        def on_diagnostics(msg: DiagnosticArray) -> None:
            for status in msg.status:
                for item in status.values:
                    if item.key == "checkpoint":
                        watch.checkpoint_in_use = item.value
                    if item.key == "safety_brake_commands" and watch.first_command_at is not None:
                        count = int(float(item.value))
                        watch.gate_brake_baseline = (
                            count if watch.gate_brake_baseline is None else watch.gate_brake_baseline
                        )
                        watch.gate_brakes = count - watch.gate_brake_baseline

        def on_route(msg: PathMsg) -> None:
            if watch.route is None and len(msg.poses) >= 2:
                points = [(p.pose.position.x, p.pose.position.y) for p in msg.poses]
                watch.route = Route(np.array(points))

        prefix = f"/carla/{role}"
        self.node.create_subscription(CarlaEgoVehicleControl, f"{prefix}/vehicle_control_cmd", on_command, 50)

        def on_odometry(msg: Odometry) -> None:
            watch.on_odometry(msg.pose.pose.position.x, msg.pose.pose.position.y)

        self.node.create_subscription(Odometry, f"{prefix}/odometry", on_odometry, 50)
        self.node.create_subscription(CarlaCollisionEvent, f"{prefix}/collision", on_collision, 10)
        self.node.create_subscription(CarlaLaneInvasionEvent, f"{prefix}/lane_invasion", on_lane_invasion, 10)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
        self.node.create_subscription(PathMsg, f"{prefix}/waypoints", on_route, LATCHED)
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
    with running([simulator], log_dir), Recorder(log_dir / TRAIN_RECORDING, TapConfig(max_image_hz=TRAIN_IMAGE_HZ)):
        trainer_proc = start_node(trainer)  # console output: the progress bar
        try:
            trainer_proc.wait(timeout=timeout_s)
        except BaseException:  # timeout or Ctrl-C: stop it, then let it propagate
            stop_processes([trainer_proc])
            raise
        return trainer_proc.returncode


def drive_lap(
    observer: Observer,
    config_dir: Path,
    extra_files: tuple[Path, ...],
    checkpoint: Path,
    log_dir: Path,
    timeout_s: float,
    simulator_overrides: dict | None = None,
    recording: Path | None = None,
    role: str = "ego_vehicle",
    synchronous: bool = True,
) -> DrivingWatch:
    """Simulator + driver on `checkpoint` until the car has driven one lap of the route, or
    `timeout_s` after its first command, or a node exits; what was watched.

    synchronous: the simulator ticks once per driver command and the driver sends one command per
    frame (one_command_per_frame), so a busy machine slows the drive down instead of changing it;
    False: free-running at the camera rate, as with a real-time simulator."""
    watch = observer.watch_driving(role)
    specs = driving_graph(
        config_dir,
        "embedded",
        # Synchronous: the world waits for each command, so the driver sends each frame's action once
        # and waits for the next frame (the training loop's lockstep), whatever the machine's load.
        driver_overrides={"checkpoint": str(checkpoint), "one_command_per_frame": synchronous},
        simulator_overrides={"synchronous_mode": synchronous, **(simulator_overrides or {})},
        extra_files=extra_files,
    )
    with contextlib.ExitStack() as stack:
        processes = stack.enter_context(running(specs, log_dir))
        if recording is not None:
            stack.enter_context(Recorder(recording, TapConfig(max_image_hz=DRIVE_IMAGE_HZ)))
        alive = lambda: all(p.poll() is None for p in processes)  # noqa: E731
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while watch.first_command_at is None and time.monotonic() < deadline and alive():
            time.sleep(0.1)
        end = time.monotonic() + timeout_s
        while not watch.lap_completed and time.monotonic() < end and alive():
            time.sleep(0.1)
        time.sleep(AFTER_LAP_S if alive() else 0.0)
    return watch


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
    parser.add_argument("--policy", type=Path, default=SHIPPED_POLICY, help="what the driver drives with")
    parser.add_argument("--drive-timeout-s", type=float, default=150.0, help="give up on the lap after this long")
    parser.add_argument(
        "--free-running",
        action="store_true",
        help="drive with the simulator free-running (default: a tick per command)",
    )
    parser.add_argument("--train-timeout-s", type=float, default=900.0)
    add_view_arguments(parser)
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

    try:
        validate_policy(load_checkpoint_file(args.policy), args.policy)
    except CheckpointError as error:
        print(f"[demo] no policy to drive with: {error} (make it with `make shipped-policy`)", file=sys.stderr)
        return 1
    observer = Observer()
    try:
        with watching(args):
            training = observer.watch_training()
            print(f"[demo] 1/3 training: simulator + trainer, run '{run_name}' (node logs in {log_dir}/)", flush=True)
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
                print(f"[demo] the training run left no usable checkpoint: {error}", file=sys.stderr)
                return 1
            extra = ckpt.get("extra", {}) if isinstance(ckpt.get("extra"), dict) else {}

            mode = "free-running" if args.free_running else "a tick per driver command"
            print(f"[demo] 2/3 driving one lap: simulator ({mode}) + driver on {args.policy}", flush=True)
            driving = drive_lap(
                observer,
                args.config_dir,
                (demo_file,),
                args.policy,
                log_dir,
                args.drive_timeout_s,
                recording=log_dir / DRIVE_RECORDING,
                synchronous=not args.free_running,
            )
    finally:
        observer.close()

    print("[demo] 3/3 report: pictures of the drive from its recording", flush=True)
    title = f"{args.policy.name} on the embedded simulator's loop, {time.strftime('%Y-%m-%d')}"
    pictures = write_report(log_dir / DRIVE_RECORDING, log_dir, title)
    returns = [r for r in training.returns if math.isfinite(r)]
    drive_span = (driving.last_command_at or 0.0) - (driving.first_command_at or 0.0)
    rate = (driving.commands - 1) / drive_span if drive_span > 0 else 0.0
    loaded = bool(driving.checkpoint_in_use) and Path(driving.checkpoint_in_use).resolve() == args.policy.resolve()
    clean = driving.distance_before_incident_m if driving.distance_before_incident_m is not None else driving.distance_m
    route_m = driving.route.length if driving.route is not None else math.nan
    lap = (
        f"completed in {driving.lap_time_s:.1f} s"
        if driving.lap_completed
        else f"not completed ({driving.progress_m:.0f} m)"
    )
    report = [
        ("training steps", f"{extra.get('env_steps', '?')} environment steps, {ckpt.get('total_it')} gradient updates"),
        ("training time", f"{train_s:.0f} s"),
        ("episodes", f"{extra.get('episodes', len(training.returns))}"),
        ("episode return", _summarise_returns(returns)),
        ("checkpoint", f"{checkpoint}"),
        ("policy driven", f"{args.policy}"),
        ("driver", f"{'loaded it' if loaded else 'did not report it'}; {driving.commands} commands at {rate:.1f} Hz"),
        ("commands out of range", f"{driving.out_of_range}"),
        ("lap", f"{lap}; route {route_m:.0f} m"),
        ("distance driven", f"{driving.distance_m:.1f} m"),
        ("before the first collision", f"{clean:.1f} m"),
        ("collisions / lane invasions", f"{driving.collisions} / {driving.lane_invasions} in the lap"),
        ("safety-gate brakes", f"{driving.gate_brakes} commands"),
        ("recordings", f"{log_dir / TRAIN_RECORDING}, {log_dir / DRIVE_RECORDING}"),
        *((name, str(path)) for name, path in pictures.items()),
    ]
    print("\n[demo] report\n" + _format_report(report), flush=True)
    ok = loaded and driving.commands > 0 and driving.out_of_range == 0 and driving.lap_completed
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
