"""Replay memory per transition: our FrameReplayBuffer against Stable-Baselines3's ReplayBuffer.

1. Bytes per transition of the allocated storage (sum of the arrays' nbytes / capacity) for
   Box(0, 255, (4, 84, 84), uint8) observations and 2-d actions: ours (vector_dim 0 and 23), SB3
   default (obs and next_obs stored), SB3 optimize_memory_usage=True (next_obs = the following
   obs entry).
2. Peak resident memory while filling N transitions (default 100k, episodes of 1000 steps),
   each buffer in its own process so the peaks are separate: VmHWM from /proc/self/status, and
   the growth over the process's resident size before the buffer was created.

    python -m bench.bench_replay_memory [--quick] [--transitions N] [--skip-sb3-fill]

Prints one JSON object, then a one-line summary. Needs requirements-bench.txt (SB3).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

FRAME = (84, 84)
STACK = 4
ACTION_DIM = 2
EPISODE = 1000
KINDS = ("ours_vector0", "ours_vector23", "sb3_default", "sb3_optimize_memory")


def proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def mem_available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def sb3_buffer(capacity: int, optimize: bool):
    import gymnasium as gym
    from stable_baselines3.common.buffers import ReplayBuffer

    return ReplayBuffer(
        capacity,
        gym.spaces.Box(0, 255, (STACK, *FRAME), np.uint8),
        gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32),
        device="cpu",
        optimize_memory_usage=optimize,
        handle_timeout_termination=not optimize,  # SB3 refuses both together
    )


def make_buffer(kind: str, capacity: int):
    if kind.startswith("ours"):
        from td3_trainer.replay_buffer import FrameReplayBuffer

        return FrameReplayBuffer(capacity, FRAME, STACK, 23 if kind == "ours_vector23" else 0, ACTION_DIM)
    return sb3_buffer(capacity, optimize=kind == "sb3_optimize_memory")


def allocated_bytes(kind: str, buffer) -> int:
    if kind.startswith("ours"):
        return buffer.nbytes()
    arrays = (
        buffer.observations,
        getattr(buffer, "next_observations", None),
        buffer.actions,
        buffer.rewards,
        buffer.dones,
    )
    return sum(a.nbytes for a in arrays if a is not None) + getattr(buffer, "timeouts", np.zeros(0)).nbytes


def fill(kind: str, buffer, transitions: int) -> None:
    """`transitions` steps from a small pool of random frames (the pool's memory is negligible)."""
    rng = np.random.default_rng(0)
    pool = rng.integers(0, 256, (256, *FRAME), dtype=np.uint8)
    action = np.zeros(ACTION_DIM, np.float32)
    if kind.startswith("ours"):
        vector = np.zeros(buffer.vector_dim, np.float32)
        for t in range(transitions):
            if t % EPISODE == 0:
                buffer.start_episode(pool[t % 256], vector)
            last = (t + 1) % EPISODE == 0
            buffer.add(action, 0.0, pool[(t + 1) % 256], vector, False, last)
        return
    index = np.arange(STACK)
    for t in range(transitions):
        obs = pool[(t + index) % 256][None]
        next_obs = pool[(t + 1 + index) % 256][None]
        done = np.array([(t + 1) % EPISODE == 0])
        buffer.add(obs, next_obs, action[None], np.zeros(1, np.float32), done, [{}])


def child(kind: str, transitions: int) -> dict:
    import torch  # noqa: F401  (imports count in the baseline, not in the growth)

    baseline = proc_status_kib("VmRSS")
    tic = time.perf_counter()
    buffer = make_buffer(kind, transitions)
    fill(kind, buffer, transitions)
    peak = proc_status_kib("VmHWM")
    return {
        "kind": kind,
        "transitions": transitions,
        "fill_s": round(time.perf_counter() - tic, 2),
        "baseline_rss_mib": round(baseline / 1024, 1),
        "peak_rss_mib": round(peak / 1024, 1),
        "growth_mib": round((peak - baseline) / 1024, 1),
        "growth_bytes_per_transition": round((peak - baseline) * 1024 / transitions, 1),
    }


def run_child(kind: str, transitions: int) -> dict:
    command = [sys.executable, "-m", "bench.bench_replay_memory", "--child", kind, "--transitions", str(transitions)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"kind": kind, "error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fill 20k transitions instead of 100k")
    parser.add_argument("--transitions", type=int, default=0)
    parser.add_argument("--capacity", type=int, default=100_000, help="capacity for the bytes-per-transition part")
    parser.add_argument("--skip-sb3-fill", action="store_true", help="no fill of SB3's buffers (needs ~6 GB)")
    parser.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    transitions = args.transitions or (20_000 if args.quick else 100_000)
    if args.child:
        print(json.dumps(child(args.child, transitions)))
        return

    import stable_baselines3

    per_transition = {}
    for kind in KINDS:
        buffer = make_buffer(kind, args.capacity)
        per_transition[kind] = round(allocated_bytes(kind, buffer) / args.capacity, 1)
        del buffer
    fills = []
    for kind in KINDS:
        need = per_transition[kind] * transitions
        if kind.startswith("sb3") and (args.skip_sb3_fill or mem_available_bytes() < 1.5 * need):
            fills.append({"kind": kind, "skipped": f"needs {need / 2**30:.1f} GiB"})
            continue
        fills.append(run_child(kind, transitions))
    result = {
        "benchmark": "replay buffer memory",
        "obs": [STACK, *FRAME],
        "capacity": args.capacity,
        "bytes_per_transition": per_transition,
        "frame_bytes": FRAME[0] * FRAME[1],
        "fill": fills,
        "stable_baselines3": stable_baselines3.__version__,
    }
    print(json.dumps(result, indent=2))
    ours, default, optimized = (per_transition[k] for k in ("ours_vector23", "sb3_default", "sb3_optimize_memory"))
    grown = {f["kind"]: f.get("growth_mib") for f in fills}
    print(
        f"bytes/transition: ours {ours:.0f} (vector 23), SB3 {default:.0f} (default) / {optimized:.0f} "
        f"(optimize_memory_usage) -> {default / ours:.1f}x / {optimized / ours:.1f}x less; "
        f"RSS growth filling {transitions}: " + ", ".join(f"{k} {v} MiB" for k, v in grown.items())
    )


if __name__ == "__main__":
    main()
