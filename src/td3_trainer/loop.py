"""The TD3 training loop, over any td3_trainer.environment.Environment (ROS-free).

    choose a_t → send it → gradient updates (while the simulator ticks) → receive tick t+1
    → a completed step: store its transition (or start a new segment after a gap)
    → the episode ended: reset ...

Random actions until learning starts (uniform, or the correlated warm-up noise), then the
policy plus exploration noise (td3_trainer.exploration). The trainer node runs this loop over
the bridge topics, the learning benchmark over the simulator in process; `run_episodes` drives the
policy without noise and without storing anything.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from td3_trainer.config import TD3Config
from td3_trainer.environment import Environment, Observation, Step
from td3_trainer.episode import EpisodeStats
from td3_trainer.exploration import ExplorationNoise
from td3_trainer.learner_thread import BackgroundLearner
from td3_trainer.loop_timing import LoopTiming

SLOW_UPDATES_S = 0.8  # per step; a bridge waits 1 s for the next command, then ticks on its own


@dataclass(frozen=True)
class LoopSettings:
    total_steps: int = 0  # 0: until stopped
    learning_starts: int = 1000
    batch_size: int = 256
    updates_per_step: int = 1
    episode_seed: int = -1  # >= 0: episode k of a run resets with seed episode_seed + k
    eval_every: int = 0  # evaluate the policy every this many environment steps (at an episode end); 0 = never
    eval_episodes: int = 3

    @property
    def learning_threshold(self) -> int:
        return max(self.learning_starts, self.batch_size)

    @classmethod
    def of(cls, params) -> LoopSettings:
        """The loop's settings from the trainer's parameters (td3_trainer.params.TrainerParams)."""
        return cls(
            total_steps=int(params.total_steps),
            learning_starts=int(params.learning_starts),
            batch_size=int(params.batch_size),
            updates_per_step=int(params.updates_per_step),
            episode_seed=int(params.episode_seed),
            eval_every=int(params.eval_every),
            eval_episodes=int(params.eval_episodes),
        )


class SharedSteps:
    """The environment steps of several loops together (one per vehicle), thread-safe."""

    def __init__(self, value: int = 0) -> None:
        self._lock = threading.Lock()
        self.value = value

    def add(self) -> None:
        with self._lock:
            self.value += 1


@dataclass
class LoopHooks:
    """What the loop tells its owner (the node: monitor and checkpoints); all optional."""

    on_step: Callable[[], None] = lambda: None  # after each completed step
    on_episode: Callable[[EpisodeStats, int], None] = lambda stats, env_steps: None
    on_train: Callable[[Mapping[str, float], int], None] = lambda stats, total_it: None
    info: Callable[[str], None] = lambda message: None
    warn: Callable[[str], None] = lambda message: None
    on_evaluation: Callable[[Evaluation, int], None] = lambda evaluation, env_steps: None


class TrainingLoop:
    def __init__(
        self,
        agent: Any,
        buffer: Any,
        config: TD3Config,
        settings: LoopSettings,
        rng: np.random.Generator,
        hooks: LoopHooks | None = None,
        learner: BackgroundLearner | None = None,
        stop: threading.Event | None = None,
        buffer_lock: threading.Lock | None = None,
        pool: Any = None,
        shared_steps: SharedSteps | None = None,
    ) -> None:
        self.agent = agent
        self.buffer = buffer  # where this loop stores (one vehicle's stream of a VehicleReplay)
        self.pool = buffer if pool is None else pool  # what is sampled: its size decides warm-up and learning
        self.shared_steps = shared_steps  # several vehicles: the env steps of all, for the budget
        # A BackgroundLearner samples while the loop adds (one lock for every vehicle's loop).
        self.buffer_lock = buffer_lock or threading.Lock()
        self.config = config
        self.settings = settings
        self.rng = rng
        self.hooks = hooks or LoopHooks()
        self.learner = learner
        self.stop = stop or threading.Event()
        action_dim = agent.arch.action_dim
        correlation = config.exploration_correlation
        self.exploration = ExplorationNoise(config.exploration_noise, correlation, action_dim, rng)
        self.warmup_noise = ExplorationNoise(config.warmup_noise, correlation, action_dim, rng)
        self.env_steps = 0
        self.episodes = 0
        self.steps_this_run = 0
        self.timing = LoopTiming()
        self._slow_updates = 0
        self._next_evaluation: int | None = None  # env step; set at the first check (a resumed run's count)

    def evaluation_due(self) -> bool:
        every = self.settings.eval_every
        if every <= 0:
            return False
        if self._next_evaluation is None:
            self._next_evaluation = (self.env_steps // every + 1) * every
        return self.env_steps >= self._next_evaluation

    def budget_spent(self) -> bool:
        total = self.settings.total_steps
        steps = self.env_steps if self.shared_steps is None else self.shared_steps.value
        return total > 0 and steps >= total

    def run(self, env: Environment) -> None:
        """Train until the budget is spent, the environment stops or `stop` is set."""
        timing = self.timing
        with timing.phase("reset"):
            observation = self._start_episode(env)
        episode = EpisodeStats(index=self.episodes)
        while observation is not None and not self.budget_spent() and not self.stop.is_set():
            with timing.phase("act"):
                env.send(self._choose_action(observation))
            with timing.phase("learn"):
                self._train()  # overlaps the simulator's tick
            with timing.phase("wait"):
                received = env.receive()
            if received is None:
                break
            step = received.finished
            if step is not None:
                with timing.phase("store"):
                    self._complete(episode, step)
            if step is not None and step.done:
                self._end_episode(episode, str(step.info["reason"]))
                episode = EpisodeStats(index=self.episodes)
                if self.evaluation_due():
                    self.evaluate(env)
                with timing.phase("reset"):
                    observation = None if self.budget_spent() else self._start_episode(env)
            else:
                observation = received.observation
        if not self.budget_spent():
            last = env.flush()  # the open step, with the events known so far
            if last is not None:
                self._complete(episode, last)
                if last.done:
                    self._end_episode(episode, str(last.info["reason"]))
                    episode = EpisodeStats(index=self.episodes)
        if episode.steps and self.stop.is_set():
            self.hooks.info(f"stopping in episode {episode.index} after {episode.steps} steps")

    def evaluate(self, env: Environment) -> Evaluation:
        """The policy without exploration noise on the environment's evaluation episodes; nothing
        is stored, no update is made, no random number is drawn."""
        count = self.settings.eval_episodes
        results = []
        for k in range(count):
            first = env.evaluation_reset(k, count)
            if first is None:
                break
            results.append(run_episode(env, self.act, first))
        evaluation = Evaluation.of(results)
        every = max(self.settings.eval_every, 1)
        self._next_evaluation = (self.env_steps // every + 1) * every
        self.hooks.on_evaluation(evaluation, self.env_steps)
        return evaluation

    def _complete(self, episode: EpisodeStats, step: Step) -> None:
        """Count a completed step, store its transition, then tell the owner."""
        self.env_steps += 1
        self.steps_this_run += 1
        if self.shared_steps is not None:
            self.shared_steps.add()
        episode.steps += 1
        after = step.observation
        if step.info.get("reason") == "restart":
            # The simulator restarted: the episode ends, nothing is stored, and the car's new
            # position is another world's, not driven to.
            episode.jump_to(after.x, after.y)
        elif step.continuity_lost:
            episode.move_to(after.x, after.y)
            episode.gaps += 1
            with self.buffer_lock:
                self.buffer.start_episode(after.frame, after.vector)
        else:
            episode.move_to(after.x, after.y)
            with self.buffer_lock:
                self.buffer.add(step.action, step.reward, after.frame, after.vector, step.terminated, step.truncated)
            episode.transitions += 1
            episode.progress_m += float(step.info["progress_m"])
            episode.add_reward(step.reward, step.info["terms"])
        self.hooks.on_step()

    def _choose_action(self, observation: Observation) -> np.ndarray:
        if self.agent.total_it == 0 and len(self.pool) < self.settings.learning_threshold:
            if self.config.exploration_correlation > 0.0:
                return np.clip(self.warmup_noise.sample(), -1.0, 1.0).astype(np.float32)
            return self.rng.uniform(-1.0, 1.0, size=2).astype(np.float32)
        return np.clip(self.act(observation) + self.exploration.sample(), -1.0, 1.0).astype(np.float32)

    def act(self, observation: Observation) -> np.ndarray:
        """The policy's action, without exploration noise."""
        if self.learner is not None:
            return self.learner.act(observation.frames, observation.vector)
        return self.agent.act(observation.frames, observation.vector)

    def _train(self) -> None:
        updates = self.settings.updates_per_step
        if not updates or len(self.pool) < self.settings.learning_threshold:
            return
        if self.learner is not None:
            self.learner.request(updates)
            return
        started = time.monotonic()
        for _ in range(updates):
            stats = self.agent.update(self.buffer.sample(self.settings.batch_size))
            self.hooks.on_train(stats, self.agent.total_it)
        self._check_update_time(time.monotonic() - started)

    def _check_update_time(self, elapsed: float) -> None:
        """Say so when updates outlast the bridge's command wait (its frames are then dropped)."""
        self._slow_updates = self._slow_updates + 1 if elapsed > SLOW_UPDATES_S else 0
        if self._slow_updates == 3:  # not the first, warm-up update alone
            self.hooks.warn(
                f"the gradient updates of one step take {elapsed:.2f} s: a simulator or bridge that waits at most "
                "1 s for the next command ticks on its own meanwhile, and those frames are dropped (no "
                "transitions). Use a GPU, a smaller network or batch_size, or async_updates:=true"
            )

    def _start_episode(self, env: Environment) -> Observation | None:
        seed = self.settings.episode_seed
        observation = env.reset(seed + self.episodes if seed >= 0 else -1)
        if observation is None:
            return None
        with self.buffer_lock:
            self.buffer.start_episode(observation.frame, observation.vector)
        self.exploration.reset()
        self.warmup_noise.reset()
        return observation

    def _end_episode(self, episode: EpisodeStats, reason: str) -> None:
        episode.reason = reason
        self.hooks.on_episode(episode, self.env_steps)
        self.episodes += 1


