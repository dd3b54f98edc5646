"""Periodic evaluation of the trainer node against the embedded simulator: results on the
topic, in /diagnostics, in TensorBoard and next to the checkpoint; `best` points at the complete
checkpoint with the highest score so far."""

from __future__ import annotations

import itertools
import json
import math
import threading
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray
from td3_drive.msg import Evaluation

from td3_bringup.observer import BackgroundNode
from td3_core.checkpoint import BEST_POINTER, eval_path, load_checkpoint_file, read_pointer, validate_training_state
from td3_trainer.monitor import EVENT_LOG_QOS, STATUS_NAME

from .processes import node_process
from .test_trainer_e2e import only_run_dir, simulator, tail, trainer_args, wait_exit, wait_for_callbacks

BUDGET = 240
EVAL_EVERY = 80


class EvalObserver(BackgroundNode):
    def __init__(self) -> None:
        super().__init__("eval_test_observer")
        self.lock = threading.Lock()
        self.evaluations: list[Evaluation] = []
        self.diagnostics: list[dict[str, str]] = []
        self.node.create_subscription(Evaluation, "/td3_trainer/evaluation", self._evaluation, EVENT_LOG_QOS)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._diagnostics, 100)

    def _evaluation(self, msg: Evaluation) -> None:
        with self.lock:
            self.evaluations.append(msg)

    def _diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == STATUS_NAME:
                with self.lock:
                    self.diagnostics.append({kv.key: kv.value for kv in status.values})


def test_periodic_evaluation_and_the_best_checkpoint(tmp_path: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = tmp_path / "trainer.log"
    overrides = {
        "total_steps": BUDGET,
        "eval_every": EVAL_EVERY,
        "eval_episodes": 2,
        "max_episode_steps": 40,
        "checkpoint_every": 0,
        "keep_last": 1,  # pruning must keep `best`
        "save_replay_buffer": True,
        "tensorboard": True,
    }
    with EvalObserver() as obs, simulator(tmp_path), node_process(trainer_args(tmp_path, overrides), log) as proc:
        code = wait_exit(proc, log)
        if code == 0:  # one message per evaluation that reached TensorBoard (otherwise the log says why)
            run = only_run_dir(tmp_path / "models")
            events = EventAccumulator(str(tmp_path / "runs" / run.name))
            events.Reload()
            if "eval/score" in events.Tags()["scalars"]:
                wait_for_callbacks(obs.lock, obs.evaluations, len(events.Scalars("eval/score")))
        with obs.lock:
            evaluations = list(obs.evaluations)
            diagnostics = list(obs.diagnostics)
    text = tail(log, 20000)
    assert code == 0, text
    assert "Traceback" not in text

    # On the topic, by name; at most one per eval_every steps, at an episode end.
    assert len(evaluations) >= 2, text
    for msg in evaluations:
        values = [getattr(msg, name) for name in Evaluation.get_fields_and_field_types() if name != "header"]
        assert msg.episodes == 2 and all(math.isfinite(v) for v in values), msg
    steps = [msg.env_steps for msg in evaluations]
    assert all(b // EVAL_EVERY > a // EVAL_EVERY for a, b in itertools.pairwise(steps)), steps
    scores = [msg.score for msg in evaluations]
    assert [msg.best_score for msg in evaluations] == [max(scores[: k + 1]) for k in range(len(scores))]
    assert any("eval_mean_return" in d for d in diagnostics)

    # TensorBoard: eval/... scalars at the evaluation steps.
    tags = events.Tags()["scalars"]  # (read after the trainer exited, above)
    assert {"eval/mean_return", "eval/route_completion", "eval/collisions_per_km", "eval/score"} <= set(tags), tags
    assert [e.step for e in events.Scalars("eval/score")] == steps

    # `best`: a complete checkpoint whose stored evaluation has the highest score, results beside it.
    best = read_pointer(run, BEST_POINTER)
    assert best is not None and best.is_file()
    checkpoint = load_checkpoint_file(best)
    validate_training_state(checkpoint, best)
    stored = checkpoint["extra"]["evaluation"]
    assert math.isclose(stored["score"], max(scores), rel_tol=1e-6)  # the topic carries float32
    assert int(stored["env_steps"]) == steps[scores.index(max(scores))]
    assert json.loads(eval_path(best).read_text())["score"] == stored["score"]

    # Evaluation stored nothing: the buffer holds training transitions only.
    final = load_checkpoint_file(read_pointer(run, "latest"))
    assert final["extra"]["env_steps"] == BUDGET
    assert final["extra"]["replay_buffer_size"] <= BUDGET
