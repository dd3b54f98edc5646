"""TD3 trainer node: learns to drive from the camera over the carla-ros-bridge interface.

    python -m td3_trainer.node --ros-args --params-file config/trainer.yaml [-p name:=value ...]

The ROS executor spins on a background thread (callbacks only store messages); the training
loop (td3_trainer.loop, over RosEnv) runs on the main thread. This module is set-up, parameters,
the loop's monitoring and checkpoint hooks, and shutdown.

SIGINT/SIGTERM set a flag: the loop stops at the next wait, the car gets a brake command, a
final checkpoint is written and the node exits with status 0. Invalid parameters or an
unusable resume checkpoint stop it at start-up with status 2 and a message naming the cause.
"""

from __future__ import annotations

import contextlib
import math
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
from td3_core.device import DeviceError, select_device
from td3_trainer import params as trainer_params
from td3_trainer.checkpointing import (
    CheckpointManager,
    Resumed,
    default_run_name,
    load_resume,
    locate_resume,
    run_payload,
)
from td3_trainer.env_client import RosEnv
from td3_trainer.fleet import Fleet, FleetEnv, VehicleReplay
from td3_trainer.learner_thread import BackgroundLearner
from td3_trainer.loop import Evaluation, LoopHooks, LoopSettings, SharedSteps, TrainingLoop
from td3_trainer.monitor import Monitor
from td3_trainer.params import ParamError, TrainerParams

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_NO_EPISODE = 3  # no episode could be started (a reset that never settled, no start poses)


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


