"""Unified checkpoints: one .pth with everything TD3 needs to resume and the driver needs to drive.

Keys of the original format (kept): actor_cnn_state_dict, critic_cnn_state_dict,
actor_state_dict, critic_state_dict, the four optimizer state dicts, total_it, config.
Added in format 2: format_version, the four target networks, architecture, preprocessing,
observation and action parameters (so the driver rebuilds exactly what was trained), RNG states,
counters and provenance. A file without format_version is read as the original format (1).

Reading never unpickles objects: torch.load(weights_only=True), then a schema check of keys,
shapes, dtypes and finiteness against networks built from the file's own architecture.
This module owns the format: what a learner's state becomes in a file (TrainingState,
training_payload, read_training_state), the file names and pointers (`latest`, `best`), and the
one atomic writer (atomic_write: temp file in the same directory, fsync, rename, fsync of the
directory) that every file of a run goes through; a pointer is replaced the same way, only after
its checkpoint is complete. td3_trainer.checkpointing decides when to save and what to prune.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch

from td3_core import legacy_formats
from td3_core.actions import ActionConfig
from td3_core.networks import Architecture, Policy, build_cnn, build_critic
from td3_core.preprocessing import PreprocessConfig
from td3_core.safe_files import (
    MAX_CHECKPOINT_BYTES,
    UnsafeFileError,
    check_torch_archive,
    open_regular,
    read_small_text,
)
from td3_core.vector_state import ObservationConfig

FORMAT_VERSION = 2
SUPPORTED_FORMATS = (1, 2)
LATEST_POINTER = "latest"
BEST_POINTER = "best"  # the checkpoint with the best evaluation score of its run
POINTERS = (LATEST_POINTER, BEST_POINTER)
CHECKPOINT_GLOB = "td3_*_step_*.pth"
# Beside a checkpoint: its replay buffer (save_replay_buffer) and its evaluation's results.
REPLAY_SUFFIX = ".replay.pt"
REPLAY_FORMAT = "td3_drive.replay/1"
EVAL_SUFFIX = ".eval.json"
_STEP_RE = re.compile(r"_step_(\d+)\.pth$")

NETWORK_KEYS = ("actor_cnn_state_dict", "critic_cnn_state_dict", "actor_state_dict", "critic_state_dict")
OPTIMIZER_KEYS = (
    "actor_cnn_optimizer_state_dict",
    "critic_cnn_optimizer_state_dict",
    "actor_optimizer_state_dict",
    "critic_optimizer_state_dict",
)
SEED_KEYS = (*NETWORK_KEYS, *OPTIMIZER_KEYS, "total_it", "config")
TARGET_KEYS = (
    "actor_cnn_target_state_dict",
    "critic_cnn_target_state_dict",
    "actor_target_state_dict",
    "critic_target_state_dict",
)
METADATA_KEYS = ("format_version", "architecture", "preprocessing", "observation", "action", "rng_state")
POLICY_KEYS = ("actor_cnn_state_dict", "actor_state_dict")
# What a file may ask to be built: generous for this project's networks, far from gigabytes.
ARCHITECTURE_BOUNDS = (
    ("frame_stack", 1, 32),
    ("image_size", 1, 1024),
    ("feature_dim", 1, 8192),
    ("vector_dim", 0, 4096),
    ("action_dim", 2, 2),  # (steer, acceleration): what the driver and the trainer act with
    ("hidden_dim", 1, 8192),
    ("cnn_dropout", 0.0, 1.0),
)
MAX_MODEL_PARAMETERS = 50_000_000  # policy + critic side: 200 MB per float32 copy (defaults: ~3.6 M)
MAX_WEIGHT_MAGNITUDE = 1e6  # trained weights are O(1); beyond this float32 products overflow
# A policy-only ("deploy") file: what the driver needs and nothing else (no critic, targets,
# optimizers, RNG states). The driver loads it like any checkpoint; resuming refuses it.
CONTENTS_KEY = "contents"
POLICY_ONLY = "policy_only"
# Provenance kept from the training run's "extra" (its training state, e.g. RNG states, is not).
PROVENANCE_KEYS = ("env_steps", "episodes", "run_name", "scenario", "resumed_from", "wall_time_s", "saved_at", "sync")


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message says which file and why."""


