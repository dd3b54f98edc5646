"""What the driver accepts as a checkpoint, what it refuses (and why), and hot reload.

Every refusal goes through the driver's own loading path (load_runner: resolve, torch.load with
weights_only, schema check, build, warm-up) and must be a CheckpointError with a message that
names the problem, never another exception and never code run from the file.
"""

from __future__ import annotations

import os
import pathlib
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from td3_core.checkpoint import (
    BEST_POINTER,
    CheckpointError,
    prune_checkpoints,
    resolve_checkpoint,
    save_checkpoint,
    write_latest_pointer,
    write_pointer,
)
from td3_core.networks import Architecture
from td3_core.vector_state import ObservationConfig
from td3_driver.hot_reload import CheckpointId, CheckpointWatcher, Rejected, Swap
from td3_driver.policy_runner import PolicyRunner, load_runner

from .checkpoint_factory import build_payload, small_architecture, write_checkpoint, write_original_checkpoint

CPU = torch.device("cpu")
PIXELS = ObservationConfig(use_vector_state=False)
VECTOR = ObservationConfig(num_waypoints=4)


def _load(path: Path | str) -> PolicyRunner:
    return load_runner(str(path), CPU, warmup_iterations=1)


def _refused(path: Path | str) -> str:
    with pytest.raises(CheckpointError) as info:
        _load(path)
    return str(info.value)


def _small_payload(observation: ObservationConfig = VECTOR, **options) -> dict:
    return build_payload(observation, small_architecture(observation), **options)


def _save(payload: dict, path: Path) -> Path:
    return save_checkpoint(payload, path)


# ----------------------------------------------------------------------------- files that are not checkpoints


def test_missing_file(tmp_path: Path):
    assert "does not exist" in _refused(tmp_path / "nope.pth")


def test_empty_file(tmp_path: Path):
    path = tmp_path / "empty.pth"
    path.touch()
    assert "is empty" in _refused(path)