class TrainerNode(Node):
    def __init__(self, stop: threading.Event) -> None:
        super().__init__("td3_trainer")
        self.stop = stop
        try:
            self.params: TrainerParams = trainer_params.validate(trainer_params.declare(self))
        except ParamError as error:
            raise StartupError(f"invalid {error}") from error
        p = self.params
        self.log = self.get_logger()
        torch.set_num_threads(int(p.num_threads) or default_threads())
        torch.manual_seed(int(p.seed))
        try:
            self.device = select_device(str(p.device))
        except DeviceError as error:
            raise StartupError(f"invalid parameter 'device': {error}") from error
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
        self.roles = trainer_params.role_names(str(p.role_name))
        arch = p.architecture

        def replay(capacity: int, seed: int) -> FrameReplayBuffer:
            return FrameReplayBuffer(
                capacity,
                frame_shape=(arch.image_size, arch.image_size),
                frame_stack=arch.frame_stack,
                vector_dim=arch.vector_dim,
                action_dim=arch.action_dim,
                device=str(self.device),
                seed=seed,
                fill_level=p.preprocess.constant_fill,  # stacks rebuilt as the observation builder makes them
                n_step=self.td3_config.n_step,
                gamma=self.td3_config.gamma,
            )

        self.rng = np.random.default_rng(int(p.seed))
        settings = LoopSettings.of(p)
        # Several vehicles call the hooks from their own threads: one at a time.
        self._hook_lock = threading.RLock()

        def guarded(hook):
            def call(*args):
                with self._hook_lock:
                    return hook(*args)

            return call

        hooks = LoopHooks(
            on_step=guarded(self._after_step),
            on_episode=guarded(lambda stats, env_steps: self.monitor.on_episode(stats, env_steps)),
            on_train=lambda stats, total_it: self.monitor.on_train(stats, total_it),
            info=self.log.info,
            warn=self.log.warning,
            on_evaluation=guarded(self._on_evaluation),
        )
        if len(self.roles) == 1:
            self.buffer = replay(int(p.buffer_size), int(p.seed))
            self.loop = TrainingLoop(self.agent, self.buffer, self.td3_config, settings, self.rng, hooks, stop=stop)
        else:
            # One stream per vehicle (stacks never mix vehicles); the first vehicle evaluates.
            streams = [replay(int(p.buffer_size) // len(self.roles), int(p.seed) + k) for k in range(len(self.roles))]
            self.buffer = VehicleReplay(streams, int(p.seed))
            shared, lock = SharedSteps(), threading.Lock()
            loops = [
                TrainingLoop(
                    self.agent,
                    stream,
                    self.td3_config,
                    settings if k == 0 else replace(settings, eval_every=0),
                    self.rng if k == 0 else np.random.default_rng(int(p.seed) + k),
                    hooks,
                    stop=stop,
                    buffer_lock=lock,
                    pool=self.buffer,
                    shared_steps=shared,
                )
                for k, stream in enumerate(streams)
            ]
            self.loop = Fleet(loops, shared, stop)
        self.resumed_from: str | None = None
        self.best_score = math.nan  # the best evaluation score of this run so far
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
        if len(self.roles) == 1:
            self.env = RosEnv(self, p, stop)
        else:
            self.env = FleetEnv([RosEnv(self, trainer_params.for_role(p, role), stop) for role in self.roles])
        self.monitor = Monitor(
            self,
            run_name=run_name,
            role_name=str(p.role_name),
            log_dir=str(p.log_dir),
            total_steps=int(p.total_steps),
            start_steps=self.loop.env_steps,
            stats_period_s=float(p.stats_period_s),
            progress=bool(p.progress),
            tensorboard=bool(p.tensorboard),
            status=self._status,
        )
        if p.async_updates or len(self.roles) > 1:  # several vehicles: one learner thread for all
            learner = BackgroundLearner(
                self.agent,
                self.buffer,
                self.loop.buffer_lock,
                int(p.batch_size),
                self.monitor.on_train,
                self._learner_failed,
            )
            for loop in getattr(self.loop, "loops", [self.loop]):
                loop.learner = learner
            self.loop.learner = learner
        self.started = time.monotonic()
        self.log.info(
            f"run '{run_name}' → {self.run_dir}; device {self.device}; "
            f"{'resumed from ' + self.resumed_from if self.resumed_from else 'new run'} "
            f"at env step {self.loop.env_steps}, "
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
        self.agent.restore(resumed.state, restore_rng=True)
        extra = resumed.extra
        self.loop.env_steps = int(extra.get("env_steps", 0))
        self.loop.episodes = int(extra.get("episodes", 0))
        self.best_score = float(extra.get("best_score", math.nan))
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
        self.loop.run(self.env)
        if self.loop.budget_spent():
            self.log.info(f"step budget of {self.params.total_steps} reached")

    def _after_step(self) -> None:
        loop = self.loop
        self.monitor.on_step()
        self.monitor.update(
            env_steps=loop.env_steps,
            total_it=self.agent.total_it,
            buffer_size=len(self.buffer),
            episodes=loop.episodes,
            **loop.timing.as_dict(),
        )
        if self.checkpoints.due(loop.env_steps):
            self.save_checkpoint()

    def _on_evaluation(self, evaluation: Evaluation, env_steps: int) -> None:
        """A checkpoint of the evaluated policy with its results beside it; `best` moves to it when
        its score (the mean evaluation return) beats every earlier one of the run."""
        score = evaluation.score
        better = math.isfinite(score) and not (score <= self.best_score)  # NaN best: the first one
        if better:
            self.best_score = score
        values = {"env_steps": env_steps, **evaluation.as_dict(), "score": score, "best_score": self.best_score}
        self.save_checkpoint(evaluation=values, best=better)
        self.monitor.on_evaluation(values)

    def _learner_failed(self, error: BaseException) -> None:
        self.log.fatal(f"gradient update failed: {error!r}")
        self.stop.set()

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self, evaluation: dict[str, float] | None = None, best: bool = False) -> Path | None:
        p = self.params
        extra = {
            "env_steps": self.loop.env_steps,
            "episodes": self.loop.episodes,
            "run_name": self.run_name,
            "scenario": str(p.scenario),
            "replay_buffer_size": len(self.buffer),
            "exploration_rng": self.rng.bit_generator.state,
            "resumed_from": self.resumed_from or "",
            "wall_time_s": time.monotonic() - self.started,
            "saved_at": time.time(),
            "sync": self.env.counters.as_dict(),
            "best_score": self.best_score,
            "evaluation": evaluation or {},
        }
        learner = self.loop.learner
        with learner.lock if learner is not None else contextlib.nullcontext():
            payload = run_payload(self.agent.state(), p, extra)
        replay = self._replay_state if p.save_replay_buffer else None
        return self.checkpoints.save(payload, self.loop.env_steps, replay, evaluation, best)

    def _replay_state(self) -> dict:
        with self.loop.buffer_lock:
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
        loop = self.loop
        if loop.learner is not None:
            loop.learner.close()  # lets a running update finish
        try:
            self.env.brake()
        except Exception as error:  # the context may already be gone
            self.log.debug(f"no final brake command: {error}")
        if loop.steps_this_run and self.checkpoints.last_saved_step != loop.env_steps:
            self.save_checkpoint()
        elif not loop.steps_this_run:
            self.log.info("no environment step taken in this run: no new checkpoint")
        elapsed = time.monotonic() - self.started
        rate = loop.steps_this_run / elapsed if elapsed > 0 else 0.0
        self.log.info(
            f"done: {loop.env_steps} env steps ({loop.steps_this_run} in this run, {rate:.1f} steps/s), "
            f"{self.agent.total_it} updates, {loop.episodes} episodes; sync {self.env.counters.as_dict()}"
        )
        self.monitor.close()


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
