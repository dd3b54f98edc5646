"""Can the policy's input show an obstacle in its path? A supervised probe, no RL.

Frames come from the shipped environment and preprocessing (bench.heldout_eval.heldout_env:
procedural tracks, random lighting, static obstacles) while a lane-keeping controller drives
with a slowly wandering lateral target; each stack is labelled with the distance band of the
nearest obstacle in the car's path (route-frame overlap with the car's footprint), "none" when
there is none within the last band. The shipped encoder (td3_core.networks.build_cnn) with a
linear head learns the bands from training tracks; the score is per-band recall on tracks of
the held-out evaluation seeds, against the majority-class baseline of the same run.

High recall at 10-20 m says the input carries what avoiding needs (an obstacle 10-20 m ahead
leaves 1.2-2.4 s at the target speed) and that the reinforcement learning must find it; low
recall says the camera hides it. `--pitch`, `--camera` and `--set preprocessing.image_size=N`
compare mounts and resolutions.

    PYTHONPATH=. python -m bench.bench_obstacle_probe [--train-tracks 12] [--pitch 5] [--camera 84 84]
        [--set preprocessing.image_size=128]

Prints one JSON object, then a one-line summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from bench.bench_learning import parameter_overrides, trainer_params
from bench.heldout_eval import HELD_OUT_TRACK_SEEDS, heldout_env
from bench.provenance import code_version, host
from td3_core.networks import build_cnn
from td3_sim.dynamics import VehicleParams
from td3_sim.obstacles import Obstacle
from td3_trainer.augment import random_shift

BANDS_M = (0.0, 10.0, 20.0, 30.0)  # label k (1..3): the nearest obstacle in the path is in band k
BAND_NAMES = ("none", "0-10 m", "10-20 m", "20-30 m")
AUGMENT_PAD = 4  # the training setting's augment_pad
TRAINING_TRACK_BASE = 100000  # the training setting's episode seeds (config/trainer_unseen_roads.yaml)


def in_path_distance(env, obstacles: Sequence[Obstacle]) -> float:
    """Arclength to the nearest obstacle whose lateral extent overlaps the car's, inf if none."""
    world = env.world
    track, half_width = world.track, VehicleParams().width / 2.0
    x, y, _ = world.pose
    car = track.project(x, y)
    nearest = float("inf")
    for ob in obstacles:
        where = track.project(ob.x, ob.y)
        ahead = (where.s - car.s) % track.length
        reach = half_width + 0.5 * float(np.hypot(ob.length, ob.width))  # any yaw of the box
        if ahead < BANDS_M[-1] and abs(where.d - car.d) < reach:
            nearest = min(nearest, ahead)
    return nearest


def band_of(distance: float) -> int:
    for k in range(1, len(BANDS_M)):
        if distance < BANDS_M[k]:
            return k
    return 0


def collect(params, track_seeds: Sequence[int], camera, pitch, starts: int, steps: int, seed: int):
    """Stacks (N, stack, H, W) uint8 and band labels (N,) driven on each track from `starts` poses."""
    rng = np.random.default_rng(seed)
    stacks, labels = [], []
    for track_seed in track_seeds:
        env = heldout_env(params, track_seed, camera, obstacles=8, pitch_deg=pitch)
        for k in range(starts):
            # a layout of its own from every start: the probe must not learn a few obstacles by heart
            obs = env.lap_reset(k / starts, obstacles_seed=track_seed * 1000 + k)
            target, collisions = 0.0, obs.collisions
            for _ in range(steps):
                target = float(np.clip(0.97 * target + rng.normal(0.0, 0.12), -1.2, 1.2))  # metres, wandering
                lateral = obs.projection.lateral
                steer = float(np.clip(0.5 * (lateral - target) + 1.5 * obs.heading_error, -1.0, 1.0))  # + is right
                accel = 0.5 if obs.speed < 8.0 else 0.0
                stacks.append(obs.frames.copy())
                labels.append(band_of(in_path_distance(env, env.world.obstacles)))
                env.send(np.array([steer, accel], dtype=np.float32))
                obs = env.receive().observation
                if obs.collisions > collisions:  # a crash: the rest of this start would stand still
                    break
    return np.stack(stacks), np.array(labels, dtype=np.int64)


