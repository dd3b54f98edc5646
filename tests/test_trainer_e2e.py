"""The trainer against the embedded simulator: separate processes, real DDS, tiny budgets.

Also the start-up checks of the trainer's parameters (the parameter table, the yaml, and a
node that refuses an invalid value), which need no simulator.
"""

from __future__ import annotations

import math
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from diagnostic_msgs.msg import DiagnosticArray
from td3_drive.msg import Episode, TrainStats

from td3_bringup.graph import ParamValue, file_parameters, repo_config_dir, simulator_node, trainer_node
from td3_bringup.observer import BackgroundNode
from td3_bringup.runner import node_command
from td3_core.checkpoint import (
    METADATA_KEYS,
    SEED_KEYS,
    TARGET_KEYS,
    checkpoint_name,
    list_checkpoints,
    load_checkpoint_file,
    read_latest_pointer,
    read_training_state,
    training_payload,
    validate_training_state,
)
from td3_sim import ground_truth
from td3_trainer.monitor import EVENT_LOG_QOS, STATUS_NAME
from td3_trainer.params import PARAMS, ParamError, validate

from .processes import node_process

CONFIG = repo_config_dir()
# What ~/episode says about an episode's end: Episode.msg's END_* constants.
END_REASONS = {getattr(Episode, name) for name in dir(Episode) if name.startswith("END_")}
HANG_GUARD_S = 240.0  # only a guard against a hang, never a performance expectation

# Small and fast: 36x36 frames into a small network, tiny buffer and batches.
FAST_TRAINER: dict[str, ParamValue] = {
    "device": "cpu",
    "num_threads": 1,
    "progress": False,
    "learning_starts": 100,
    "batch_size": 32,
    "buffer_size": 1000,
    "max_episode_steps": 100,
    "preprocessing.image_size": 36,
    "network.feature_dim": 64,
    "network.hidden_dim": 64,
    "stats_period_s": 0.5,
}
SIMULATOR: dict[str, ParamValue] = {"image_width": 84, "image_height": 84}


# --------------------------------------------------------------------------- helpers


class Observer(BackgroundNode):
    """A test-side node counting what the trainer and the simulator publish."""

    def __init__(self, role: str = "ego_vehicle") -> None:
        super().__init__("trainer_test_observer")
        self.lock = threading.Lock()
        self.train_stats: list[TrainStats] = []
        self.episodes: list[Episode] = []
        self.diagnostics: list = []
        node = self.node
        # The reader's history holds everything that arrives while this thread is starved of CPU (a
        # loaded machine): DDS fills it on its own threads. (Commands and ticks are counted from
        # the simulator's ground-truth log: the trainer's writer keeps only 10 for a slow reader.)
        depth = 10_000
        node.create_subscription(TrainStats, "/td3_trainer/train_stats", self._stats, depth)
        node.create_subscription(Episode, "/td3_trainer/episode", self._episode, EVENT_LOG_QOS)  # from episode 0
        node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: self._add(self.diagnostics, m), depth)

    def _add(self, items: list, value) -> None:
        with self.lock:
            items.append(value)

    def _stats(self, msg: TrainStats) -> None:
        self._add(self.train_stats, msg)

    def _episode(self, msg: Episode) -> None:
        self._add(self.episodes, msg)

    def env_steps(self) -> int:
        with self.lock:
            return self.train_stats[-1].env_steps if self.train_stats else 0

    def trainer_statuses(self) -> list:
        with self.lock:
            return [s for array in self.diagnostics for s in array.status if s.name == STATUS_NAME]


@contextmanager
def simulator(tmp_path: Path, overrides: dict[str, ParamValue] | None = None) -> Iterator[subprocess.Popen]:
    spec = simulator_node(CONFIG, sync=True, overrides={**SIMULATOR, **(overrides or {})})
    with node_process(node_command(spec)[1:], tmp_path / "simulator.log") as proc:
        yield proc


@contextmanager
def trainer_seen_then_simulator(
    obs: Observer, tmp_path: Path, overrides: dict[str, ParamValue], log: Path, sim: dict[str, ParamValue] | None = None
) -> Iterator[subprocess.Popen]:
    """The trainer, then the simulator once the trainer's /diagnostics reach `obs`.

    A run of a few hundred steps ends within seconds; on a loaded host the observer and the
    trainer may not have discovered each other by then, and none of the trainer's messages would
    reach the observer (a volatile reader gets only what comes after the match). Until the
    simulator is up, the trainer waits for its topics and says so on /diagnostics."""
    with node_process(trainer_args(tmp_path, overrides), log) as proc:
        wait_for_trainer_status(obs, proc, log)
        with simulator(tmp_path, sim):
            yield proc


