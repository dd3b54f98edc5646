"""Start a node graph without launch_ros: one `python -m <module> --ros-args ...` per NodeSpec.

    td3-run train [--simulator embedded|carla] [--preprocess] [--params-file extra.yaml] [-p node.param:=value ...]
    td3-run drive --checkpoint latest [...]
    td3-run sim [--simulator-processes] [--preprocess] -p "carla_simulator.role_name:=[car_a, car_b]"
    td3-run drive --checkpoint models/shipped --record runs/drive.mcap --view

--record writes every topic to an MCAP file (ROS 2 bag format, td3_bringup.recording),
--view serves them to Foxglove over a WebSocket (td3_bringup.live_view); both from this process.

Same parameter files, parameters and remappings as the launch files (both come from
td3_bringup.graph). Ctrl-C, SIGTERM (systemd, docker stop) and SIGHUP (a closed terminal) stop
every process alike (SIGINT to each, then SIGKILL after a grace period) and the runner returns
128 + the signal's number; when one node exits, the others are stopped and its exit code is
returned.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from td3_bringup.graph import (
    SIMULATORS,
    NodeSpec,
    ParamValue,
    driving_graph,
    repo_config_dir,
    simulation_graph,
    training_graph,
)
from td3_bringup.watching import add_watch_arguments, watching

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopSignal(KeyboardInterrupt):
    """A stop request by signal; a KeyboardInterrupt, so every Ctrl-C path handles it too."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # what a shell reports for a process ended by that signal


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP raise StopSignal in the main thread, once: a second signal
    while the graph is being stopped does not cut the stopping short (which would leave nodes)."""
    raised = False

    def handler(signum: int, _frame) -> None:
        nonlocal raised
        if not raised:
            raised = True
            raise StopSignal(signum)

    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def node_command(spec: NodeSpec) -> list[str]:
    return [sys.executable, "-m", spec.module, *spec.ros_args()]


def start_node(spec: NodeSpec, log_dir: Path | None = None, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Each node in its own process group, so a Ctrl-C of the runner reaches it exactly once."""
    output = None
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        output = open(log_dir / f"{spec.name}.log", "wb")  # noqa: SIM115 - owned by the child process
    try:
        return subprocess.Popen(
            node_command(spec),
            stdout=output,
            stderr=subprocess.STDOUT if output else None,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            start_new_session=True,
        )
    finally:
        if output is not None:
            output.close()


def stop_processes(processes: Sequence[subprocess.Popen], grace_s: float = 15.0) -> None:
    for proc in processes:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
    deadline = time.monotonic() + grace_s
    for proc in processes:
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextlib.contextmanager
def running(specs: Sequence[NodeSpec], log_dir: Path | None = None) -> Iterator[list[subprocess.Popen]]:
    """Start every node; always stop them all on exit, whatever happened."""
    processes: list[subprocess.Popen] = []
    try:
        for spec in specs:
            processes.append(start_node(spec, log_dir))
        yield processes
    finally:
        while True:
            try:
                stop_processes(processes)
                break
            except KeyboardInterrupt:  # a signal while stopping: finish stopping, leave nothing behind
                continue


def wait_any(processes: Sequence[subprocess.Popen], names: Sequence[str]) -> tuple[str, int]:
    """Block until one process exits; returns its name and exit code."""
    while True:
        for name, proc in zip(names, processes, strict=True):
            if proc.poll() is not None:
                return name, proc.returncode
        time.sleep(0.2)


def parse_overrides(items: Sequence[str]) -> dict[str, dict[str, ParamValue]]:
    """`node.param:=value` → {node: {param: value}}, values typed like ros2 param set does."""
    import yaml

    overrides: dict[str, dict[str, ParamValue]] = {}
    for item in items:
        key, sep, raw = item.partition(":=")
        node, dot, param = key.partition(".")
        if not sep or not dot or not node or not param:
            raise SystemExit(f"override '{item}' is not of the form node.param:=value")
        overrides.setdefault(node, {})[param] = yaml.safe_load(raw) if raw else ""
    return overrides


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="td3-run", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("graph", choices=("train", "drive", "sim"))
    parser.add_argument(
        "--simulator-processes",
        action="store_true",
        help="sim: one simulator process per role_name of the simulator's list (else one world with all)",
    )
    parser.add_argument("--simulator", choices=SIMULATORS, default="embedded")
    parser.add_argument("--config-dir", type=Path, default=repo_config_dir())
    parser.add_argument("--params-file", type=Path, action="append", default=[], help="extra params file(s)")
    parser.add_argument("--checkpoint", help="drive: .pth path, run directory or 'latest'")
    parser.add_argument("--resume", help="train: checkpoint to resume from (path, run directory or 'latest')")
    parser.add_argument("-p", "--param", action="append", default=[], help="node.param:=value")
    parser.add_argument(
        "--preprocess",
        action="store_true",
        help="+ the preprocessing node (td3_preprocess); the trainer/driver reads its 84x84 frames",
    )
    parser.add_argument("--log-dir", type=Path, help="write each node's output to <log-dir>/<node>.log")
    add_watch_arguments(parser)
    return parser


def specs_from_args(args: argparse.Namespace) -> list[NodeSpec]:
    overrides = parse_overrides(args.param)
    extra = tuple(args.params_file)
    sim = overrides.get("carla_simulator")
    if args.graph == "sim":
        return simulation_graph(args.config_dir, True, sim, extra, args.simulator_processes, args.preprocess)
    if args.graph == "train":
        trainer = dict(overrides.get("td3_trainer", {}))
        if args.resume:
            trainer["resume"] = args.resume
        return training_graph(args.config_dir, args.simulator, trainer, sim, extra, args.preprocess)
    driver = dict(overrides.get("td3_driver", {}))
    if args.checkpoint:
        driver["checkpoint"] = args.checkpoint
    return driving_graph(args.config_dir, args.simulator, driver, sim, extra, args.preprocess)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    specs = specs_from_args(args)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    try:
        with stop_on_signals(), running(specs, args.log_dir) as processes, watching(args):
            name, code = wait_any(processes, [s.name for s in specs])
            print(f"[td3-run] {name} exited with code {code}; stopping the others", file=sys.stderr)
            return code
    except StopSignal as stop:
        print(f"[td3-run] {signal.Signals(stop.signum).name}: stopped every node", file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