@dataclass(frozen=True)
class CheckpointMeta:
    path: Path | None
    format_version: int
    architecture: Architecture
    preprocess: PreprocessConfig
    observation: ObservationConfig
    action: ActionConfig
    total_it: int


def checkpoint_name(scenario: str, step: int) -> str:
    return f"td3_{scenario}_step_{step}.pth"


# --------------------------------------------------------------------------- writing


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path | str, write: Callable[[BinaryIO], object]) -> Path:
    """The one writer of this format's files (checkpoints, replay buffers, evaluation results,
    pointers): `write(handle)` into a temp file beside `path`, fsync, rename, fsync of the
    directory, so that a reader (or a restart after a crash) sees the old file or the whole new one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: Path | str, data: bytes) -> Path:
    return atomic_write(path, lambda handle: handle.write(data))


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


def save_torch_file(obj: Any, path: Path | str) -> Path:
    """torch.save streamed into atomic_write (no in-memory copy of a large object, e.g. a
    replay buffer); a failed write (disk full) is raised as the OSError behind it."""

    def write(handle: BinaryIO) -> None:
        try:
            torch.save(obj, handle)
        except RuntimeError as error:  # torch reports a failed write as "unexpected pos ..."
            cause = _os_error_in(error)
            if cause is None:
                raise
            raise cause from error

    return atomic_write(path, write)


def save_checkpoint(payload: Mapping[str, Any], path: Path | str) -> Path:
    """Write a checkpoint payload (training_payload, policy_only_payload) to `path`, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_torch_file(dict(payload), path)


def replay_path(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.stem + REPLAY_SUFFIX)


def eval_path(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.stem + EVAL_SUFFIX)


def save_replay(checkpoint: Path, env_steps: int, state: Mapping[str, Any]) -> Path:
    """The replay buffer's state beside `checkpoint` (written before it: see CheckpointManager)."""
    data = {"format": REPLAY_FORMAT, "env_steps": env_steps, "state": dict(state)}
    return save_torch_file(data, replay_path(checkpoint))


def load_replay(path: Path) -> dict | None:
    """A saved buffer state (weights_only), None when there is none; CheckpointError when unusable."""
    if not path.is_file():
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"replay buffer '{path}' is unreadable: {error}") from error
    if not isinstance(data, dict) or data.get("format") != REPLAY_FORMAT or not isinstance(data.get("state"), dict):
        raise CheckpointError(f"replay buffer '{path}' is not a {REPLAY_FORMAT} file")
    return data["state"]


def save_evaluation(checkpoint: Path, results: Mapping[str, Any]) -> Path:
    """An evaluation's results, as JSON beside the checkpoint of the evaluated policy."""
    return atomic_write_bytes(eval_path(checkpoint), (json.dumps(dict(results), indent=1) + "\n").encode())


def write_pointer(run_dir: Path | str, checkpoint: Path | str, pointer: str = LATEST_POINTER) -> None:
    """Point `<run_dir>/<pointer>` (latest, best) at `checkpoint` (a file name relative to run_dir),
    atomically."""
    run_dir = Path(run_dir)
    atomic_write_bytes(run_dir / pointer, (Path(checkpoint).name + "\n").encode())


def write_latest_pointer(run_dir: Path | str, checkpoint: Path | str) -> None:
    write_pointer(run_dir, checkpoint, LATEST_POINTER)


def checkpoint_step(path: Path) -> int:
    match = _STEP_RE.search(path.name)
    return int(match.group(1)) if match else -1


def list_checkpoints(run_dir: Path | str) -> list[Path]:
    """Complete checkpoints of a run (temp files excluded), oldest step first."""
    return sorted(Path(run_dir).glob(CHECKPOINT_GLOB), key=lambda p: (checkpoint_step(p), p.name))