@dataclass(frozen=True)
class EpisodeResult:
    episode_return: float
    steps: int
    progress_m: float  # distance gained along the route before the episode ended
    route_m: float  # route length ahead of the start: progress_m / route_m is the completion
    distance_m: float  # path length driven
    reason: str  # why it ended
    mean_speed_mps: float
    mean_abs_lateral_m: float


def run_episode(
    env: Environment, policy: Callable[[Observation], np.ndarray], first: Observation, max_steps: int = 0
) -> EpisodeResult:
    """Drive `policy` from `first` until the episode ends (or after max_steps > 0 steps); nothing
    is stored."""
    observation, last = first, first
    stats = EpisodeStats(index=0)
    speeds: list[float] = []
    laterals: list[float] = []
    reason = "stopped"
    while not max_steps or stats.steps < max_steps:
        env.send(policy(observation))
        received = env.receive()
        if received is None:
            break
        observation = received.observation
        step = received.finished
        if step is None:
            continue
        stats.steps += 1
        stats.episode_return += step.reward
        last = step.observation
        stats.move_to(last.x, last.y)
        speeds.append(last.speed)
        laterals.append(abs(last.projection.lateral))
        if step.done:
            reason = str(step.info["reason"])
            break
    else:
        reason = "step_limit"
    return EpisodeResult(
        episode_return=stats.episode_return,
        steps=stats.steps,
        progress_m=last.projection.distance_along - first.projection.distance_along,
        route_m=max(first.projection.remaining, 1e-6),
        distance_m=stats.distance_m,
        reason=reason,
        mean_speed_mps=float(np.mean(speeds)) if speeds else 0.0,
        mean_abs_lateral_m=float(np.mean(laterals)) if laterals else 0.0,
    )


