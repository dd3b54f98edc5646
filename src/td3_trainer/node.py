"""TD3 trainer node: learns to drive from the camera over the carla-ros-bridge interface.

    python -m td3_trainer.node --ros-args --params-file config/trainer.yaml [-p name:=value ...]

The ROS executor spins on a background thread (callbacks only store messages); the training
loop runs on the main thread:

    publish a_t → gradient updates (while the simulator ticks) → wait for tick t+1
    → obs_{t+1}, reward, terminated/truncated → store the transition → choose a_{t+1} ...

SIGINT/SIGTERM set a flag: the loop stops at the next wait, the car gets a brake command, a
final checkpoint is written and the node exits with status 0. Invalid parameters or an
unusable resume checkpoint stop it at start-up with status 2 and a message naming the cause.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
import torch
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from td3_core.checkpoint import CheckpointError, read_metadata
from td3_trainer import params as trainer_params
from td3_trainer.checkpointing import CheckpointManager, Resumed, default_run_name, load_resume, locate_resume
from td3_trainer.env_client import Observation, RosEnv
from td3_trainer.episode import EpisodeStats, Outcome, classify_step
from td3_trainer.exploration import ExplorationNoise
from td3_trainer.loop_timing import LoopTiming
from td3_trainer.monitor import Monitor
from td3_trainer.params import ParamError, TrainerParams
from td3_trainer.reward import RewardFunction, StepState
from td3_trainer.tick_sync import GapKind

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_NO_EPISODE = 3  # no episode could be started (a reset that never settled, no start poses)
SLOW_UPDATES_S = 0.8  # per step; a bridge waits 1 s for the next command, then ticks on its own


class StartupError(Exception):
    """The node cannot start; the message says which parameter or file and why."""


def default_threads() -> int:
    """All cores but one: the simulator and the ROS executor need CPU too, and torch's threads
    stall badly (waiting on each other) on an oversubscribed machine."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise StartupError(f"device: '{name}' requested but CUDA is not available")
    return torch.device(name)


class BackgroundLearner:
    """Gradient updates on their own thread (async_updates).

    In the default mode the loop does its updates between publishing a_t and reading tick t+1;
    an update slower than the bridge's command wait (1 s, e.g. full-size networks on a CPU)
    then lets the world tick on its own and those frames are dropped. Here the loop only asks
    for `updates_per_step` updates per step and never waits for them: the thread catches up
    when it can (a backlog of at most MAX_BACKLOG), and acting uses a copy of the actor
    refreshed after each actor update. Update counts then depend on timing.
    """

    MAX_BACKLOG = 1000

    def __init__(self, agent: Any, buffer: Any, buffer_lock: threading.Lock, batch_size: int, node: TrainerNode):
        from td3_core.networks import Policy

        self.agent = agent
        self.buffer = buffer
        self.buffer_lock = buffer_lock
        self.batch_size = batch_size
        self.node = node
        self.lock = threading.Lock()  # the agent: an update, or reading it for a checkpoint
        self._policy = Policy(agent.arch).to(agent.device).eval().requires_grad_(False)
        self._policy_lock = threading.Lock()
        self._refresh_policy()
        self._cond = threading.Condition()
        self._pending = 0
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="td3-learner", daemon=True)
        self._thread.start()

    def request(self, count: int) -> None:
        with self._cond:
            self._pending = min(self._pending + count, self.MAX_BACKLOG)
            self._cond.notify()

    def act(self, frames: np.ndarray, vector: np.ndarray) -> np.ndarray:
        """The policy's action (no exploration noise), from the snapshot the updates refresh."""
        device = self.agent.device
        frames_t = torch.as_tensor(frames, device=device).unsqueeze(0)
        vector_t = torch.as_tensor(vector, dtype=torch.float32, device=device).reshape(1, -1)
        with self._policy_lock, torch.inference_mode():
            action = self._policy(frames_t, vector_t)[0].float().cpu().numpy()
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def _refresh_policy(self) -> None:
        with self._policy_lock:
            self._policy.actor_cnn.load_state_dict(self.agent.actor_cnn.state_dict())
            self._policy.actor.load_state_dict(self.agent.actor.state_dict())

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._pending and not self._closing:
                        self._cond.wait()
                    if self._closing:
                        return
                    self._pending -= 1
                with self.buffer_lock:
                    batch = self.buffer.sample(self.batch_size)
                with self.lock:
                    stats = self.agent.update(batch)
                    total_it = self.agent.total_it
                    if "actor_loss" in stats:
                        self._refresh_policy()
                self.node.monitor.on_train(stats, total_it)
        except Exception as error:  # a failing update must stop the run, not leave it acting blindly
            self.node.log.fatal(f"gradient update failed: {error!r}")
            self.node.stop.set()

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join()