def trainer_args(tmp_path: Path, overrides: dict[str, ParamValue]) -> list[str]:
    params = {"models_dir": str(tmp_path / "models"), "log_dir": str(tmp_path / "runs"), **FAST_TRAINER, **overrides}
    return node_command(trainer_node(CONFIG, params))[1:]


def wait_until(condition: Callable[[], bool], proc: subprocess.Popen, what: str, log: Path) -> None:
    """Poll `condition` while `proc` runs; a hang guard, not a timing expectation."""
    deadline = time.monotonic() + HANG_GUARD_S
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"{what}: process exited with {proc.returncode}\n{tail(log)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: nothing after {HANG_GUARD_S} s\n{tail(log)}")
        time.sleep(0.1)


def wait_for_trainer_status(obs: Observer, proc: subprocess.Popen, log: Path) -> None:
    """Until the trainer's /diagnostics reach `obs`: the two are matched from then on."""
    wait_until(lambda: bool(obs.trainer_statuses()), proc, "the trainer's /diagnostics", log)


def wait_for_callbacks(lock: threading.Lock, items: list, expected: int, limit_s: float = 10.0) -> None:
    """After the publisher has exited, give a starved observer thread time to run the callbacks of
    what its reader already holds (reliable, acknowledged at the trainer's close): up to `expected`."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        with lock:
            if len(items) >= expected:
                return
        time.sleep(0.1)


def wait_exit(proc: subprocess.Popen, log: Path) -> int:
    try:
        return proc.wait(timeout=HANG_GUARD_S)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"trainer did not exit\n{tail(log)}") from None


def tail(log: Path, chars: int = 4000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else "(no log)"


def only_run_dir(models: Path) -> Path:
    runs = [d for d in models.iterdir() if d.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def fresh_agent_from(checkpoint: dict):
    """A new TD3Agent restored from `checkpoint`, and the payload it produces again."""
    from td3_core.networks import Architecture
    from td3_trainer.config import TD3Config
    from td3_trainer.td3 import TD3Agent

    arch = Architecture.from_dict(checkpoint["architecture"])
    config = TD3Config.from_dict({k: v for k, v in checkpoint["config"].items() if k in TD3Config.__dataclass_fields__})
    agent = TD3Agent(arch, config, "cpu")
    agent.restore(read_training_state(checkpoint), restore_rng=True)
    again = training_payload(
        agent.state(),
        preprocess=checkpoint["preprocessing"],
        observation=checkpoint["observation"],
        action=checkpoint["action"],
        config=checkpoint["config"],
        extra=checkpoint.get("extra"),
    )
    return agent, again


def assert_same_tensors(a, b, where: str) -> None:
    """Recursive equality of nested state dicts, torch.equal on every tensor."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), where
        assert a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {sorted(a)} vs {sorted(b)}"
        for key in a:
            assert_same_tensors(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)), f"{where}: {a!r} vs {b!r}"


# --------------------------------------------------------------------------- parameters (no ROS)


def test_yaml_documents_exactly_the_declared_parameters_with_their_defaults():
    text = (CONFIG / "trainer.yaml").read_text()
    values = file_parameters(CONFIG / "trainer.yaml", "td3_trainer")
    assert set(values) == {p.name for p in PARAMS}
    for param in PARAMS:
        assert values[param.name] == param.default, param.name
        assert type(values[param.name]) is type(param.default), param.name
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and not stripped.endswith(":"):
            assert "#" in stripped, f"undocumented: {stripped}"


def test_defaults_are_valid():
    params = validate({})
    assert params.architecture.vector_dim == 23
    assert params.reset_service_name == ""  # the bridge has no reset service


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("reward.collision_penalty", 5.0),
        ("frame_timeout_s", 0.0),
        ("device", "tpu"),
        ("batch_size", "many"),
        ("gamma", 1.5),
        ("preprocessing.image_size", 4),
        ("observation.num_waypoints", -1),
        ("scenario", "a/b"),
        ("learning_starts", 10**7),
    ],
)
def test_invalid_values_name_the_parameter(name, value):
    with pytest.raises(ParamError, match=name.replace(".", r"\.")):
        validate({name: value})