def prune_checkpoints(run_dir: Path | str, keep_last: int) -> list[Path]:
    """Delete all but the newest `keep_last` checkpoints (with the files beside them), never one
    that `latest` or `best` points at."""
    if keep_last <= 0:
        return []
    run_dir = Path(run_dir)
    protected = {target.resolve() for target in (read_pointer(run_dir, name) for name in POINTERS) if target}
    removed = []
    for path in list_checkpoints(run_dir)[:-keep_last]:
        if path.resolve() in protected:
            continue
        path.unlink(missing_ok=True)
        replay_path(path).unlink(missing_ok=True)
        eval_path(path).unlink(missing_ok=True)
        removed.append(path)
    kept = {p.stem for p in list_checkpoints(run_dir)}
    for replay in run_dir.glob(f"*{REPLAY_SUFFIX}"):  # a buffer whose checkpoint was never written
        if replay.name[: -len(REPLAY_SUFFIX)] not in kept:
            replay.unlink(missing_ok=True)
    return removed


# --------------------------------------------------------------------------- finding


def read_latest_pointer(run_dir: Path) -> Path | None:
    return read_pointer(run_dir, LATEST_POINTER)


def read_pointer(run_dir: Path | str, pointer: str) -> Path | None:
    """The checkpoint `<run_dir>/<pointer>` names, if it is there."""
    pointer = Path(run_dir) / pointer
    try:
        name = read_small_text(pointer).strip()  # never blocks on a FIFO, never reads a huge file whole
    except (OSError, UnicodeDecodeError):
        return None
    if not name or "/" in name or name.startswith("."):
        return None
    target = Path(run_dir) / name
    return target if target.is_file() else None


def resolve_checkpoint(spec: str | Path, models_dir: Path | str = "models") -> Path:
    """A .pth path, a run directory (its `latest`), "latest" (the newest checkpoint of the runs
    under models_dir, or of models_dir itself when it is a run), "best" (the `best` of the run
    whose `latest` is newest), or a pointer file `<run>/latest`, `<run>/best`."""
    spec_str = str(spec).strip()
    if not spec_str:
        raise CheckpointError("empty checkpoint parameter: give a .pth path, a run directory, 'latest' or 'best'")
    if spec_str in POINTERS:
        return _newest_run_pointer(Path(models_dir), spec_str)
    path = Path(spec_str)
    if path.name in POINTERS and path.parent.is_dir():
        found = read_pointer(path.parent, path.name)
        if found is None:
            raise CheckpointError(f"'{path}' names no complete checkpoint")
        return found
    try:
        if path.is_dir():
            found = read_latest_pointer(path) or next(reversed(list_checkpoints(path)), None)
            if found is None:
                raise CheckpointError(f"run directory '{path}' holds no checkpoint")
            return found
    except OSError as error:  # symlink loops, permissions
        raise CheckpointError(f"cannot read '{path}': {error}") from error
    return path


def _newest_run_pointer(root: Path, pointer: str) -> Path:
    if not root.is_dir():
        raise CheckpointError(f"no checkpoint: models directory '{root}' does not exist")
    runs = [d for d in root.iterdir() if d.is_dir() and read_latest_pointer(d)]
    runs += [root] if read_latest_pointer(root) else []
    if not runs:
        raise CheckpointError(f"no run under '{root}' has a complete checkpoint ('latest' pointer)")
    newest = max(runs, key=lambda run: read_latest_pointer(run).stat().st_mtime_ns)  # type: ignore[union-attr]
    if pointer == LATEST_POINTER:
        return read_latest_pointer(newest)  # type: ignore[return-value]
    found = read_pointer(newest, pointer)
    if found is None:
        raise CheckpointError(f"the newest run '{newest}' has no '{pointer}' checkpoint (no evaluation yet?)")
    return found


# --------------------------------------------------------------------------- reading