class TrainerNode(Node):
    def __init__(self, stop: threading.Event) -> None:
        super().__init__("td3_trainer")
        self.stop = stop
        try:
            self.params: TrainerParams = trainer_params.validate(trainer_params.declare(self))
        except ParamError as error:
            raise StartupError(f"invalid parameter {error}") from error
        p = self.params
        self.log = self.get_logger()
        torch.set_num_threads(int(p.num_threads) or default_threads())
        torch.manual_seed(int(p.seed))
        self.device = resolve_device(str(p.device))
        resumed = self._load_resume()
        if resumed is not None:  # the checkpoint's own networks and input pipeline profile
            meta = read_metadata(resumed.checkpoint, resumed.path)
            self.params = p = trainer_params.with_checkpoint_profile(
                p, meta.architecture, meta.preprocess, meta.observation
            )
        # A resumed run keeps writing into its own run directory unless run_name says otherwise.
        resumed_run = str(resumed.extra.get("run_name") or resumed.path.parent.name) if resumed else ""
        run_name = str(p.run_name) or resumed_run or default_run_name()
        self.run_name = run_name
        self.run_dir = Path(str(p.models_dir)) / run_name

        from td3_trainer.config import TD3Config
        from td3_trainer.replay_buffer import FrameReplayBuffer
        from td3_trainer.td3 import TD3Agent

        self.td3_config = TD3Config(**p.td3)
        self.agent = TD3Agent(p.architecture, self.td3_config, self.device)
        arch = p.architecture
        self.buffer = FrameReplayBuffer(
            int(p.buffer_size),
            frame_shape=(arch.image_size, arch.image_size),
            frame_stack=arch.frame_stack,
            vector_dim=arch.vector_dim,
            action_dim=arch.action_dim,
            device=str(self.device),
            seed=int(p.seed),
            fill_level=p.preprocess.constant_fill,  # stacks rebuilt as the observation builder makes them
        )
        self.buffer_lock = threading.Lock()  # the learner thread samples while the loop adds
        self.rng = np.random.default_rng(int(p.seed))
        correlation = self.td3_config.exploration_correlation
        action_dim = p.architecture.action_dim
        self.exploration = ExplorationNoise(self.td3_config.exploration_noise, correlation, action_dim, self.rng)
        self.warmup_noise = ExplorationNoise(self.td3_config.warmup_noise, correlation, action_dim, self.rng)
        self._slow_updates = 0
        self.env_steps = 0
        self.episodes = 0
        self.resumed_from: str | None = None
        if resumed is not None:
            self._restore(resumed)

        self.checkpoints = CheckpointManager(
            self.run_dir,
            str(p.scenario),
            int(p.checkpoint_every),
            int(p.keep_last),
            bool(p.save_replay_buffer),
            info=self.log.info,
            error=self.log.error,
        )
        self.env = RosEnv(self, p, stop)
        self.reward_fn = RewardFunction(p.reward, float(p.fixed_delta_seconds))
        self.monitor = Monitor(
            self,
            run_name=run_name,
            role_name=str(p.role_name),
            log_dir=str(p.log_dir),
            total_steps=int(p.total_steps),
            start_steps=self.env_steps,
            stats_period_s=float(p.stats_period_s),
            progress=bool(p.progress),
            tensorboard=bool(p.tensorboard),
            status=self._status,
        )
        self.learner = (
            BackgroundLearner(self.agent, self.buffer, self.buffer_lock, int(p.batch_size), self)
            if p.async_updates
            else None
        )
        self.started = time.monotonic()
        self.steps_this_run = 0
        self.timing = LoopTiming()
        self.log.info(
            f"run '{run_name}' → {self.run_dir}; device {self.device}; "
            f"{'resumed from ' + self.resumed_from if self.resumed_from else 'new run'} at env step {self.env_steps}, "
            f"update {self.agent.total_it}; budget {p.total_steps or 'unlimited'} steps; "
            f"camera {self.env.image_topic}, commands {self.env.command_topic}"
        )

    # ------------------------------------------------------------------ start-up

    def _load_resume(self) -> Resumed | None:
        p = self.params
        if not str(p.resume):
            return None
        expected = trainer_params.resume_expectations(p)
        try:
            path = locate_resume(str(p.resume), str(p.models_dir))
            return load_resume(path, bool(p.save_replay_buffer), expected)
        except CheckpointError as error:
            raise StartupError(f"resume: {error}") from error

    def _restore(self, resumed: Resumed) -> None:
        self.agent.load_checkpoint_payload(resumed.checkpoint, restore_rng=True)
        extra = resumed.extra
        self.env_steps = int(extra.get("env_steps", 0))
        self.episodes = int(extra.get("episodes", 0))
        if isinstance(extra.get("exploration_rng"), dict):
            self.rng.bit_generator.state = extra["exploration_rng"]
        self.resumed_from = str(resumed.path)
        if resumed.replay is not None:
            try:
                self.buffer.load_state_dict(resumed.replay)
                self.log.info(f"replay buffer restored: {len(self.buffer)} transitions")
            except ValueError as error:  # e.g. another buffer_size: the agent still resumes
                self.log.warning(f"replay buffer next to {resumed.path} not restored ({error}): starting empty")
        elif resumed.replay_problem:
            self.log.error(
                f"replay buffer not restored: {resumed.replay_problem}; networks, optimizers and counters are "
                f"resumed from {resumed.path}, the buffer starts empty"
            )
        elif self.params.save_replay_buffer:
            self.log.warning(f"no replay buffer saved next to {resumed.path}: starting with an empty one")

    # ------------------------------------------------------------------ the loop

    def run(self) -> None:
        p = self.params
        timing = self.timing
        with timing.phase("reset"):
            observation = self._start_episode()
        episode = EpisodeStats(index=self.episodes)
        # A transition is stored one tick late: the bridge may deliver an event of a tick with the
        # next one (its own stamp), so (before, action, after) waits for the tick after `after`.
        pending: tuple[Observation, np.ndarray, Observation] | None = None
        while observation is not None and not self._budget_spent():
            with timing.phase("act"):
                action = self._choose_action(observation)
                self.env.send(action, observation.stamp_ns)
            with timing.phase("learn"):
                self._train()  # overlaps the simulator's tick
            with timing.phase("wait"):
                following = self.env.observe()
            if following is None:
                break
            with timing.phase("store"):
                outcome = Outcome()
                if pending is not None:
                    before, pending_action, after = pending
                    outcome = self._finish_step(episode, before, pending_action, with_late_events(after, following))
                    if outcome.done:
                        self._end_episode(episode, outcome.reason)
                        episode = EpisodeStats(index=self.episodes)
                        pending = None
                if not outcome.done:
                    self.env_steps += 1
                    self.steps_this_run += 1
                    episode.steps += 1
                    episode.move_to(following.x, following.y)
                    pending = (observation, action, following)
            if outcome.done:
                with timing.phase("reset"):
                    observation = None if self._budget_spent() else self._start_episode()
            else:
                observation = following
        if pending is not None:  # the last transition, with the events known so far
            before, pending_action, after = pending
            outcome = self._finish_step(episode, before, pending_action, after)
            if outcome.done:
                self._end_episode(episode, outcome.reason)
        if episode.steps and self.stop.is_set():
            self.log.info(f"stopping in episode {episode.index} after {episode.steps} steps")
        if self._budget_spent():
            self.log.info(f"step budget of {p.total_steps} reached")

    def _finish_step(
        self, episode: EpisodeStats, before: Observation, action: np.ndarray, after: Observation
    ) -> Outcome:
        """Reward, outcome and storage of one transition, then the monitor and checkpoints."""
        outcome = self._step(episode, before, action, after)
        self.monitor.on_step()
        self.monitor.update(
            env_steps=self.env_steps,
            total_it=self.agent.total_it,
            buffer_size=len(self.buffer),
            episodes=self.episodes,
            **self.timing.as_dict(),
        )
        if self.checkpoints.due(self.env_steps):
            self.save_checkpoint()
        return outcome

    def _step(self, episode: EpisodeStats, before: Observation, action: np.ndarray, after: Observation) -> Outcome:
        """Reward and outcome of one action; stores the transition unless frames were missing."""
        p = self.params
        projection = after.projection
        outcome = classify_step(
            p.episode,
            episode_steps=episode.steps,
            lateral_m=projection.lateral,
            remaining_m=projection.remaining,
            collisions=after.collisions,
        )
        if after.gap is GapKind.BACKWARDS:
            return Outcome(truncated=True, reason="restart")
        if after.new_segment:
            # Frames are missing between `before` and `after`: no transition across them; the
            # replay buffer starts a new segment and the reward forgets what it cannot see.
            episode.gaps += 1
            with self.buffer_lock:
                self.buffer.start_episode(after.frame, after.vector)
            self.reward_fn.resync(projection.distance_along, after.speed)
            return outcome
        state = StepState.after(
            projection,
            outcome,
            speed=after.speed,
            heading_error=after.heading_error,
            action=action,
            lane_invasions=after.lane_invasions,
        )
        result = self.reward_fn.step(state)
        with self.buffer_lock:
            self.buffer.add(action, result.total, after.frame, after.vector, outcome.terminated, outcome.truncated)
        episode.transitions += 1
        episode.progress_m += projection.distance_along - before.projection.distance_along
        episode.add_reward(result.total, result.terms)
        return outcome

    def _choose_action(self, observation: Observation) -> np.ndarray:
        """Random actions until learning starts (uniform, or the correlated warm-up noise), then
        the policy plus exploration noise (td3_trainer.exploration)."""
        if self.agent.total_it == 0 and len(self.buffer) < self._learning_threshold():
            if self.td3_config.exploration_correlation > 0.0:
                return np.clip(self.warmup_noise.sample(), -1.0, 1.0).astype(np.float32)
            return self.rng.uniform(-1.0, 1.0, size=2).astype(np.float32)
        if self.learner is not None:
            action = self.learner.act(observation.frames, observation.vector)
        else:
            action = self.agent.act(observation.frames, observation.vector)
        return np.clip(action + self.exploration.sample(), -1.0, 1.0).astype(np.float32)

    def _learning_threshold(self) -> int:
        return max(int(self.params.learning_starts), int(self.params.batch_size))

    def _train(self) -> None:
        updates = int(self.params.updates_per_step)
        if not updates or len(self.buffer) < self._learning_threshold():
            return
        if self.learner is not None:
            self.learner.request(updates)
            return
        started = time.monotonic()
        batch_size = int(self.params.batch_size)
        for _ in range(updates):
            stats = self.agent.update(self.buffer.sample(batch_size))
            self.monitor.on_train(stats, self.agent.total_it)
        self._check_update_time(time.monotonic() - started)

    def _check_update_time(self, elapsed: float) -> None:
        """Say so when updates outlast the bridge's command wait (its frames are then dropped)."""
        self._slow_updates = self._slow_updates + 1 if elapsed > SLOW_UPDATES_S else 0
        if self._slow_updates == 3:  # not the first, warm-up update alone
            self.log.warning(
                f"the gradient updates of one step take {elapsed:.2f} s: a simulator or bridge that waits at most "
                "1 s for the next command ticks on its own meanwhile, and those frames are dropped (no "
                "transitions). Use a GPU, a smaller network or batch_size, or async_updates:=true"
            )

    def _start_episode(self) -> Observation | None:
        seed = int(self.params.episode_seed)
        observation = self.env.reset(seed + self.episodes if seed >= 0 else -1)
        if observation is None:
            return None
        with self.buffer_lock:
            self.buffer.start_episode(observation.frame, observation.vector)
        self.reward_fn.reset(observation.projection.distance_along, observation.speed)
        self.exploration.reset()
        self.warmup_noise.reset()
        return observation

    def _end_episode(self, episode: EpisodeStats, reason: str) -> None:
        episode.reason = reason
        self.monitor.on_episode(episode, self.env_steps)
        self.episodes += 1

    def _budget_spent(self) -> bool:
        total = int(self.params.total_steps)
        return total > 0 and self.env_steps >= total

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self) -> Path | None:
        p = self.params
        extra = {
            "env_steps": self.env_steps,
            "episodes": self.episodes,
            "run_name": self.run_name,
            "scenario": str(p.scenario),
            "replay_buffer_size": len(self.buffer),
            "exploration_rng": self.rng.bit_generator.state,
            "resumed_from": self.resumed_from or "",
            "wall_time_s": time.monotonic() - self.started,
            "saved_at": time.time(),
            "sync": self.env.counters.as_dict(),
        }
        with self.learner.lock if self.learner is not None else contextlib.nullcontext():
            payload = self.agent.checkpoint_payload(
                preprocess=p.preprocess.to_dict(),
                observation=p.observation.to_dict(),
                action=p.action.to_dict(),
                config=dict(p.values),
                extra=extra,
            )
        replay = self._replay_state if p.save_replay_buffer else None
        return self.checkpoints.save(payload, self.env_steps, replay)

    def _replay_state(self) -> dict:
        with self.buffer_lock:
            return self.buffer.state_dict()

    def _status(self) -> dict[str, Any]:
        """For /diagnostics (read from the executor's thread)."""
        counters = self.env.counters.as_dict()
        return {
            "waiting_for": self.env.waiting_for,
            "run": self.run_name,
            "last_checkpoint": str(self.checkpoints.last_saved or ""),
            "checkpoint_failures": self.checkpoints.failures,
            **counters,
        }

    def shutdown(self) -> None:
        """Brake, final checkpoint (unless this step is already saved), close the monitor."""
        if self.learner is not None:
            self.learner.close()  # lets a running update finish
        try:
            self.env.brake()
        except Exception as error:  # the context may already be gone
            self.log.debug(f"no final brake command: {error}")
        if self.steps_this_run and self.checkpoints.last_saved_step != self.env_steps:
            self.save_checkpoint()
        elif not self.steps_this_run:
            self.log.info("no environment step taken in this run: no new checkpoint")
        elapsed = time.monotonic() - self.started
        rate = self.steps_this_run / elapsed if elapsed > 0 else 0.0
        self.log.info(
            f"done: {self.env_steps} env steps ({self.steps_this_run} in this run, {rate:.1f} steps/s), "
            f"{self.agent.total_it} updates, {self.episodes} episodes; sync {self.env.counters.as_dict()}"
        )
        self.monitor.close()