def train_probe(
    arch, stacks: np.ndarray, labels: np.ndarray, updates: int, seed: int, lr: float = 1e-4, augment: bool = True
) -> nn.Module:
    """The shipped encoder and a linear head, class-balanced cross-entropy, the trainer's random shift."""
    torch.manual_seed(seed)
    model = nn.Sequential(build_cnn(arch), nn.Linear(arch.feature_dim, len(BAND_NAMES)))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    counts = np.bincount(labels, minlength=len(BAND_NAMES)).astype(np.float64)
    weights = torch.tensor(counts.sum() / np.maximum(counts, 1.0) / len(BAND_NAMES), dtype=torch.float32)
    loss_fn = nn.CrossEntropyLoss(weight=weights)  # balanced: "none" dominates the frames
    generator = torch.Generator().manual_seed(seed)
    frames, targets = torch.from_numpy(stacks), torch.from_numpy(labels)
    for _ in range(updates):
        rows = torch.randint(0, len(targets), (64,), generator=generator)
        stacks_in = random_shift(frames[rows], AUGMENT_PAD, generator) if augment else frames[rows]
        loss = loss_fn(model(stacks_in.float() / 255.0), targets[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


@torch.no_grad()
def predict(model: nn.Module, stacks: np.ndarray) -> np.ndarray:
    out = [model(torch.from_numpy(stacks[i : i + 256]).float() / 255.0).argmax(1) for i in range(0, len(stacks), 256)]
    return torch.cat(out).numpy()


def recall_by_band(labels: np.ndarray, predicted: np.ndarray) -> dict[str, dict]:
    return {
        name: {"frames": int((labels == k).sum()), "recall": round(float((predicted[labels == k] == k).mean()), 3)}
        for k, name in enumerate(BAND_NAMES)
        if (labels == k).any()
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_obstacle_probe", description=__doc__.split("\n")[0])
    parser.add_argument("--train-tracks", type=int, default=36)
    parser.add_argument("--starts", type=int, default=3, help="start poses per track, each with its own layout")
    parser.add_argument("--steps", type=int, default=300, help="steps driven from each start")
    parser.add_argument("--updates", type=int, default=8000)
    parser.add_argument("--lr", type=float, default=1e-4, help="Adam's (3e-4 stays at the constant answer)")
    parser.add_argument("--camera", type=int, nargs=2, default=(84, 84), metavar=("W", "H"))
    parser.add_argument("--pitch", type=float, default=None, help="camera pitch, degrees down (default: the sim's)")
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE", help="e.g. preprocessing.image_size=128")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="2 tracks, 1 start, 150 steps, 50 updates: a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.train_tracks, args.starts, args.steps, args.updates = 2, 1, 150, 50
    torch.set_num_threads(args.threads)
    code = code_version()
    overrides = parameter_overrides(args.set)
    params = trainer_params(overrides)
    camera = tuple(args.camera)
    started = time.perf_counter()
    train_seeds = [TRAINING_TRACK_BASE + k for k in range(args.train_tracks)]
    train_x, train_y = collect(params, train_seeds, camera, args.pitch, args.starts, args.steps, args.seed)
    test_x, test_y = collect(params, HELD_OUT_TRACK_SEEDS, camera, args.pitch, args.starts, args.steps, args.seed + 1)
    collected = time.perf_counter() - started
    model = train_probe(params.architecture, train_x, train_y, args.updates, args.seed, args.lr)
    test_recall = recall_by_band(test_y, predict(model, test_x))
    seen = np.random.default_rng(args.seed).choice(len(train_y), min(len(train_y), 4000), replace=False)
    result = {
        "benchmark": "obstacle_probe",
        "date": time.strftime("%Y-%m-%d"),
        "host": host(),
        "code": code,
        "camera": list(camera),
        "pitch_deg": args.pitch,
        "set": overrides,
        "input": {"image_size": params.architecture.image_size, "frame_stack": params.architecture.frame_stack},
        "train_track_seeds": train_seeds,
        "test_track_seeds": list(HELD_OUT_TRACK_SEEDS),
        "frames": {"train": len(train_y), "test": len(test_y)},
        "updates": args.updates,
        "lr": args.lr,
        "seconds": {"collect": round(collected, 1), "total": round(time.perf_counter() - started, 1)},
        "probe": {
            "balanced_accuracy": round(float(np.mean([v["recall"] for v in test_recall.values()])), 3),
            "recall": test_recall,
            "recall_on_training_frames": recall_by_band(train_y[seen], predict(model, train_x[seen])),
        },
        "baseline_majority_class": {"balanced_accuracy": round(1.0 / len(test_recall), 3)},
    }
    print(json.dumps(result, indent=2))
    recall = ", ".join(f"{band} {v['recall']:.2f}" for band, v in test_recall.items())
    print(f"obstacle_probe: recall on held-out tracks {recall} (chance: balanced accuracy {1 / len(test_recall):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
