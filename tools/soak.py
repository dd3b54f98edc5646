"""Soak: simulator + trainer (then the driver) for a long time; does memory stay flat?

Runs the training graph with a small replay buffer (so it fills early and then only wraps),
short episodes and frequent checkpoints, and samples the resident memory (VmRSS) of every
process every few seconds. After the warm-up (buffer full, first checkpoints written) memory
must stay flat: message queues, logs, monitoring, checkpoints and the buffer must not grow with
the number of episodes. Then the same for the driver with the free-running simulator.

    python -m tools.soak [--minutes M] [--drive-minutes M]

Prints one JSON object (episodes, steps, checkpoints, memory at the end of the warm-up and at
the end, growth per minute, per process) and a one-line summary; exits non-zero when a
process died or grew by more than --max-growth-mb after the warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from td3_bringup.graph import driving_graph, repo_config_dir, training_graph
from td3_bringup.runner import running
from td3_core.checkpoint import list_checkpoints, resolve_checkpoint


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children-free self, MB (0 if gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def watch(processes, names, seconds: float, warmup_s: float, period_s: float) -> dict:
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if any(p.poll() is not None for p in processes):
            break
        now = time.monotonic() - start
        for name, proc in zip(names, processes, strict=True):
            samples[name].append((now, rss_mb(proc.pid)))
        time.sleep(period_s)
    report = {}
    for name, proc in zip(names, processes, strict=True):
        series = samples[name]
        after = [(t, m) for t, m in series if t >= warmup_s] or series[-1:]
        first, last = after[0], after[-1]
        minutes = max((last[0] - first[0]) / 60.0, 1e-9)
        report[name] = {
            "alive": proc.poll() is None,
            "rss_mb_after_warmup": round(first[1], 1),
            "rss_mb_end": round(last[1], 1),
            "rss_mb_max": round(max(m for _, m in series), 1) if series else 0.0,
            "growth_mb": round(last[1] - first[1], 1),
            "growth_mb_per_min": round((last[1] - first[1]) / minutes, 2),
            "samples": len(series),
        }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="training time")
    parser.add_argument("--drive-minutes", type=float, default=5.0, help="driving time (0 = skip)")
    parser.add_argument("--warmup-minutes", type=float, default=0.0, help="default: a quarter of each phase")
    parser.add_argument("--max-growth-mb", type=float, default=50.0)
    parser.add_argument("--period-s", type=float, default=2.0)
    args = parser.parse_args(argv)
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(101, 200)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    config = repo_config_dir()
    result: dict = {"date": time.strftime("%Y-%m-%d")}
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="td3_soak_") as tmp:
        work = Path(tmp)
        trainer = {
            "run_name": "soak",
            "models_dir": str(work / "models"),
            "log_dir": str(work / "runs"),
            "buffer_size": 2000,
            "learning_starts": 300,
            "batch_size": 16,
            "max_episode_steps": 150,
            "checkpoint_every": 500,
            "keep_last": 2,
            "progress": False,
        }
        simulator = {"image_width": 84, "image_height": 84}
        specs = training_graph(config, "embedded", trainer, simulator)
        seconds = args.minutes * 60.0
        warmup = args.warmup_minutes * 60.0 or seconds / 4.0
        with running(specs, work / "logs") as processes:
            result["train"] = watch(processes, [s.name for s in specs], seconds, warmup, args.period_s)
        checkpoints = list_checkpoints(work / "models" / "soak")
        result["train"]["checkpoints_kept"] = len(checkpoints)
        log = (work / "logs" / "td3_trainer.log").read_text(errors="replace")
        result["train"]["episodes_logged"] = log.count(": episode ")
        result["train"]["tracebacks"] = log.count("Traceback")
        if args.drive_minutes > 0 and checkpoints:
            driver = {"checkpoint": str(resolve_checkpoint(work / "models" / "soak"))}
            specs = driving_graph(config, "embedded", driver, simulator)
            seconds = args.drive_minutes * 60.0
            with running(specs, work / "logs") as processes:
                result["drive"] = watch(
                    processes,
                    [s.name for s in specs],
                    seconds,
                    args.warmup_minutes * 60.0 or seconds / 4.0,
                    args.period_s,
                )
    for phase in ("train", "drive"):
        for name, stats in result.get(phase, {}).items():
            if not isinstance(stats, dict):
                continue
            if not stats["alive"]:
                failures.append(f"{phase}: {name} died")
            if stats["growth_mb"] > args.max_growth_mb:
                failures.append(f"{phase}: {name} grew by {stats['growth_mb']} MB after the warm-up")
    if result["train"]["tracebacks"]:
        failures.append("a traceback in the trainer's log")
    result["failures"] = failures
    print(json.dumps(result, indent=2))
    growth = ", ".join(
        f"{phase}/{name} {stats['growth_mb']:+.1f} MB"
        for phase in ("train", "drive")
        for name, stats in result.get(phase, {}).items()
        if isinstance(stats, dict)
    )
    print(
        f"soak: {args.minutes:g} min training ({result['train']['episodes_logged']} episodes), "
        f"{args.drive_minutes:g} min driving; memory after warm-up: {growth}; {len(failures)} failures"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
