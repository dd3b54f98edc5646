"""Checkpoints of a training run: when to save, how many to keep, and resuming (the format, the
files and the atomic writer are td3_core.checkpoint's).

Files: `<models_dir>/<run>/td3_<scenario>_step_<N>.pth`, N = environment steps taken (the
schedule checkpoint_every counts, and the step budget counts). The agent's own update counter
(`total_it`) is inside the file. With save_replay_buffer the buffer goes to
`td3_<scenario>_step_<N>.replay.pt` next to it, written first, so a checkpoint that `latest`
points at always has its buffer complete beside it. Every write is atomic; a failed save (disk
full, unwritable directory) is logged with the operating system's reason ("No space left on
device", not torch's internal one) and training goes on with the previous files intact.

A replay file that cannot be read at resume (truncated, damaged, another format) does not stop
the resume: networks, optimizers and counters are restored from the checkpoint, the buffer
starts empty, and the file is kept, renamed to `<name>.damaged`, with an ERROR naming both.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from td3_core.checkpoint import (
    BEST_POINTER,
    CheckpointError,
    TrainingState,
    checkpoint_name,
    load_checkpoint_file,
    load_replay,
    prune_checkpoints,
    read_metadata,
    read_training_state,
    replay_path,
    resolve_checkpoint,
    save_checkpoint,
    save_evaluation,
    save_replay,
    training_payload,
    write_latest_pointer,
    write_pointer,
)

DAMAGED_SUFFIX = ".damaged"
Log = Callable[[str], None]


def run_payload(state: TrainingState, params, extra: Mapping[str, Any]) -> dict:
    """The checkpoint of a run: the agent's `state` with the run's observation, action mapping and
    every parameter (td3_trainer.params.TrainerParams) as its config."""
    return training_payload(
        state,
        preprocess=params.preprocess.to_dict(),
        observation=params.observation.to_dict(),
        action=params.action.to_dict(),
        config=dict(params.values),
        extra=extra,
    )


def default_run_name() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


@dataclass(frozen=True)
class Resumed:
    path: Path
    checkpoint: dict  # the loaded payload
    state: TrainingState  # the agent's part of it, validated
    extra: dict  # counters and provenance saved by the trainer
    replay: dict | None  # the replay buffer's state, when one was saved and asked for
    replay_problem: str = ""  # why a saved buffer could not be restored (the file was kept aside)


class CheckpointManager:
    def __init__(
        self,
        run_dir: Path,
        scenario: str,
        every: int,
        keep_last: int,
        save_replay_buffer: bool,
        info: Log = print,
        error: Log = print,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.scenario = scenario
        self.every = every
        self.keep_last = keep_last
        self.save_replay_buffer = save_replay_buffer
        self._info = info
        self._error = error
        self.last_saved: Path | None = None
        self.last_saved_step: int | None = None
        self.failures = 0

    def due(self, env_steps: int) -> bool:
        return self.every > 0 and env_steps > 0 and env_steps % self.every == 0 and env_steps != self.last_saved_step

    def save(
        self,
        payload: Mapping[str, Any],
        env_steps: int,
        replay_state: Callable[[], dict] | None,
        evaluation: Mapping[str, float] | None = None,
        best: bool = False,
    ) -> Path | None:
        """Write one checkpoint (+ buffer, + evaluation results), move `latest` (and `best` when
        `best`), prune; None when it could not be saved."""
        path = self.run_dir / checkpoint_name(self.scenario, env_steps)
        replay = replay_path(path)
        wrote_replay = False
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if self.save_replay_buffer and replay_state is not None:
                save_replay(path, env_steps, replay_state())
                wrote_replay = True
            save_checkpoint(payload, path)
            if evaluation is not None:
                save_evaluation(path, evaluation)
            write_latest_pointer(self.run_dir, path)
            if best:
                write_pointer(self.run_dir, path, BEST_POINTER)
                self._info(f"best checkpoint (evaluation score {evaluation and evaluation.get('score')}): {path}")
        except Exception as error:  # disk full, permissions, a file in the way: keep training
            self.failures += 1
            previous = f"; the previous checkpoint {self.last_saved} is intact" if self.last_saved else ""
            self._error(f"checkpoint at step {env_steps} NOT saved to {path}: {error}{previous}; training goes on")
            if wrote_replay and not path.exists():
                replay.unlink(missing_ok=True)
            return None
        self.last_saved, self.last_saved_step = path, env_steps
        self._info(f"checkpoint saved: {path}" + (f" (+ replay buffer {replay.name})" if wrote_replay else ""))
        self._prune()
        return path

    def _prune(self) -> None:
        try:
            prune_checkpoints(self.run_dir, self.keep_last)
        except OSError as error:
            self._error(f"pruning old checkpoints in {self.run_dir} failed: {error}")


def locate_resume(spec: str, models_dir: Path | str) -> Path:
    """The checkpoint `resume` names (a .pth, a run directory or 'latest'); CheckpointError if none."""
    return resolve_checkpoint(spec, models_dir)


def load_resume(path: Path, with_replay: bool, expected: Mapping[str, Any] | None = None) -> Resumed:
    """Load and check a checkpoint to resume from (and its replay buffer when asked for).

    `expected` maps architecture/preprocessing/observation/action to what the parameters
    give; a checkpoint trained with something else is refused with the difference named.
    """
    checkpoint = load_checkpoint_file(path)
    state = read_training_state(checkpoint, path)  # validates every state dict
    meta = read_metadata(checkpoint, path)
    if expected is not None:
        found = {
            "architecture": meta.architecture.to_dict(),
            "preprocessing": meta.preprocess.to_dict(),
            "observation": meta.observation.to_dict(),
            "action": meta.action.to_dict(),
        }
        for key, want in expected.items():
            have = found[key]
            diff = {k: (have.get(k), v) for k, v in want.items() if have.get(k) != v}
            if diff and key != "action":  # the action mapping may change between runs; the rest may not
                detail = ", ".join(f"{k}: checkpoint {a!r} vs parameters {b!r}" for k, (a, b) in diff.items())
                raise CheckpointError(f"checkpoint '{path}' was trained with another {key} ({detail})")
    extra = checkpoint.get("extra") if isinstance(checkpoint.get("extra"), dict) else {}
    replay, problem = None, ""
    if with_replay:
        try:
            replay = load_replay(replay_path(path))
        except CheckpointError as error:
            problem = f"{error}; {_keep_aside(replay_path(path))}"
    return Resumed(path, checkpoint, state, dict(extra), replay, problem)


def _keep_aside(path: Path) -> str:
    """Rename a damaged replay file so no prune deletes it and no later resume trips on it."""
    target = path.with_name(path.name + DAMAGED_SUFFIX)
    try:
        os.replace(path, target)
    except OSError as error:
        return f"it could not be renamed ({error}) and stays as it is"
    return f"kept as {target}"
