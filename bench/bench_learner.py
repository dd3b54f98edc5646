"""Gradient updates per second: our TD3Agent against Stable-Baselines3 TD3 (CnnPolicy), back to back.

Same batch size, the same random uint8 frames in both replay buffers, separate NatureCNN
encoders for actor and critic (SB3: share_features_extractor=False), twin critics, policy delay
2. An update includes sampling the batch on both sides. SB3's observation has no vector part, so
the fair comparison is ours with vector_dim=0 and actor_encoder "own" (each encoder trained by
its own loss, as SB3 does); ours with vector_dim=23 is reported too, and the trainer's default
(actor_encoder "critic": the actor reads the critic's encoder, so one encoder is trained and
one target encoding is computed; not SB3's configuration, reported for what training costs).
A fifth contender, "floor", runs only the network passes an update at SB3's configuration
cannot skip (per two updates: 4 target encodings, 2 critic encodings with backward, 1 critic
encoding without gradient, 1 actor encoding with backward), on inputs already scaled, with our
layout, and nothing else (no sampling, heads, losses or optimizers): the rate no update at that
configuration exceeds on this machine with these kernels, and its ratio to SB3 says how far any
implementation could go. Contenders take turns within each repeat (machine load hits all alike), warm-up
updates are not timed. Reported: the median over repeats and the best repeat (on a shared
machine the best is the least disturbed), with ratios to SB3 for both.

    python -m bench.bench_learner [--quick] [--threads N] [--repeats R] [--updates U] [--device cuda]

Prints one JSON object, then a one-line summary. Needs requirements-bench.txt (SB3).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from bench.provenance import cpu_model
from bench.sb3_baseline import fill_replay, make_model
from td3_core.device import DeviceError, select_device
from td3_core.networks import Architecture, build_cnn
from td3_trainer.config import TD3Config
from td3_trainer.replay_buffer import FrameReplayBuffer
from td3_trainer.td3 import TD3Agent

FRAME = (84, 84)
STACK = 4


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously): a timed round ends here."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()


def our_learner(
    frames: np.ndarray,
    vector_dim: int,
    batch_size: int,
    device: torch.device,
    contiguous: bool = False,
    actor_encoder: str = "own",
) -> Callable[[int], None]:
    """TD3Agent + FrameReplayBuffer (frames kept on `device`) holding `frames` as one long
    episode; returns run(n_updates)."""
    arch = Architecture(frame_stack=STACK, image_size=FRAME[0], vector_dim=vector_dim)
    agent = TD3Agent(arch, TD3Config(batch_size=batch_size, actor_encoder=actor_encoder), device)
    if contiguous:
        agent.use_memory_format(torch.contiguous_format)
    buffer = FrameReplayBuffer(len(frames), FRAME, STACK, vector_dim, 2, device, seed=0)
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(len(frames), vector_dim)).astype(np.float32)
    buffer.start_episode(frames[0], vectors[0])
    for t in range(1, len(frames)):
        terminated = bool(rng.random() < 0.01)
        buffer.add(rng.uniform(-1, 1, 2), float(rng.normal()), frames[t], vectors[t], terminated, False)
        if terminated:
            buffer.start_episode(frames[t], vectors[t])

    def run(updates: int) -> None:
        for _ in range(updates):
            agent.update(buffer.sample(batch_size))

    return run


def network_floor(batch_size: int, device: torch.device) -> Callable[[int], None]:
    """The encoder passes of our update at SB3's configuration (actor_encoder "own"), alone.

    Per update: 2 target encodings of next_obs and 1 critic encoding of obs with its backward;
    every second update also 1 critic encoding without gradient and 1 actor encoding with its
    backward. Inputs are float, in [0, 1] and channels_last already; the backward gets a fixed
    gradient of the features."""
    arch = Architecture(frame_stack=STACK, image_size=FRAME[0], vector_dim=0)
    layout = torch.channels_last
    actor_cnn, critic_cnn, actor_target, critic_target = (
        build_cnn(arch).to(device, memory_format=layout) for _ in range(4)
    )
    for target in (actor_target, critic_target):
        target.requires_grad_(False)
    generator = torch.Generator().manual_seed(0)
    obs, next_obs = (
        torch.rand(batch_size, STACK, *FRAME, generator=generator).to(device).contiguous(memory_format=layout)
        for _ in range(2)
    )
    feature_grad = torch.randn(batch_size, arch.feature_dim, generator=generator).to(device)

    def backward_through(cnn: torch.nn.Module) -> None:
        for param in cnn.parameters():
            param.grad = None
        cnn(obs).backward(feature_grad)

    def run(updates: int) -> None:
        for step in range(1, updates + 1):
            with torch.no_grad():
                actor_target(next_obs)
                critic_target(next_obs)
            backward_through(critic_cnn)
            if step % 2 == 0:
                with torch.no_grad():
                    critic_cnn(obs)
                backward_through(actor_cnn)

    return run


def sb3_learner(frames: np.ndarray, batch_size: int, device: torch.device) -> Callable[[int], None]:
    model = make_model(buffer_size=len(frames), batch_size=batch_size, device=str(device))
    fill_replay(model, frames, np.random.default_rng(1))

    def run(updates: int) -> None:
        model.train(gradient_steps=updates, batch_size=batch_size)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer updates and repeats (< 3 min on 2 cores)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = torch's default")
    parser.add_argument("--repeats", type=int, default=0, help="timed rounds per contender (default 9, quick 5)")
    parser.add_argument("--updates", type=int, default=0, help="updates per timed round, even (default 8, quick 4)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=2000, help="distinct frames in the replay buffers")
    parser.add_argument("--ablation", action="store_true", help="also ours with contiguous (NCHW) convolutions")
    parser.add_argument("--device", default="cpu", help="auto, cpu or cuda[:N]: where both learners run")
    args = parser.parse_args()
    try:
        device = select_device(args.device)  # the trainer's and the driver's choice
    except DeviceError as error:
        parser.error(f"--device {args.device}: {error}")
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (5 if args.quick else 9)
    # Whole policy-delay cycles per round: every round has the same share of actor steps.
    updates = 2 * -(-(args.updates or (4 if args.quick else 8)) // 2)
    warmup = 2

    import stable_baselines3

    frames = np.random.default_rng(0).integers(0, 256, (args.frames, *FRAME), dtype=np.uint8)
    started = time.perf_counter()
    contenders = {
        "ours_vector0": our_learner(frames, 0, args.batch_size, device),
        "sb3": sb3_learner(frames, args.batch_size, device),
        "ours_vector23": our_learner(frames, 23, args.batch_size, device),
        "ours_default": our_learner(frames, 23, args.batch_size, device, actor_encoder="critic"),
        "floor": network_floor(args.batch_size, device),
    }
    if args.ablation:
        contenders["ours_vector0_nchw"] = our_learner(frames, 0, args.batch_size, device, contiguous=True)
    for run in contenders.values():
        run(warmup)
    synchronize(device)
    load_before = loadavg()
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            tic = time.perf_counter()
            run(updates)
            synchronize(device)
            rates[name].append(updates / (time.perf_counter() - tic))
    medians = {name: statistics.median(values) for name, values in rates.items()}
    best = {name: max(values) for name, values in rates.items()}
    result = {
        "benchmark": "td3 gradient updates per second",
        "machine": {
            "device": str(device),
            "device_name": device_name(device),
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(),
            "loadavg_before": load_before,
            "loadavg_after": loadavg(),
        },
        "versions": {"torch": torch.__version__, "stable_baselines3": stable_baselines3.__version__},
        "setup": {
            "batch_size": args.batch_size,
            "obs": [STACK, *FRAME],
            "features_dim": 512,
            "net_arch": [256, 256],
            "policy_delay": 2,
            "repeats": repeats,
            "updates_per_repeat": updates,
            "warmup_updates": warmup,
            "quick": args.quick,
        },
        "updates_per_s": {name: round(value, 3) for name, value in medians.items()},
        "ratio_vs_sb3": {name: round(value / medians["sb3"], 3) for name, value in medians.items() if name != "sb3"},
        # 1.0 would be an update that costs nothing beyond its encoder passes.
        "share_of_floor": {
            name: round(medians[name] / medians["floor"], 3) for name in ("ours_vector0", "ours_vector23", "sb3")
        },
        "best_updates_per_s": {name: round(value, 3) for name, value in best.items()},
        "best_ratio_vs_sb3": {name: round(value / best["sb3"], 3) for name, value in best.items() if name != "sb3"},
        "runs": {name: [round(v, 3) for v in values] for name, values in rates.items()},
        "wall_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(result, indent=2))
    ratio, best_ratio = result["ratio_vs_sb3"], result["best_ratio_vs_sb3"]
    print(
        f"updates/s on {device} (batch {args.batch_size}, {torch.get_num_threads()} threads): "
        f"ours {medians['ours_vector0']:.2f} (vector 0) / {medians['ours_vector23']:.2f} (vector 23), "
        f"SB3 {medians['sb3']:.2f} -> {ratio['ours_vector0']:.2f}x / {ratio['ours_vector23']:.2f}x (median; "
        f"best rounds {best_ratio['ours_vector0']:.2f}x / {best_ratio['ours_vector23']:.2f}x); the trainer's default "
        f"(actor_encoder critic, vector 23) {medians['ours_default']:.2f} -> {ratio['ours_default']:.2f}x; "
        f"the encoder passes alone (floor) {medians['floor']:.2f} -> {ratio['floor']:.2f}x"
    )


if __name__ == "__main__":
    main()
