"""The driver against a simulator that is slow but alive: it must drive, not brake on staleness.

Starts the embedded simulator free-running at `--sim-rate-hz` ticks per second (its dt stays
0.05 s, so 6 ticks/s is 0.3x real time, as CARLA often runs in synchronous mode), optionally
`--hog N` busy processes beside the graph (CPU load), and the driver on a small untrained
policy. Over `--seconds` it counts the commands (from their DDS source timestamps: the rate the
driver published at), the safety brakes among them (exactly steer 0, throttle 0, brake 1: an
untrained policy never gives that) and the driver's stale events (/diagnostics).

    python -m tools.slow_sim [--sim-rate-hz 6] [--hog 0] [--seconds 10]

Prints one JSON object and a one-line summary; exits non-zero when the driver braked for
staleness while every frame arrived, or its command rate fell below half the configured one.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RATE_HZ = 20.0
STARTUP_S = 90.0


def _hogs(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim-rate-hz", type=float, default=6.0, help="simulator ticks per second (dt 0.05 s)")
    parser.add_argument("--hog", type=int, default=0, help="busy processes beside the graph")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--work-dir", type=Path)
    args = parser.parse_args(argv)
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(101, 200)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    from carla_msgs.msg import CarlaEgoVehicleControl
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image

    from td3_bringup.graph import driver_node, repo_config_dir, simulator_node
    from td3_bringup.observer import BackgroundNode
    from td3_bringup.runner import start_node, stop_processes
    from tools.fuzz_driver import ROLE, is_safety_brake, largest_gap_s, write_checkpoint

    commands: list[tuple[int, bool]] = []  # (source timestamp ns, safety brake)
    frames: list[int] = []
    diagnostics: list[dict[str, str]] = []
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="td3_slow_sim_") as tmp:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        checkpoint = write_checkpoint(work / "run" / "td3_slow_step_0.pth")
        sim_overrides = {"image_width": 84, "image_height": 84, "publish_rate_hz": args.sim_rate_hz}
        sim = start_node(simulator_node(repo_config_dir(), sync=False, overrides=sim_overrides), work)
        params = {"checkpoint": str(checkpoint), "device": "cpu", "rate_hz": RATE_HZ, "diagnostics_period_s": 0.5}
        driver = start_node(driver_node(repo_config_dir(), params), work)
        hogs: list[subprocess.Popen] = []
        watcher = BackgroundNode("slow_sim_watch")
        try:
            node = watcher.node
            prefix = f"/carla/{ROLE}"

            def on_command(msg, info) -> None:
                commands.append((int(info["source_timestamp"]), is_safety_brake(msg)))

            def on_diagnostics(msg) -> None:
                for status in msg.status:
                    if status.name.startswith("td3_driver"):
                        diagnostics.append({kv.key: kv.value for kv in status.values})

            node.create_subscription(CarlaEgoVehicleControl, f"{prefix}/vehicle_control_cmd", on_command, 1000)
            node.create_subscription(Image, f"{prefix}/rgb_front/image", lambda _m: frames.append(1), 10)
            node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
            deadline = time.monotonic() + STARTUP_S
            while time.monotonic() < deadline and not any(not brake for _, brake in commands):
                if driver.poll() is not None or sim.poll() is not None:
                    break
                time.sleep(0.1)
            if not any(not brake for _, brake in commands):
                failures.append(f"the driver never drove (driver exit {driver.poll()}, simulator {sim.poll()})")
            hogs = _hogs(args.hog)
            time.sleep(1.0)  # the load settles
            start_ns, start_diag, start_frames = time.time_ns(), len(diagnostics), len(frames)
            time.sleep(args.seconds)
            end_ns = time.time_ns()
            window = [(ns, brake) for ns, brake in commands if start_ns <= ns <= end_ns]
            seconds = (end_ns - start_ns) / 1e9
            first = diagnostics[start_diag] if len(diagnostics) > start_diag else {}
            last = diagnostics[-1] if diagnostics else {}
            stale_events = int(last.get("stale_events", 0)) - int(first.get("stale_events", 0))
            result = {
                "sim_rate_hz": args.sim_rate_hz,
                "real_time_factor": round(args.sim_rate_hz * 0.05, 2),
                "hogs": args.hog,
                "seconds": round(seconds, 1),
                "frames": len(frames) - start_frames,
                "commands": len(window),
                "command_rate_hz": round(len(window) / seconds, 1),
                "safety_brakes": sum(brake for _, brake in window),
                "stale_events": stale_events,
                "largest_command_gap_s": round(largest_gap_s([ns for ns, _ in window]), 3),
                "staleness_clock": last.get("staleness_clock", "?"),
            }
        finally:
            for hog in hogs:
                hog.kill()
                hog.wait()
            watcher.close()
            stop_processes([driver, sim])  # SIGINT, then SIGKILL after the grace period
            codes = {"driver": driver.returncode, "simulator": sim.returncode}
    if result["safety_brakes"] or result["stale_events"]:
        failures.append(f"{result['safety_brakes']} safety brakes, {result['stale_events']} stale events")
    if result["command_rate_hz"] < 0.5 * RATE_HZ:
        failures.append(f"command rate {result['command_rate_hz']} Hz, configured {RATE_HZ:g}")
    if codes["driver"] != 0:
        failures.append(f"driver exit code {codes['driver']} on Ctrl-C")
    result["failures"] = failures
    print(json.dumps(result, indent=2))
    print(
        f"slow_sim: simulator {result['real_time_factor']}x real time, {args.hog} hogs: {result['frames']} frames, "
        f"{result['commands']} commands ({result['command_rate_hz']} Hz), {result['safety_brakes']} safety brakes, "
        f"{result['stale_events']} stale events, largest gap {result['largest_command_gap_s']} s"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