def with_late_events(after: Observation, following: Observation) -> Observation:
    """`after` with the events of its tick that came only with the next one."""
    if not (following.late_collisions or following.late_lane_invasions):
        return after
    return replace(
        after,
        collisions=after.collisions + following.late_collisions,
        lane_invasions=after.lane_invasions + following.late_lane_invasions,
    )


def _install_signal_handlers(stop: threading.Event) -> None:
    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt  # a second Ctrl-C: do not wait any longer
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def main(args: list[str] | None = None) -> int:
    stop = threading.Event()
    # Our own handlers: rclpy's would shut the context down under the running loop.
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    _install_signal_handlers(stop)
    node: TrainerNode | None = None
    executor = SingleThreadedExecutor()
    spinner: threading.Thread | None = None
    code = EXIT_OK
    try:
        try:
            node = TrainerNode(stop)
        except StartupError as error:
            rclpy.logging.get_logger("td3_trainer").fatal(str(error))
            return EXIT_CONFIG
        executor.add_node(node)
        spinner = threading.Thread(target=_spin, args=(executor, stop), name="ros-executor", daemon=True)
        spinner.start()
        try:
            node.run()
        finally:
            node.shutdown()
        if node.env.gave_up:
            code = EXIT_NO_EPISODE
    except KeyboardInterrupt:
        code = 130
    finally:
        executor.shutdown(timeout_sec=1.0)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        if spinner is not None:
            spinner.join(timeout=2.0)
    return code


def _spin(executor: SingleThreadedExecutor, stop: threading.Event) -> None:
    try:
        executor.spin()
    except (ExternalShutdownException, rclpy.executors.ShutdownException):
        pass
    except Exception as error:  # a failing callback must not leave the loop waiting forever
        rclpy.logging.get_logger("td3_trainer").fatal(f"ROS executor failed: {error!r}")
        stop.set()


if __name__ == "__main__":
    sys.exit(main())
