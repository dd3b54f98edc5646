"""Checkpoints of a training run: when to save, where, how many to keep, and resuming.

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

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from td3_core.checkpoint import (
    BEST_POINTER,
    CheckpointError,
    atomic_write_bytes,
    checkpoint_name,
    list_checkpoints,
    load_checkpoint_file,
    prune_checkpoints,
    resolve_checkpoint,
    save_checkpoint,
    validate_training_state,
    write_latest_pointer,
    write_pointer,
)

REPLAY_SUFFIX = ".replay.pt"
EVAL_SUFFIX = ".eval.json"  # an evaluation's results, next to the checkpoint of the evaluated policy
DAMAGED_SUFFIX = ".damaged"
REPLAY_FORMAT = "td3_drive.replay/1"
Log = Callable[[str], None]


def replay_path(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.stem + REPLAY_SUFFIX)


def eval_path(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.stem + EVAL_SUFFIX)


def default_run_name() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def _atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save streamed to a temp file, fsync, rename: no in-memory copy of a big buffer."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            try:
                torch.save(obj, handle)
            except RuntimeError as error:  # torch reports a failed write as "unexpected pos ..."
                cause = _os_error_in(error)
                if cause is None:
                    raise
                raise cause from error
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _os_error_in(error: BaseException) -> OSError | None:
    """The operating system's error behind `error` (its cause or context chain), if any."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


@dataclass(frozen=True)
class Resumed:
    path: Path
    checkpoint: dict  # the loaded payload
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
                _atomic_torch_save({"format": REPLAY_FORMAT, "env_steps": env_steps, "state": replay_state()}, replay)
                wrote_replay = True
            save_checkpoint(payload, path)
            if evaluation is not None:
                atomic_write_bytes(eval_path(path), (json.dumps(dict(evaluation), indent=1) + "\n").encode())
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
            for removed in prune_checkpoints(self.run_dir, self.keep_last):
                replay_path(removed).unlink(missing_ok=True)
                eval_path(removed).unlink(missing_ok=True)
            kept = {p.stem for p in list_checkpoints(self.run_dir)}
            for replay in self.run_dir.glob(f"*{REPLAY_SUFFIX}"):
                if replay.name[: -len(REPLAY_SUFFIX)] not in kept:
                    replay.unlink(missing_ok=True)
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
    meta = validate_training_state(checkpoint, path)
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
    return Resumed(path, checkpoint, dict(extra), replay, problem)


def _keep_aside(path: Path) -> str:
    """Rename a damaged replay file so no prune deletes it and no later resume trips on it."""
    target = path.with_name(path.name + DAMAGED_SUFFIX)
    try:
        os.replace(path, target)
    except OSError as error:
        return f"it could not be renamed ({error}) and stays as it is"
    return f"kept as {target}"


def load_replay(path: Path) -> dict | None:
    """The saved buffer state, or None when there is none (the caller logs and starts empty)."""
    if not path.is_file():
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"replay buffer '{path}' is unreadable: {error}") from error
    if not isinstance(data, dict) or data.get("format") != REPLAY_FORMAT or not isinstance(data.get("state"), dict):
        raise CheckpointError(f"replay buffer '{path}' is not a {REPLAY_FORMAT} file")
    return data["state"]