def load_checkpoint_file(path: Path | str, map_location: str | torch.device = "cpu") -> dict:
    """torch.load with weights_only=True of a bounded regular file; every failure is a CheckpointError."""
    path = Path(path)
    try:
        if not path.exists():
            raise CheckpointError(f"checkpoint '{path}' does not exist")
        if path.is_dir():
            raise CheckpointError(f"checkpoint '{path}' is a directory, not a file")
        handle = open_regular(path, MAX_CHECKPOINT_BYTES)
    except OSError as error:
        raise CheckpointError(f"cannot read checkpoint '{path}': {error}") from error
    with handle:
        if os.fstat(handle.fileno()).st_size == 0:
            raise CheckpointError(f"checkpoint '{path}' is empty")
        return _load_archive(handle, path, map_location)


def _load_archive(handle, path: Path, map_location: str | torch.device) -> dict:
    try:
        check_torch_archive(handle, path)
    except UnsafeFileError as error:
        raise CheckpointError(f"checkpoint refused: {error}") from error
    except (zipfile.BadZipFile, OSError) as error:
        raise CheckpointError(f"checkpoint '{path}' is corrupt or truncated: {error}") from error
    except ValueError as error:  # not a zip archive at all
        raise CheckpointError(f"checkpoint '{path}': {error}") from error
    try:
        data = torch.load(handle, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"checkpoint '{path}' holds objects that are not plain tensors/containers; refused "
            f"without running them ({first_line})"
        ) from error
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError) as error:
        raise CheckpointError(f"checkpoint '{path}' is corrupt or truncated: {error}") from error
    except Exception as error:  # any other failure of the loader is still a refusal, not a crash
        raise CheckpointError(f"checkpoint '{path}' could not be loaded: {type(error).__name__}: {error}") from error
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint '{path}' holds a {type(data).__name__}, expected a dict")
    return unify_original_system(data, path)


def unify_original_system(ckpt: dict, path: Path | None = None) -> dict:
    """An av_td3_system file → our format 2 (td3_core.legacy_formats); any other payload unchanged."""
    if not legacy_formats.is_original_system(ckpt):
        return ckpt
    try:
        return legacy_formats.unify(ckpt, path)
    except legacy_formats.OriginalFormatError as error:
        raise CheckpointError(f"checkpoint '{path}': {error}") from error


def _state_dict(ckpt: Mapping, key: str, where: str) -> Mapping[str, torch.Tensor]:
    value = ckpt.get(key)
    if not isinstance(value, Mapping):
        raise CheckpointError(f"{where}: '{key}' is missing or not a state dict")
    return value