def test_truncated_file(tmp_path: Path):
    path = _save(_small_payload(), tmp_path / "full.pth")
    data = path.read_bytes()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(data[: len(data) // 2])
    assert "corrupt or truncated" in _refused(truncated)


def test_garbage_file(tmp_path: Path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(os.urandom(4096))
    assert str(path) in _refused(path)


def test_directory_without_checkpoints(tmp_path: Path):
    (tmp_path / "run").mkdir()
    assert "holds no checkpoint" in _refused(tmp_path / "run")


def test_symlink_loop(tmp_path: Path):
    (tmp_path / "a.pth").symlink_to(tmp_path / "b.pth")
    (tmp_path / "b.pth").symlink_to(tmp_path / "a.pth")
    assert "a.pth" in _refused(tmp_path / "a.pth")
    loop_dir = tmp_path / "loop"
    loop_dir.symlink_to(loop_dir)
    assert "loop" in _refused(loop_dir)


class _TouchOnUnpickle:
    """Unpickling this would create `marker`: the file must be refused before that can happen."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_pickle_payload_is_refused_without_running_it(tmp_path: Path, writer: str):
    live = tmp_path / "live"
    pickle.loads(pickle.dumps(_TouchOnUnpickle(live)))
    assert live.exists(), "the payload must be live for this test to mean anything"
    marker = tmp_path / "pwned"
    payload = {**_small_payload(), "config": _TouchOnUnpickle(marker)}
    path = tmp_path / "evil.pth"
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    assert "refused without running" in _refused(path)
    assert not marker.exists(), "loading the checkpoint ran code from it"


def test_not_a_dict(tmp_path: Path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(3)], path)
    assert "expected a dict" in _refused(path)


# ----------------------------------------------------------------------------- checkpoints that do not match the schema


def test_missing_and_unexpected_keys(tmp_path: Path):
    payload = _small_payload()
    del payload["actor_state_dict"]
    assert "'actor_state_dict' is missing" in _refused(_save(payload, tmp_path / "no_actor.pth"))

    payload = _small_payload()
    payload["actor_cnn_state_dict"]["extra.weight"] = torch.zeros(3)
    assert "unexpected ['extra.weight']" in _refused(_save(payload, tmp_path / "extra.pth"))

    payload = _small_payload()
    payload["actor_state_dict"]["layer1.weight"] = payload["actor_state_dict"].pop("fc1.weight")
    assert "missing ['fc1.weight']" in _refused(_save(payload, tmp_path / "renamed.pth"))

    payload = _small_payload()
    del payload["architecture"]
    assert "'architecture' is missing" in _refused(_save(payload, tmp_path / "no_arch.pth"))


def test_weights_of_another_architecture(tmp_path: Path):
    claimed = small_architecture(VECTOR)
    other = build_payload(VECTOR, small_architecture(VECTOR, hidden_dim=128))
    other["architecture"] = claimed.to_dict()
    assert "has shape" in _refused(_save(other, tmp_path / "hidden128.pth"))

    five = build_payload(VECTOR, Architecture(**{**claimed.to_dict(), "vector_dim": 5}))
    five["architecture"] = claimed.to_dict()
    assert "fc1.weight' has shape" in _refused(_save(five, tmp_path / "vector5.pth"))

    mismatch = _small_payload()
    mismatch["architecture"] = {**claimed.to_dict(), "vector_dim": 5}
    assert "the networks expect 5" in _refused(_save(mismatch, tmp_path / "meta5.pth"))


def test_integer_tensors(tmp_path: Path):
    payload = _small_payload()
    payload["actor_state_dict"]["fc2.weight"] = payload["actor_state_dict"]["fc2.weight"].to(torch.int32)
    assert "dtype torch.int32" in _refused(_save(payload, tmp_path / "int.pth"))


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights(tmp_path: Path, value: float):
    payload = _small_payload()
    payload["actor_cnn_state_dict"]["fc.bias"][3] = value
    assert "NaN or inf" in _refused(_save(payload, tmp_path / "nan.pth"))


@pytest.mark.parametrize("version", [3, 0, "2", 2.0])
def test_unsupported_format_version(tmp_path: Path, version):
    payload = _small_payload()
    payload["format_version"] = version
    assert "not supported" in _refused(_save(payload, tmp_path / "v.pth"))


def _nan_for_every_input(policy) -> None:
    """Weights within the schema's magnitude bound (1e6) whose activations still overflow: the
    CNN's biases grow through each layer to inf in float32, then inf - inf = NaN in fc2."""
    with torch.no_grad():
        for parameter in policy.actor_cnn.parameters():
            parameter.fill_(1e6)
        policy.actor.fc1.weight.fill_(1e6)
        policy.actor.fc2.weight[:, 0::2] = 1e6
        policy.actor.fc2.weight[:, 1::2] = -1e6


def test_policy_nan_on_a_neutral_observation_is_refused(tmp_path: Path):
    path = _save(_small_payload(PIXELS, edit_policy=_nan_for_every_input), tmp_path / "nan_out.pth")
    runner = PolicyRunner.load(str(path), CPU)  # the schema accepts it: every weight is finite
    assert np.isnan(runner.infer(*_neutral(runner)).action[0])
    assert "neutral observation" in _refused(path)


def _neutral(runner: PolicyRunner) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros(runner.frames_shape, np.uint8), np.zeros(runner.vector_dim, np.float32)


# ----------------------------------------------------------------------------- what loads


def test_format_2_checkpoint_loads_with_its_metadata(tmp_path: Path):
    path = write_checkpoint(tmp_path / "run" / "td3_s_step_7.pth", VECTOR, small_architecture(VECTOR), total_it=77)
    runner = _load(path)
    assert runner.meta.format_version == 2 and runner.meta.total_it == 77
    assert runner.meta.observation == VECTOR and runner.vector_dim == 11
    assert not any(p.requires_grad for p in runner.policy.parameters()) and not runner.policy.training
    assert runner.infer(*_neutral(runner)).finite


def test_original_format_loads_with_defaults(tmp_path: Path):
    path = write_original_checkpoint(tmp_path / "td3_scenario_0_step_30000.pth")
    runner = _load(path)
    meta = runner.meta
    assert meta.format_version == 1
    assert meta.architecture == Architecture()  # 4x84x84, 512 features, vector 23, hidden 256
    assert meta.preprocess.image_size == 84 and meta.preprocess.frame_stack == 4
    assert meta.observation == ObservationConfig() and meta.action.max_throttle == 1.0
    assert runner.infer(*_neutral(runner)).finite


def test_original_format_pixels_only(tmp_path: Path):
    arch = small_architecture(PIXELS, image_size=84)  # the original format always had 84x84 frames
    runner = _load(write_original_checkpoint(tmp_path / "old.pth", arch))
    assert runner.meta.architecture == arch
    assert runner.meta.observation.use_vector_state is False and runner.vector_dim == 0


# ----------------------------------------------------------------------------- latest


def _set_mtime(path: Path, seconds_ago: float) -> None:
    when = time.time() - seconds_ago
    os.utime(path, (when, when))


def test_latest_picks_the_newest_complete_checkpoint_never_a_temp_file(tmp_path: Path):
    models = tmp_path / "models"
    old = write_checkpoint(models / "run_a" / "td3_s_step_10.pth", PIXELS, small_architecture(PIXELS))
    new = write_checkpoint(models / "run_b" / "td3_s_step_20.pth", PIXELS, small_architecture(PIXELS))
    _set_mtime(old, 100)
    _set_mtime(new, 50)
    # A save in progress in run_a: newer, but a temp file, and `latest` does not point at it.
    partial = models / "run_a" / ".td3_s_step_30.pth.tmp1234"
    partial.write_bytes(new.read_bytes()[:1000])
    # A complete file the pointer has not reached yet is not "latest" either.
    unpointed = write_checkpoint(models / "run_a" / "td3_s_step_25.pth", PIXELS, latest=False)
    _set_mtime(unpointed, 10)
    assert resolve_checkpoint("latest", models) == new
    assert resolve_checkpoint(models / "run_a", models) == old
    # Without a pointer, a run directory gives its highest step, still never a temp file.
    (models / "run_a" / "latest").unlink()
    assert resolve_checkpoint(models / "run_a", models) == unpointed
    assert _load(resolve_checkpoint("latest", models)).meta.path == new


def test_latest_without_any_run(tmp_path: Path):
    assert "does not exist" in _refused_spec("latest", tmp_path / "missing")
    (tmp_path / "models" / "empty_run").mkdir(parents=True)
    assert "complete checkpoint" in _refused_spec("latest", tmp_path / "models")


def test_best_is_the_newest_runs_best_and_survives_pruning(tmp_path: Path):
    models = tmp_path / "models"
    arch = small_architecture(PIXELS)
    old_best = write_checkpoint(models / "old" / "td3_s_step_5.pth", PIXELS, arch)
    write_pointer(models / "old", old_best, BEST_POINTER)
    _set_mtime(old_best, 100)
    run = models / "run"
    best = write_checkpoint(run / "td3_s_step_10.pth", PIXELS, arch)
    write_pointer(run, best, BEST_POINTER)
    for step in (20, 30, 40):
        latest = write_checkpoint(run / f"td3_s_step_{step}.pth", PIXELS, arch)
    # The run with the newest `latest` decides; its `best` need not be its newest file.
    assert resolve_checkpoint("best", models) == best
    assert resolve_checkpoint(run / "best", models) == best
    assert resolve_checkpoint(run / "latest", models) == latest
    assert resolve_checkpoint("best", run) == best  # models_dir may be the run itself
    prune_checkpoints(run, keep_last=1)
    assert best.is_file() and latest.is_file()
    assert not (run / "td3_s_step_20.pth").exists()
    # A run without an evaluation yet has no best: a clear refusal, not its latest.
    write_checkpoint(models / "fresh" / "td3_s_step_1.pth", PIXELS, arch)
    assert "no 'best' checkpoint" in _refused_spec("best", models)


def test_hot_reload_follows_best(tmp_path: Path):
    run = tmp_path / "models" / "run"
    arch = small_architecture(PIXELS)
    first = write_checkpoint(run / "td3_s_step_1.pth", PIXELS, arch, seed=1)
    write_pointer(run, first, BEST_POINTER)
    runner = _load(first)
    watcher = _watcher("best", tmp_path / "models", first, runner)
    write_checkpoint(run / "td3_s_step_2.pth", PIXELS, arch, seed=2)  # newer, but not better
    assert _poll_done(watcher) is None
    better = write_checkpoint(run / "td3_s_step_3.pth", PIXELS, arch, seed=3)
    write_pointer(run, better, BEST_POINTER)
    outcome = _poll_done(watcher)
    assert isinstance(outcome, Swap) and outcome.identity.path == better.resolve()


def _refused_spec(spec: str, models_dir: Path) -> str:
    with pytest.raises(CheckpointError) as info:
        resolve_checkpoint(spec, models_dir)
    return str(info.value)


# ----------------------------------------------------------------------------- hot reload


def _watcher(spec: str, models_dir: Path, current: Path, runner: PolicyRunner) -> CheckpointWatcher:
    def compatible(candidate: PolicyRunner) -> str | None:
        same = (candidate.meta.preprocess, candidate.meta.observation) == (
            runner.meta.preprocess,
            runner.meta.observation,
        )
        return None if same else "different observation"

    return CheckpointWatcher(spec, str(models_dir), CheckpointId.of(current), _load, compatible)


def _poll_done(watcher: CheckpointWatcher):
    """Start (or finish) a load and wait for it without timing anything."""
    outcome = watcher.poll()
    if outcome is None and watcher.busy:
        watcher.wait()
        outcome = watcher.poll()
    return outcome


def test_hot_reload_swaps_only_to_a_valid_newer_checkpoint(tmp_path: Path):
    run = tmp_path / "models" / "run"
    arch = small_architecture(PIXELS)
    first = write_checkpoint(run / "td3_s_step_1.pth", PIXELS, arch, seed=1)
    runner = _load(first)
    frames, vector = np.full(runner.frames_shape, 90, np.uint8), np.zeros(0, np.float32)
    before = runner.infer(frames, vector).action
    watcher = _watcher(str(run), tmp_path / "models", first, runner)
    assert _poll_done(watcher) is None  # nothing new

    # The trainer writes a broken file and moves the pointer to it: refused, once.
    broken = run / "td3_s_step_2.pth"
    broken.write_bytes(first.read_bytes()[:5000])
    write_latest_pointer(run, broken)
    outcome = _poll_done(watcher)
    assert isinstance(outcome, Rejected) and "corrupt or truncated" in outcome.reason
    assert watcher.poll() is None and not watcher.busy, "a known-broken file is tried again"
    np.testing.assert_array_equal(runner.infer(frames, vector).action, before)  # the running policy is untouched

    # A different observation cannot be swapped in while driving.
    other = write_checkpoint(run / "td3_s_step_3.pth", VECTOR, small_architecture(VECTOR))
    outcome = _poll_done(watcher)
    assert isinstance(outcome, Rejected) and outcome.identity.path == other.resolve()

    # A valid newer checkpoint is loaded into a new runner and offered for the swap.
    good = write_checkpoint(run / "td3_s_step_4.pth", PIXELS, arch, seed=4)
    outcome = _poll_done(watcher)
    assert isinstance(outcome, Swap) and outcome.identity.path == good.resolve()
    assert outcome.runner is not runner and watcher.current == outcome.identity
    assert not np.array_equal(outcome.runner.infer(frames, vector).action, before)
    assert _poll_done(watcher) is None  # now current: not loaded again


def test_hot_reload_retries_a_broken_file_once_it_changes(tmp_path: Path):
    arch = small_architecture(PIXELS)
    path = write_checkpoint(tmp_path / "policy.pth", PIXELS, arch, latest=False)
    runner = _load(path)
    watcher = _watcher(str(path), tmp_path, path, runner)
    path.write_bytes(b"not a checkpoint")
    assert isinstance(_poll_done(watcher), Rejected)
    assert _poll_done(watcher) is None
    write_checkpoint(path, PIXELS, arch, seed=9, latest=False)  # replaced atomically: new mtime and size
    assert isinstance(_poll_done(watcher), Swap)
