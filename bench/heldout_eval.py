"""Evaluation on roads never trained on: the learning benchmark's protocol.

Tracks: procedural tracks of the seeds in HELD_OUT_TRACK_SEEDS, each with the lighting of its
seed, far from any seed training draws: the benchmark trains on the loop track (seed 0); with a
reset service, training episode k has seed `episode_seed + k`, which must stay below
TRAINING_SEED_LIMIT for this protocol to hold (evaluation_seeds_are_held_out checks a set).
Starts: STARTS_PER_TRACK poses spread evenly along each track (SimEnv.lap_reset: the same
teleport as the trainer's resets), each with its goal 5 m behind it, so an episode that reaches
its goal has driven a lap. Nothing is stored and no noise is added: `policy` is called as it is.
Obstacles (`obstacles` > 0, none by default): that many static cones and crates per track, in
either lane, laid out from each start with the track's seed (none in a start's first 40 m), so
every start drives past the same pattern on another stretch of road.

Reported per episode and over all of them (td3_trainer.loop.Evaluation): mean return, route
completion, distance before the first collision or leaving the road, collisions and off-road
ends per km, mean |lateral offset| and mean speed, and how many episodes drove the whole lap
without a collision or leaving the road. Speed (SpeedProfile): the mean on straights (curvature
radius above STRAIGHT_RADIUS_M) and in tight curves (below TIGHT_RADIUS_M), the highest, and
whether the mean on straights is within TARGET_BAND of the reward's target speed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from td3_sim.track import make_track
from td3_sim.world import SimConfig
from td3_trainer.environment import Observation
from td3_trainer.loop import Evaluation, run_episode
from td3_trainer.params import TrainerParams, validate
from td3_trainer.sim_env import SimEnv

HELD_OUT_TRACK_SEEDS = (7_000_001, 7_000_002, 7_000_003, 7_000_004, 7_000_005)
STARTS_PER_TRACK = 2
TRAINING_SEED_LIMIT = 7_000_000  # training seeds (track, lighting, episode seeds) stay below this
COMPLETED = 0.98  # route completion that counts as the lap
STRAIGHT_RADIUS_M = 100.0  # road with a curvature radius above this counts as straight
TIGHT_RADIUS_M = 30.0  # ... below this as a tight curve (procedural tracks go down to 15 m)
TARGET_BAND = 0.2  # mean speed on straights within 20% of the target speed is "at the asked speed"


class SpeedProfile:
    """Speeds seen by the policy, with the road's curvature where they were seen."""

    def __init__(self) -> None:
        self.speeds: list[float] = []
        self.curvatures: list[float] = []

    def watching(self, env: SimEnv, policy: Callable[[Observation], np.ndarray]) -> Callable[[Observation], np.ndarray]:
        track = env.world.track

        def watched(observation: Observation) -> np.ndarray:
            self.speeds.append(float(observation.speed))
            self.curvatures.append(float(track.curvature(track.project(observation.x, observation.y).s)))
            return policy(observation)

        return watched

    def summary(self, target_mps: float) -> dict:
        speeds, curvatures = np.asarray(self.speeds), np.asarray(self.curvatures)
        straight, tight = curvatures < 1.0 / STRAIGHT_RADIUS_M, curvatures > 1.0 / TIGHT_RADIUS_M
        mean = lambda mask: round(float(speeds[mask].mean()), 2) if mask.any() else None  # noqa: E731
        on_straights = mean(straight)
        return {
            "target_speed_mps": round(target_mps, 2),
            "mean_speed_straights_mps": on_straights,
            "mean_speed_tight_curves_mps": mean(tight),
            "max_speed_mps": round(float(speeds.max()), 2) if speeds.size else None,
            "at_target_on_straights": on_straights is not None
            and abs(on_straights - target_mps) <= TARGET_BAND * target_mps,
        }


def evaluation_seeds_are_held_out(training_seeds: set[int]) -> bool:
    return not training_seeds & set(HELD_OUT_TRACK_SEEDS) and all(s < TRAINING_SEED_LIMIT for s in training_seeds)


def heldout_env(
    params: TrainerParams,
    track_seed: int,
    camera: tuple[int, int],
    max_steps: int = 0,
    obstacles: int = 0,
    pitch_deg: float | None = None,
) -> SimEnv:
    """The in-process environment on the procedural track (and lighting) of `track_seed`, with
    `obstacles` static obstacles, whose episodes are truncated after `max_steps` (0 = a lap's
    worth at the target speed, lap_steps) rather than after training's max_episode_steps, which
    is shorter than a lap. `pitch_deg`: the camera's pitch (None: the simulator's default)."""
    sim = SimConfig(
        image_width=camera[0],
        image_height=camera[1],
        track="procedural",
        seed=track_seed,
        randomize_lighting=True,
        obstacles=obstacles,
        **({} if pitch_deg is None else {"camera_pitch_deg": pitch_deg}),
    )
    steps = max_steps or lap_steps(make_track("procedural", track_seed).length, sim.fixed_delta_seconds, params)
    return SimEnv(sim, validate({**params.values, "max_episode_steps": steps}))


def lap_steps(track_length_m: float, dt: float, params: TrainerParams, slack: float = 1.5) -> int:
    """Steps for a lap of `track_length_m` at the reward's target speed, with slack."""
    target = float(params.reward.target_speed_mps)
    return int(slack * track_length_m / max(target, 1.0) / dt)


def evaluate_heldout(
    policy: Callable[[Observation], np.ndarray],
    params: TrainerParams,
    camera: tuple[int, int] = (84, 84),
    track_seeds: tuple[int, ...] = HELD_OUT_TRACK_SEEDS,
    starts: int = STARTS_PER_TRACK,
    max_steps: int = 0,
    obstacles: int = 0,
) -> dict:
    """Drive `policy` from `starts` poses of each held-out track, past `obstacles` obstacles per
    track; max_steps 0 = a lap's worth."""
    episodes: list[dict] = []
    results = []
    profile = SpeedProfile()
    for track_seed in track_seeds:
        env = heldout_env(params, track_seed, camera, max_steps, obstacles)
        limit = env.scorer.episode.max_episode_steps
        for k in range(starts):
            first = env.lap_reset(k / starts, obstacles_seed=track_seed if obstacles else None)
            result = run_episode(env, profile.watching(env, policy), first, limit)
            results.append(result)
            completion = min(max(result.progress_m / result.route_m, 0.0), 1.0)
            episodes.append(
                {
                    "track_seed": track_seed,
                    "start": k,
                    "return": round(result.episode_return, 1),
                    "route_completion": round(completion, 3),
                    "lap_without_incident": completion >= COMPLETED and result.reason not in ("collision", "off_road"),
                    "end": result.reason,
                    "distance_before_incident_m": round(result.progress_m, 1),
                    "mean_speed_mps": round(result.mean_speed_mps, 2),
                    "mean_abs_lateral_m": round(result.mean_abs_lateral_m, 3),
                    "steps": result.steps,
                }
            )
    summary = Evaluation.of(results).as_dict()
    summary["laps_without_incident"] = sum(e["lap_without_incident"] for e in episodes)
    summary["speed"] = profile.summary(float(params.reward.target_speed_mps))
    return {
        "track_seeds": list(track_seeds),
        "starts_per_track": starts,
        "obstacles_per_track": obstacles,
        "summary": {k: round(v, 3) if isinstance(v, float) else v for k, v in summary.items()},
        "speed_limit_mps": float(params.action.speed_limit_mps),
        "episodes": episodes,
    }