def read_metadata(ckpt: Mapping, path: Path | None = None) -> CheckpointMeta:
    """Metadata of a checkpoint; an original-format file gets defaults for what it lacks."""
    where = f"checkpoint '{path}'" if path else "checkpoint"
    version = ckpt.get("format_version", 1)
    if not isinstance(version, int) or version not in SUPPORTED_FORMATS:
        raise CheckpointError(f"{where}: format_version {version!r} not supported (supported: {SUPPORTED_FORMATS})")
    try:
        if version == 1:
            arch = _legacy_architecture(ckpt, where)
            preprocess = PreprocessConfig(image_size=arch.image_size, frame_stack=arch.frame_stack)
            num_waypoints = max(0, (arch.vector_dim - 3) // 2)
            observation = ObservationConfig(use_vector_state=arch.vector_dim > 0, num_waypoints=num_waypoints)
            action = ActionConfig()
        else:
            for key in ("architecture", "preprocessing", "observation", "action"):
                if not isinstance(ckpt.get(key), Mapping):
                    raise CheckpointError(f"{where}: '{key}' is missing or not a dict")
            arch = Architecture.from_dict(ckpt["architecture"])
            preprocess = PreprocessConfig.from_dict(ckpt["preprocessing"])
            observation = ObservationConfig.from_dict(ckpt["observation"])
            action = ActionConfig.from_dict(ckpt["action"])
    except (TypeError, ValueError, OverflowError, AttributeError, IndexError, KeyError) as error:
        raise CheckpointError(f"{where}: invalid metadata: {type(error).__name__}: {error}") from error
    check_architecture(arch, where)
    if (preprocess.frame_stack, preprocess.image_size) != (arch.frame_stack, arch.image_size):
        raise CheckpointError(f"{where}: preprocessing {preprocess} does not match architecture {arch}")
    if observation.vector_dim != arch.vector_dim:
        raise CheckpointError(
            f"{where}: observation gives a vector of {observation.vector_dim}, the networks expect {arch.vector_dim}"
        )
    total_it = ckpt.get("total_it", 0)
    if not isinstance(total_it, int) or total_it < 0:
        raise CheckpointError(f"{where}: total_it {total_it!r} is not a non-negative integer")
    return CheckpointMeta(path, version, arch, preprocess, observation, action, total_it)


def _legacy_architecture(ckpt: Mapping, where: str) -> Architecture:
    """Infer the original format's architecture from its tensor shapes."""
    cnn = _state_dict(ckpt, "actor_cnn_state_dict", where)
    actor = _state_dict(ckpt, "actor_state_dict", where)
    try:
        conv1 = cnn["features.0.weight"]
        fc = cnn["fc.weight"]
        fc1 = actor["fc1.weight"]
        fc3 = actor["fc3.weight"]
    except KeyError as error:
        raise CheckpointError(f"{where}: original-format state dict lacks {error}") from error
    feature_dim = int(fc.shape[0])
    return Architecture(
        frame_stack=int(conv1.shape[1]),
        image_size=84,
        feature_dim=feature_dim,
        vector_dim=int(fc1.shape[1]) - feature_dim,
        action_dim=int(fc3.shape[0]),
        hidden_dim=int(fc1.shape[0]),
    )


def check_architecture(arch: Architecture, where: str) -> None:
    """Fields in range and networks of a bounded size, decided before a byte of them is allocated."""
    problems = [
        f"{name} {value!r} not in [{low}, {high}]"
        for name, low, high in ARCHITECTURE_BOUNDS
        if not low <= (value := getattr(arch, name)) <= high
    ]
    if problems:
        raise CheckpointError(f"{where}: architecture out of range: {'; '.join(problems)}")
    try:
        with torch.device("meta"):  # shapes only: nothing is allocated
            parameters = sum(
                p.numel() for module in (Policy(arch), build_cnn(arch), build_critic(arch)) for p in module.parameters()
            )
    except Exception as error:  # any field the network constructors refuse
        problem = f"{type(error).__name__}: {error}"
        raise CheckpointError(f"{where}: architecture {arch} cannot be built: {problem}") from error
    if parameters > MAX_MODEL_PARAMETERS:
        raise CheckpointError(
            f"{where}: architecture {arch} has {parameters:,} parameters, "
            f"more than the {MAX_MODEL_PARAMETERS:,} allowed"
        )


def check_state_dict(module: torch.nn.Module, state: Mapping, name: str, where: str) -> None:
    """Same keys, shapes and floating dtypes as `module`, all values finite."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{where}: '{name}' does not match the architecture (missing {missing[:4]}, unexpected {unexpected[:4]})"
        )
    for key, reference in expected.items():
        tensor = state[key]
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"{where}: '{name}.{key}' is a {type(tensor).__name__}, not a tensor")
        if tuple(tensor.shape) != tuple(reference.shape):
            raise CheckpointError(
                f"{where}: '{name}.{key}' has shape {tuple(tensor.shape)}, expected {tuple(reference.shape)}"
            )
        if not tensor.is_floating_point():
            raise CheckpointError(f"{where}: '{name}.{key}' has dtype {tensor.dtype}, expected floating point")
        check_values(tensor.to(reference.dtype), f"{where}: '{name}.{key}'")


def check_values(tensor: torch.Tensor, what: str) -> None:
    """Finite and of a sane magnitude in the dtype the network computes in (after conversion)."""
    if not torch.isfinite(tensor).all():
        raise CheckpointError(f"{what} contains NaN or inf (in {tensor.dtype})")
    if tensor.numel() and tensor.abs().max() > MAX_WEIGHT_MAGNITUDE:
        raise CheckpointError(f"{what} holds values beyond ±{MAX_WEIGHT_MAGNITUDE:g}")


def validate_policy(ckpt: Mapping, path: Path | None = None) -> CheckpointMeta:
    """What the driver needs: metadata and an actor CNN + actor matching it."""
    meta = read_metadata(ckpt, path)
    where = f"checkpoint '{path}'" if path else "checkpoint"
    policy = Policy(meta.architecture)
    check_state_dict(policy.actor_cnn, _state_dict(ckpt, "actor_cnn_state_dict", where), "actor_cnn_state_dict", where)
    check_state_dict(policy.actor, _state_dict(ckpt, "actor_state_dict", where), "actor_state_dict", where)
    return meta


def is_policy_only(ckpt: Mapping) -> bool:
    return ckpt.get(CONTENTS_KEY) == POLICY_ONLY


def validate_training_state(ckpt: Mapping, path: Path | None = None) -> CheckpointMeta:
    """What resuming needs: every network (and target, format 2) plus the optimizer states."""
    where = f"checkpoint '{path}'" if path else "checkpoint"
    if is_policy_only(ckpt):
        raise CheckpointError(
            f"{where} is a policy-only (deploy) file: it holds the actor the driver needs, not the critic, "
            "target networks and optimizer states that resuming training needs; resume from a full checkpoint "
            "of the training run (models/<run>/td3_<scenario>_step_<N>.pth)"
        )
    meta = validate_policy(ckpt, path)
    arch = meta.architecture
    check_state_dict(build_cnn(arch), _state_dict(ckpt, "critic_cnn_state_dict", where), "critic_cnn_state_dict", where)
    check_state_dict(build_critic(arch), _state_dict(ckpt, "critic_state_dict", where), "critic_state_dict", where)
    if meta.format_version >= 2:
        policy = Policy(arch)
        targets = {
            "actor_cnn_target_state_dict": policy.actor_cnn,
            "actor_target_state_dict": policy.actor,
            "critic_cnn_target_state_dict": build_cnn(arch),
            "critic_target_state_dict": build_critic(arch),
        }
        for key, module in targets.items():
            check_state_dict(module, _state_dict(ckpt, key, where), key, where)
    for key in OPTIMIZER_KEYS:
        state = ckpt.get(key)
        if not isinstance(state, Mapping) or "param_groups" not in state or "state" not in state:
            raise CheckpointError(f"{where}: '{key}' is missing or not an optimizer state dict")
    return meta


# --------------------------------------------------------------------------- training state


@dataclass(frozen=True)
class TrainingState:
    """What a TD3 learner is, as state dicts by this format's keys: what TD3Agent exposes
    (TD3Agent.state / restore) and a training checkpoint stores; the agent writes no files."""

    architecture: Architecture
    networks: Mapping[str, Mapping]  # NETWORK_KEYS: actor CNN, critic CNN, actor, critic (online)
    targets: Mapping[str, Mapping]  # TARGET_KEYS
    optimizers: Mapping[str, Mapping]  # OPTIMIZER_KEYS
    total_it: int
    rng_state: Mapping[str, Any]  # torch, the agent's generator, numpy, python (and CUDA) states


def _as_dict(value: Any, kind: type) -> dict:
    """A config dataclass or its dict → a validated plain dict."""
    if isinstance(value, kind):
        return value.to_dict()
    return kind.from_dict(dict(value)).to_dict()


def training_payload(
    state: TrainingState,
    *,
    preprocess: PreprocessConfig | Mapping,
    observation: ObservationConfig | Mapping,
    action: ActionConfig | Mapping,
    config: Mapping | Any,
    extra: Mapping | None = None,
) -> dict:
    """A training checkpoint (format 2) of `state`, as tensors and plain values only.

    `config` (a mapping, or an object with to_dict(): the TD3 configuration or all parameters of
    the run) is stored as "config"; `extra` (counters, provenance) under "extra" and its entries
    also at the top level."""
    payload: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "architecture": state.architecture.to_dict(),
        "preprocessing": _as_dict(preprocess, PreprocessConfig),
        "observation": _as_dict(observation, ObservationConfig),
        "action": _as_dict(action, ActionConfig),
        "config": config.to_dict() if hasattr(config, "to_dict") else dict(config),
        "total_it": int(state.total_it),
        "rng_state": dict(state.rng_state),
    }
    parts = ((NETWORK_KEYS, state.networks), (TARGET_KEYS, state.targets), (OPTIMIZER_KEYS, state.optimizers))
    for keys, values in parts:
        payload.update({key: values[key] for key in keys})
    if extra:
        clash = sorted(set(extra) & (set(payload) | {"extra"}))
        if clash:
            raise ValueError(f"extra keys {clash} would overwrite checkpoint keys")
        payload.update(dict(extra))
        payload["extra"] = dict(extra)
    return payload


def read_training_state(ckpt: Mapping, path: Path | None = None) -> TrainingState:
    """The TrainingState of a checkpoint, validated (CheckpointError otherwise). An original-format
    file has no targets: they start as copies of the online networks, as TD3 initialises them."""
    meta = validate_training_state(ckpt, path)
    online_of = dict(zip(TARGET_KEYS, NETWORK_KEYS, strict=True))
    targets = {key: ckpt[key] if meta.format_version >= 2 else ckpt[online_of[key]] for key in TARGET_KEYS}
    rng = ckpt.get("rng_state")
    return TrainingState(
        architecture=meta.architecture,
        networks={key: ckpt[key] for key in NETWORK_KEYS},
        targets=targets,
        optimizers={key: ckpt[key] for key in OPTIMIZER_KEYS},
        total_it=meta.total_it,
        rng_state=dict(rng) if isinstance(rng, Mapping) else {},
    )


def policy_only_payload(ckpt: Mapping, path: Path | None = None) -> dict:
    """The policy-only form of a checkpoint: actor CNN + actor head + metadata (a few MB)."""
    meta = validate_policy(ckpt, path)
    extra = ckpt.get("extra")
    return {
        "format_version": FORMAT_VERSION,
        CONTENTS_KEY: POLICY_ONLY,
        "actor_cnn_state_dict": {k: v.clone() for k, v in ckpt["actor_cnn_state_dict"].items()},
        "actor_state_dict": {k: v.clone() for k, v in ckpt["actor_state_dict"].items()},
        "architecture": meta.architecture.to_dict(),
        "preprocessing": meta.preprocess.to_dict(),
        "observation": meta.observation.to_dict(),
        "action": meta.action.to_dict(),
        "total_it": meta.total_it,
        "extra": {k: extra[k] for k in PROVENANCE_KEYS if k in extra} if isinstance(extra, Mapping) else {},
        "source": str(path.name) if path else "",
    }


def write_policy_only(spec: str | Path, out: Path | str, models_dir: Path | str = "models") -> Path:
    """Resolve and validate a checkpoint, then write its policy-only form to `out` (atomically)."""
    path = resolve_checkpoint(spec, models_dir)
    payload = policy_only_payload(load_checkpoint_file(path), path)
    written = save_checkpoint(payload, out)
    validate_policy(load_checkpoint_file(written), written)
    return written


def load_policy(
    spec: str | Path, device: str | torch.device = "cpu", models_dir: Path | str = "models"
) -> tuple[Policy, CheckpointMeta]:
    """Resolve, load, validate and build the inference policy (eval mode, no gradients)."""
    path = resolve_checkpoint(spec, models_dir)
    ckpt = load_checkpoint_file(path, map_location="cpu")
    meta = validate_policy(ckpt, path)
    policy = Policy(meta.architecture)
    policy.actor_cnn.load_state_dict(ckpt["actor_cnn_state_dict"])
    policy.actor.load_state_dict(ckpt["actor_state_dict"])
    policy.eval().requires_grad_(False)
    return policy.to(device), meta