def test_integers_are_accepted_for_floats_but_not_the_reverse():
    assert validate({"gamma": 1}).td3["gamma"] == 1.0
    with pytest.raises(ParamError, match="batch_size"):
        validate({"batch_size": 32.0})


def test_pixels_only_without_waypoints_is_valid():
    params = validate({"observation.use_vector_state": False, "observation.num_waypoints": 0})
    assert params.architecture.vector_dim == 0


# --------------------------------------------------------------------------- processes


@pytest.mark.ros
def test_invalid_parameter_stops_the_node_naming_it(tmp_path: Path):
    log = tmp_path / "trainer.log"
    with node_process(trainer_args(tmp_path, {"reward.collision_penalty": 5.0}), log) as proc:
        code = wait_exit(proc, log)
    assert code == 2, tail(log)
    assert "reward.collision_penalty" in tail(log)
    assert "Traceback" not in tail(log)


@pytest.mark.ros
@pytest.mark.slow
def test_training_run_to_budget_writes_complete_checkpoints(tmp_path: Path):
    budget, keep_last = 300, 2
    log = tmp_path / "trainer.log"
    truth_log = tmp_path / "ground_truth.jsonl"
    overrides = {"total_steps": budget, "checkpoint_every": 100, "keep_last": keep_last, "tensorboard": True}
    sim = {"ground_truth_log": str(truth_log)}
    with Observer() as obs, trainer_seen_then_simulator(obs, tmp_path, overrides, log, sim) as proc:
        code = wait_exit(proc, log)
        if code == 0:  # (otherwise the assertions below show the log)
            latest = read_latest_pointer(only_run_dir(tmp_path / "models"))
            wait_for_callbacks(obs.lock, obs.episodes, load_checkpoint_file(latest)["extra"]["episodes"])
        with obs.lock:
            train_stats, episodes, diagnostics = list(obs.train_stats), list(obs.episodes), list(obs.diagnostics)
    # Commands and ticks as the simulator itself counted them: a side observer misses some when
    # its thread is starved (the trainer's writer keeps 10 commands; older ones are gone for it).
    truth = ground_truth.read(truth_log)
    commands = sum(r["kind"] == "command" for r in truth)
    answered = [r["answers_ns"] for r in truth if r["kind"] == "command"]
    status = [r["frame"] for r in truth if r["kind"] == "tick"]
    text = tail(log, 20000)
    assert code == 0, text
    assert "Traceback" not in text

    run_dir = only_run_dir(tmp_path / "models")
    files = list_checkpoints(run_dir)
    assert 1 <= len(files) <= keep_last
    latest = read_latest_pointer(run_dir)
    assert latest is not None and latest.name == checkpoint_name("scenario_0", budget)
    assert not list(run_dir.glob(".*tmp*")), "temp files left behind"

    checkpoint = load_checkpoint_file(latest)
    for key in (*SEED_KEYS, *TARGET_KEYS, *METADATA_KEYS):
        assert key in checkpoint, key
    meta = validate_training_state(checkpoint, latest)
    assert meta.architecture.image_size == 36
    extra = checkpoint["extra"]
    assert extra["env_steps"] == budget
    assert 0 < checkpoint["total_it"] <= budget
    assert checkpoint["config"]["batch_size"] == 32
    assert checkpoint["config"]["reward.collision_penalty"] == -100.0

    # Restoring into a fresh agent gives back every network and optimizer tensor exactly.
    _, again = fresh_agent_from(checkpoint)
    for key in (*SEED_KEYS, *TARGET_KEYS):
        if key != "config":
            assert_same_tensors(checkpoint[key], again[key], key)

    # One frame per command: an action per step, the brake ticks of the resets, and the one action
    # after each episode's last step (its transition waits for that tick's late events).
    sync = extra["sync"]
    ended = extra["episodes"]
    expected = budget + sync["reset_ticks"] + ended
    assert expected <= commands <= expected + sync["timeouts"] + 2, (commands, sync)
    if status and answered:  # /carla/status: from the first frame answered, one frame per command
        first_frame = round(min(a for a in answered if a > 0) / 50_000_000)
        advanced = max(status) - first_frame
        slack = sync["timeouts"] + sync["dropped_frames"] + 5  # + the final brake, the sim's timeout ticks after it
        # (the first reset brakes before it has seen a frame: those commands answer no stamp)
        assert expected - 5 <= advanced <= expected + slack, (advanced, expected, commands, sync)

    # Monitoring: episodes ended by the step limit at the latest, stats and diagnostics flowed.
    assert episodes, "no ~/episode message"
    assert all(0 < e.length <= 100 for e in episodes)
    assert {e.end_reason for e in episodes} <= END_REASONS, [e.end_reason for e in episodes]
    assert all(e.episode == k for k, e in enumerate(episodes)), [e.episode for e in episodes]
    assert train_stats and any(s.total_it > 0 for s in train_stats)
    # The loop's phases account for its wall time (what bench_end_to_end splits).
    last = train_stats[-1]
    phases = [last.act_s, last.learn_s, last.wait_s, last.store_s, last.reset_s]
    assert all(value >= 0.0 for value in phases) and last.wait_s > 0.0 and last.learn_s > 0.0, last
    assert 0.5 * last.loop_s <= sum(phases) <= last.loop_s + 0.01, last
    assert any(s.name == STATUS_NAME for d in diagnostics for s in d.status)
    # The simulator reports its ticks and what computing them cost.
    statuses = [s for d in diagnostics for s in d.status]
    sim = [{kv.key: kv.value for kv in s.values} for s in statuses if s.name.startswith("carla_simulator")]
    assert sim and int(sim[-1]["ticks"]) >= budget // 2 and float(sim[-1]["tick_compute_s"]) > 0.0, sim[-1:]
    assert list((tmp_path / "runs" / run_dir.name).glob("events.out.tfevents.*")), "no TensorBoard file"