@dataclass(frozen=True)
class Evaluation:
    """Means over the evaluation episodes. `score` (what `best` maximises) is the mean return:
    what TD3 maximises, and it counts crashes, leaving the road and discomfort, not only how
    far the car got."""

    episodes: int
    mean_return: float
    mean_progress_m: float
    route_completion: float  # mean of progress_m / route_m
    collisions_per_km: float  # episodes ended by a collision per km driven
    off_road_per_km: float
    mean_speed_mps: float
    mean_abs_lateral_m: float
    results: tuple[EpisodeResult, ...] = ()

    @property
    def score(self) -> float:
        return self.mean_return

    @classmethod
    def of(cls, results: list[EpisodeResult]) -> Evaluation:
        if not results:
            nan = float("nan")
            return cls(0, nan, nan, nan, nan, nan, nan, nan)
        km = max(sum(r.distance_m for r in results) / 1000.0, 1e-3)  # a car that stood: per metre at most
        return cls(
            episodes=len(results),
            mean_return=float(np.mean([r.episode_return for r in results])),
            mean_progress_m=float(np.mean([r.progress_m for r in results])),
            route_completion=float(np.mean([min(max(r.progress_m / r.route_m, 0.0), 1.0) for r in results])),
            collisions_per_km=sum(r.reason == "collision" for r in results) / km,
            off_road_per_km=sum(r.reason == "off_road" for r in results) / km,
            mean_speed_mps=float(np.mean([r.mean_speed_mps for r in results])),
            mean_abs_lateral_m=float(np.mean([r.mean_abs_lateral_m for r in results])),
            results=tuple(results),
        )

    def as_dict(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in EVALUATION_FIELDS}


EVALUATION_FIELDS = (
    "episodes",
    "mean_return",
    "mean_progress_m",
    "route_completion",
    "collisions_per_km",
    "off_road_per_km",
    "mean_speed_mps",
    "mean_abs_lateral_m",
)
