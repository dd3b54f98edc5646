"""Does the trainer learn? TD3 for a fixed step budget on the embedded simulator, then an
evaluation of the learned policy against a uniform random policy on the same episodes.

Training is the trainer node's own loop (td3_trainer.loop.TrainingLoop) over the in-process
environment (td3_trainer.sim_env.SimEnv: the node's observation, reward and episode rules,
without DDS); the parameters are config/trainer.yaml's with the overrides below.
Evaluation (td3_trainer.loop.run_episode): deterministic actions (no exploration noise) on
`--eval-episodes` episodes of the loop track, each from another spawn point (seeds 1000+), up
to `--eval-steps` steps. Reported per policy: the mean return and the mean distance driven along
the route before the episode ended (a collision or leaving the road ends it), and how many
episodes ended that way. Training: random warm-up actions until the replay buffer holds
max(`--learning-starts`, `--batch-size`) transitions, then the policy plus exploration noise and
updates_per_step updates per step.

    python -m bench.bench_learning [--steps N] [--learning-starts N] [--batch-size N] ...

`--heldout`: also the held-out protocol (bench.heldout_eval): procedural tracks and lighting of
seeds training never draws, several starts each, a lap per episode; `--heldout-at N ...` also
drives the policy as it was after N steps of the same run (a snapshot of the agent at that step:
the first N steps of a longer run are the N-step run, so one run gives every smaller budget).
`--obstacles N`: N static obstacles (cones, crates) on every training track, laid out from the
episode seed, in either lane (procedural tracks only: each episode starts at its track's spawn
point, with no obstacle in the first 40 m); `--heldout-obstacles N`: N on every held-out track.
`--trainer sb3`: the same
budget and evaluations for Stable-Baselines3's TD3 (bench-only dependency) on the same
environment through bench.gym_env.SimGymEnv, with `--sb3-settings ours` (our hyper-parameters
where they map: learning rate, batch, buffer, tau, gamma, policy delay, target noise,
exploration noise, warm-up, updates per step, n-step returns, separate actor and critic CNNs) or `defaults`
(SB3's own, with our budget and warm-up).

Prints one JSON object, then a one-line summary. The object names the code's commit and the
machine (bench.provenance): a seed repeats its run step for step only on the same code and CPU
kernels.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import yaml

from bench.heldout_eval import evaluate_heldout, evaluation_seeds_are_held_out
from bench.provenance import code_version, host
from td3_bringup.graph import file_parameters, repo_config_dir
from td3_core.checkpoint import save_checkpoint
from td3_core.networks import Architecture
from td3_sim.world import MAX_OBSTACLES, SimConfig
from td3_trainer.checkpointing import run_payload
from td3_trainer.config import TD3Config
from td3_trainer.environment import Observation
from td3_trainer.loop import LoopHooks, LoopSettings, TrainingLoop, run_episode
from td3_trainer.params import validate
from td3_trainer.replay_buffer import FrameReplayBuffer
from td3_trainer.sim_env import SimEnv
from td3_trainer.td3 import TD3Agent

CONFIG = repo_config_dir() / "trainer.yaml"
EVAL_SEED_BASE = 1000  # evaluate()'s episode k resets with seed EVAL_SEED_BASE + k


def parameter_overrides(items: list[str]) -> dict:
    """`--set NAME=VALUE ...` as parameters, each value read as YAML (numbers, booleans, lists)."""
    return {name: yaml.safe_load(value) for name, value in (item.split("=", 1) for item in items)}


def trainer_params(overrides: dict):
    return validate(file_parameters(CONFIG, "td3_trainer") | overrides)


def training_env(params, args) -> SimEnv:
    """The environment training (and the benchmark's other evaluation) runs on: the loop track, or
    every episode on the procedural track, lighting and obstacles of its episode seed."""
    procedural = args.tracks == "procedural"
    sim = SimConfig(
        image_width=args.camera[0],
        image_height=args.camera[1],
        track="procedural" if procedural else "loop",
        seed=int(params.episode_seed) if procedural else 0,
        randomize_lighting=procedural,
        obstacles=args.obstacles,
    )
    return SimEnv(sim, params, bridge=args.resets == "bridge")


def evaluate(env: SimEnv, policy: Callable[[Observation], np.ndarray], episodes: int, max_steps: int) -> dict:
    actions: list[np.ndarray] = []

    def recorded(observation: Observation) -> np.ndarray:
        actions.append(policy(observation))
        return actions[-1]

    results = [run_episode(env, recorded, env.reset(EVAL_SEED_BASE + k), max_steps) for k in range(episodes)]
    returns = [r.episode_return for r in results]
    distances = [r.progress_m for r in results]
    return {
        "mean_return": float(np.mean(returns)),
        "mean_distance_m": float(np.mean(distances)),
        "episodes_ended_by_crash": sum(r.reason in ("collision", "off_road") for r in results),
        "mean_abs_steer": float(np.mean(np.abs(np.asarray(actions)[:, 0]))),
        "mean_accel": float(np.mean(np.asarray(actions)[:, 1])),
        "returns": [round(r, 1) for r in returns],
        "distances_m": [round(d, 1) for d in distances],
    }


def train_ours(params, env: SimEnv, args) -> tuple[Callable[[Observation], np.ndarray], dict]:
    """The trainer node's own loop on the in-process environment."""
    arch: Architecture = params.architecture
    config = TD3Config.from_dict(params.td3)
    agent = TD3Agent(arch, config, device="cpu")
    buffer = FrameReplayBuffer(
        args.steps + 1,
        (arch.image_size, arch.image_size),
        arch.frame_stack,
        arch.vector_dim,
        seed=args.seed,
        n_step=config.n_step,
        gamma=config.gamma,
    )
    settings = LoopSettings.of(params)  # the node's: budget, warm-up, batch, updates, episode seeds
    loop = TrainingLoop(agent, buffer, config, settings, np.random.default_rng(args.seed))
    started = time.perf_counter()
    snapshots: dict[int, dict] = {}

    def snapshot() -> None:  # reads the agent, changes nothing: the run goes on as without it
        if loop.env_steps in args.heldout_at:
            snapshots[loop.env_steps] = {"state": agent.state(), "seconds": round(time.perf_counter() - started, 1)}

    training = {"trainer": "td3-drive", **train(loop, env, snapshot)}
    if args.checkpoint_out:  # the node's checkpoint format: the driver and tools read it as they are
        save_checkpoint(run_payload(agent.state(), params, {"env_steps": loop.env_steps}), args.checkpoint_out)
    training["snapshots"] = {
        steps: {"policy": policy_of(TD3Agent.from_state(taken["state"], config)), "seconds": taken["seconds"]}
        for steps, taken in sorted(snapshots.items())
    }
    return policy_of(agent), training


def policy_of(agent: TD3Agent) -> Callable[[Observation], np.ndarray]:
    return lambda s: agent.act(s.frames, s.vector)


def train(loop: TrainingLoop, env: SimEnv, on_step: Callable[[], None] = lambda: None) -> dict:
    returns: list[float] = []
    loop.hooks = LoopHooks(on_step=on_step, on_episode=lambda stats, _: returns.append(stats.episode_return))
    started = time.perf_counter()
    loop.run(env)
    return {
        "episodes": loop.episodes,
        "updates": loop.agent.total_it,
        "seconds": round(time.perf_counter() - started, 1),
        "last_10_returns": [round(r, 1) for r in returns[-10:]],
    }


def train_sb3(params, env: SimEnv, args) -> tuple[Callable[[Observation], np.ndarray], dict]:
    """SB3's TD3 on the same environment and budget; its deterministic policy for the evaluations."""
    from stable_baselines3 import TD3
    from stable_baselines3.common.noise import NormalActionNoise

    from bench.gym_env import SimGymEnv
    from bench.sb3_baseline import policy_kwargs

    gym_env = SimGymEnv(env, int(params.episode_seed))  # the same episodes as our loop's
    config = TD3Config.from_dict(params.td3)
    arch: Architecture = params.architecture
    settings = dict(learning_starts=args.learning_starts, buffer_size=args.steps + 1, seed=args.seed, device="cpu")
    if args.sb3_settings == "ours":
        settings |= dict(
            learning_rate=config.actor_lr,
            batch_size=args.batch_size,
            tau=config.tau,
            gamma=config.gamma,
            policy_delay=config.policy_delay,
            target_policy_noise=config.policy_noise,
            target_noise_clip=config.noise_clip,
            action_noise=NormalActionNoise(np.zeros(2), np.full(2, config.exploration_noise)),
            train_freq=1,
            gradient_steps=int(params.updates_per_step),
            n_steps=config.n_step,
            policy_kwargs=policy_kwargs(arch.feature_dim, arch.hidden_dim, dict_observations=arch.vector_dim > 0),
        )
    model = TD3("MultiInputPolicy" if arch.vector_dim else "CnnPolicy", gym_env, verbose=0, **settings)
    started = time.perf_counter()
    snapshots = _sb3_snapshots(set(args.heldout_at), started)
    model.learn(total_timesteps=args.steps, callback=snapshots)
    seconds = time.perf_counter() - started

    def policy_from(policy) -> Callable[[Observation], np.ndarray]:
        def act(observation: Observation) -> np.ndarray:
            action, _ = policy.predict(gym_env.observation(observation), deterministic=True)
            return np.asarray(action, dtype=np.float32)

        return act

    training = {
        "trainer": f"stable-baselines3 TD3 ({args.sb3_settings} settings)",
        "updates": int(model._n_updates),
        "seconds": round(seconds, 1),
        "last_10_returns": [round(float(e["r"]), 1) for e in list(model.ep_info_buffer)[-10:]],
        "snapshots": {
            steps: {"policy": policy_from(taken["policy"]), "seconds": taken["seconds"]}
            for steps, taken in sorted(snapshots.taken.items())
        },
    }
    return policy_from(model.policy), training


def _sb3_snapshots(at_steps: set[int], started: float):
    """An SB3 callback that copies the policy as it is after N steps: at the start of a rollout
    SB3 has collected num_timesteps steps and run the updates that follow them (train_freq 1), so
    the copy is the policy an N-step run ends with. Copying changes nothing in the run."""
    import copy

    from stable_baselines3.common.callbacks import BaseCallback

    class Snapshots(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.taken: dict[int, dict] = {}

        def _on_rollout_start(self) -> None:
            if self.num_timesteps in at_steps and self.num_timesteps not in self.taken:
                self.taken[self.num_timesteps] = {
                    "policy": copy.deepcopy(self.model.policy),
                    "seconds": round(time.perf_counter() - started, 1),
                }

        def _on_step(self) -> bool:
            return True

    return Snapshots()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny budget that only shows the pipeline runs")
    parser.add_argument("--steps", type=int, default=5000, help="environment steps of training")
    parser.add_argument("--learning-starts", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-episode-steps", type=int, default=500)
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--eval-steps", type=int, default=500)
    parser.add_argument("--camera", type=int, nargs=2, default=(84, 84), metavar=("W", "H"))
    parser.add_argument("--threads", type=int, default=0, help="torch threads, 0 = torch's default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--resets",
        choices=("bridge", "service"),
        default="bridge",
        help="bridge: the trainer's resets through the bridge, open 1 m routes (default); service: the reset "
        "service's respawn and closed lap route (the behaviour before)",
    )
    parser.add_argument(
        "--tracks",
        choices=("loop", "procedural"),
        default="loop",
        help="loop: train on the loop track (seed 0); procedural: every training episode on the procedural track "
        "and lighting of its episode seed (episode_seed + k, reset-service resets; episode_seed must be >= 0)",
    )
    parser.add_argument(
        "--params-file",
        default="",
        help="a trainer parameters YAML (td3_trainer: ros__parameters:) applied over config/trainer.yaml, "
        "e.g. config/trainer_unseen_roads.yaml",
    )
    parser.add_argument("--json-out", default="", help="also write the JSON result here (bench.learning_report)")
    parser.add_argument(
        "--checkpoint-out", default="", help="ours: also write the trained agent as a checkpoint (.pth) here"
    )
    parser.add_argument("--trainer", choices=("ours", "sb3"), default="ours")
    parser.add_argument("--sb3-settings", choices=("ours", "defaults"), default="ours")
    parser.add_argument("--heldout", action="store_true", help="also evaluate on the held-out procedural tracks")
    parser.add_argument("--heldout-starts", type=int, default=2, help="starts per held-out track")
    parser.add_argument(
        "--obstacles",
        type=int,
        default=0,
        help="static obstacles (cones, crates) on every training track, laid out from its episode seed",
    )
    parser.add_argument(
        "--heldout-obstacles", type=int, default=0, help="static obstacles on every held-out track (bench.heldout_eval)"
    )
    parser.add_argument(
        "--heldout-at",
        type=int,
        nargs="*",
        default=[],
        metavar="N",
        help="with --heldout: also the policy as it was after N environment steps of this run (N < --steps)",
    )
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="NAME=VALUE", help="more trainer parameters, e.g. action.max_steer=0.5"
    )
    args = parser.parse_args()
    if args.quick:
        args.steps, args.learning_starts, args.eval_episodes, args.eval_steps = 600, 300, 2, 200
    if args.heldout_at and not args.heldout:
        parser.error("--heldout-at needs --heldout")
    if any(not 0 < n < args.steps for n in args.heldout_at):
        parser.error(f"--heldout-at steps must lie between 0 and --steps ({args.steps})")
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = parameter_overrides(args.set)
    setting = file_parameters(Path(args.params_file), "td3_trainer") if args.params_file else {}
    params = trainer_params(
        setting
        | {
            "seed": args.seed,
            "total_steps": args.steps,
            "batch_size": args.batch_size,
            "learning_starts": args.learning_starts,
            "max_episode_steps": args.max_episode_steps,
        }
        | overrides
    )
    procedural = args.tracks == "procedural"
    for flag, count in (("--obstacles", args.obstacles), ("--heldout-obstacles", args.heldout_obstacles)):
        if not 0 <= count <= MAX_OBSTACLES:
            parser.error(f"{flag} must be in [0, {MAX_OBSTACLES}]")
    if args.obstacles and not procedural:
        parser.error("--obstacles needs --tracks procedural (the loop's bridge resets start anywhere, obstacles too)")
    if procedural:
        if int(params.episode_seed) < 0:
            parser.error("--tracks procedural needs episode_seed >= 0 (the first training track's seed)")
        args.resets = "service"  # a new track per episode is the reset service's respawn
        first, last = int(params.episode_seed), int(params.episode_seed) + args.steps  # at most one per step
        training = set(range(first, last + 1))
        evaluation = set(range(EVAL_SEED_BASE, EVAL_SEED_BASE + args.eval_episodes))
        if not evaluation_seeds_are_held_out(training | evaluation):
            parser.error(f"training track seeds {first}..{last} would reach the held-out evaluation seeds")
        if training & evaluation:
            parser.error(
                f"training track seeds {first}..{last} overlap this benchmark's evaluation seeds "
                f"{EVAL_SEED_BASE}..{EVAL_SEED_BASE + args.eval_episodes - 1}"
            )
    env = training_env(params, args)
    provenance = {"host": host(), "code": code_version()}  # before training: the code may change while it runs
    torch.manual_seed(args.seed)  # as the trainer node seeds its networks
    if args.trainer == "sb3":
        policy, training = train_sb3(params, env, args)
    else:
        policy, training = train_ours(params, env, args)

    snapshots = training.pop("snapshots", {})
    eval_rng = np.random.default_rng(args.seed + 1)
    learned = evaluate(env, policy, args.eval_episodes, args.eval_steps)
    random = evaluate(
        env, lambda s: eval_rng.uniform(-1.0, 1.0, size=2).astype(np.float32), args.eval_episodes, args.eval_steps
    )
    result = {
        "benchmark": "learning",
        "date": time.strftime("%Y-%m-%d"),
        "machine": platform.machine(),
        "torch_threads": torch.get_num_threads(),
        **provenance,
        "budget": {
            "env_steps": args.steps,
            "learning_starts": args.learning_starts,
            "batch_size": args.batch_size,
            "max_episode_steps": args.max_episode_steps,
            "camera": list(args.camera),
            "seed": args.seed,
            "resets": args.resets,
            "tracks": args.tracks,
            "obstacles": args.obstacles,
            "params_file": args.params_file,
            "overrides": overrides,
            "trainer_params": dict(params.values),  # what trained, whatever the files say later
        },
        "training": training,
        "eval": {"episodes": args.eval_episodes, "max_steps": args.eval_steps, "td3": learned, "random": random},
    }
    if args.heldout:
        camera = tuple(args.camera)
        protocol = dict(starts=args.heldout_starts, obstacles=args.heldout_obstacles)
        result["heldout"] = {
            "td3": evaluate_heldout(policy, params, camera, **protocol),
            "random": evaluate_heldout(
                lambda s: eval_rng.uniform(-1.0, 1.0, size=2).astype(np.float32), params, camera, **protocol
            ),
        }
        result["heldout_at"] = {  # the same run's policy after fewer steps: one entry per --heldout-at
            str(steps): {
                "seconds": taken["seconds"],
                "td3": evaluate_heldout(taken["policy"], params, camera, **protocol),
            }
            for steps, taken in snapshots.items()
        }
    print(json.dumps(result, indent=2))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"learning: after {args.steps} steps TD3 return {learned['mean_return']:.1f}, "
        f"distance {learned['mean_distance_m']:.1f} m ({learned['episodes_ended_by_crash']}/{args.eval_episodes} "
        f"crashed) vs random {random['mean_return']:.1f}, {random['mean_distance_m']:.1f} m "
        f"({random['episodes_ended_by_crash']}/{args.eval_episodes} crashed)"
    )


if __name__ == "__main__":
    main()