@pytest.mark.ros
@pytest.mark.slow
def test_pixels_only_training_without_waypoints_in_the_observation(tmp_path: Path):
    log = tmp_path / "trainer.log"
    overrides = {
        "total_steps": 120,
        "learning_starts": 50,
        "batch_size": 16,
        "observation.use_vector_state": False,
        "observation.num_waypoints": 0,
        "tensorboard": False,
    }
    with simulator(tmp_path), node_process(trainer_args(tmp_path, overrides), log) as proc:
        code = wait_exit(proc, log)
    assert code == 0, tail(log)
    latest = read_latest_pointer(only_run_dir(tmp_path / "models"))
    assert latest is not None and latest.name == checkpoint_name("scenario_0", 120)
    checkpoint = load_checkpoint_file(latest)
    meta = validate_training_state(checkpoint, latest)
    assert meta.architecture.vector_dim == 0
    assert not meta.observation.use_vector_state
    assert checkpoint["total_it"] > 0


@pytest.mark.ros
@pytest.mark.slow
def test_the_unseen_roads_setting_trains_on_a_new_procedural_track_each_episode_under_the_speed_limit(
    tmp_path: Path,
):
    # config/trainer_unseen_roads.yaml as train.launch.py's config_file gives it to both nodes; a
    # low speed limit here so that the random warm-up reaches it.
    setting = CONFIG / "trainer_unseen_roads.yaml"
    limit = 2.5
    trainer = file_parameters(setting, "td3_trainer")
    trainer |= {"total_steps": 250, "max_episode_steps": 50, "action.speed_limit_mps": limit}
    truth_log = tmp_path / "ground_truth.jsonl"
    sim = file_parameters(setting, "carla_simulator") | {"ground_truth_log": str(truth_log)}
    log = tmp_path / "trainer.log"
    with simulator(tmp_path, sim), node_process(trainer_args(tmp_path, trainer), log) as proc:
        code = wait_exit(proc, log)
    assert code == 0, tail(log)
    truth = ground_truth.read(truth_log)
    resets = [r for r in truth if r["kind"] == "reset"]
    seed = int(trainer["episode_seed"])
    assert len(resets) >= 5 and [r["seed"] for r in resets] == list(range(seed, seed + len(resets)))
    assert len({round(r["track_length_m"]) for r in resets}) == len(resets), "the same track twice"
    speeds = [r["speed"] for r in truth if r["kind"] == "tick"]
    assert limit * 0.9 < max(speeds) <= limit + 0.05, max(speeds)
    checkpoint = load_checkpoint_file(read_latest_pointer(only_run_dir(tmp_path / "models")))
    assert checkpoint["action"]["speed_limit_mps"] == limit
    # The setting's curve governor is the checkpoint's too: the driver applies what it learned with.
    assert checkpoint["action"]["curve_lateral_accel_mps2"] == trainer.get("action.curve_lateral_accel_mps2", 0.0)
