"""Kill -9 at random moments, many times: no checkpoint is ever lost or half-read.

Two targets, each killed with SIGKILL at a random moment, then checked and restarted:

    writer    a process that does nothing but write full-size training checkpoints through
              the trainer's CheckpointManager (default networks, optimizers, ~55 MB each), so
              most kills land in the middle of a write; each restart resumes from `latest`
    trainer   the real trainer node against the embedded simulator (both processes, DDS),
              checkpointing every few steps; each restart is `resume:=latest`

After every kill: every file named like a checkpoint must be complete, `latest` must name one that loads with
weights_only and passes the training-state schema check; its step must not be older than the newest one seen
complete before; and the restarted process must continue from it (its step counter moves on
from the checkpoint's). Leftover temp files (a write that was cut) are counted, and must never
be taken for a checkpoint.

    python -m tools.kill_loop [--target writer|trainer] [--kills N] [--seed S]

Prints one JSON object (kills, checkpoints verified, kills during a write, resumes verified,
failures) and a one-line summary; exits non-zero on any failure.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from td3_core.checkpoint import (
    CheckpointError,
    checkpoint_step,
    list_checkpoints,
    load_checkpoint_file,
    read_latest_pointer,
    resolve_checkpoint,
    training_payload,
    validate_training_state,
)

SCENARIO = "killtest"
STARTED_RE = re.compile(r"WRITER START (\d+)")
TRAINER_START_RE = re.compile(r"at env step (\d+)")


@dataclass
class Report:
    target: str
    kills: int = 0
    checkpoints_verified: int = 0
    kills_before_a_first_save: int = 0  # nothing to verify yet: the first write had not finished
    kills_during_a_write: int = 0  # a temp file was left behind: the kill cut a write
    resumes_verified: int = 0
    failures: list[str] = field(default_factory=list)
    seen_temp_files: set[Path] = field(default_factory=set, repr=False)

    @property
    def crashes(self) -> int:
        return len(self.failures)


# --------------------------------------------------------------------------- the writer process


def writer_main(run_dir: Path) -> None:
    """Resume from latest if there is one, then write checkpoints as fast as the disk allows."""
    import torch

    from td3_core.actions import ActionConfig
    from td3_core.networks import Architecture
    from td3_core.preprocessing import PreprocessConfig
    from td3_core.vector_state import ObservationConfig
    from td3_trainer.checkpointing import CheckpointManager, load_resume
    from td3_trainer.config import TD3Config
    from td3_trainer.td3 import TD3Agent

    torch.set_num_threads(1)
    agent = TD3Agent(Architecture(), TD3Config(), "cpu")
    step = 0
    if read_latest_pointer(run_dir) is not None:
        resumed = load_resume(resolve_checkpoint(run_dir), with_replay=False)
        agent.restore(resumed.state)
        step = int(resumed.extra["env_steps"])
    print(f"WRITER START {step}", flush=True)
    manager = CheckpointManager(run_dir, SCENARIO, every=10, keep_last=2, save_replay_buffer=False)
    while True:
        step += 10
        agent.total_it = step
        payload = training_payload(
            agent.state(),
            preprocess=PreprocessConfig(),
            observation=ObservationConfig(),
            action=ActionConfig(),
            config=TD3Config(),
            extra={"env_steps": step},
        )
        manager.save(payload, step, None)


# --------------------------------------------------------------------------- checks


def temp_files(run_dir: Path) -> list[Path]:
    return [p for p in run_dir.glob(".*") if "tmp" in p.name] if run_dir.is_dir() else []


def verify(run_dir: Path, newest_seen: int, report: Report) -> int:
    """Check what a kill left; returns the step of the checkpoint `latest` names (-1: none yet)."""
    leftovers = temp_files(run_dir)
    report.kills_during_a_write += bool(set(leftovers) - report.seen_temp_files)
    report.seen_temp_files.update(leftovers)
    if read_latest_pointer(run_dir) is None:
        if newest_seen >= 0:
            report.failures.append(f"'latest' vanished after step {newest_seen} had been saved")
        else:
            report.kills_before_a_first_save += 1
        return -1
    try:
        path = resolve_checkpoint(run_dir)
        if path in leftovers or path.name.startswith("."):
            raise CheckpointError(f"'latest' names a temp file {path.name}")
        checkpoint = load_checkpoint_file(path)
        validate_training_state(checkpoint, path)
    except CheckpointError as error:
        report.failures.append(f"after kill {report.kills}: {error}")
        return newest_seen
    # Every file named like a checkpoint is complete too (the driver's hot reload watches names).
    for other in list_checkpoints(run_dir):
        try:
            validate_training_state(load_checkpoint_file(other), other)
        except CheckpointError as error:
            report.failures.append(f"after kill {report.kills}: a file named like a checkpoint is broken: {error}")
    step = checkpoint_step(path)
    if step < newest_seen:
        report.failures.append(f"'latest' went back from step {newest_seen} to {step}")
    report.checkpoints_verified += 1
    return step


def _popen(args: list[str], log: Path) -> subprocess.Popen:
    handle = open(log, "ab")  # noqa: SIM115 - owned by the child
    try:
        return subprocess.Popen(
            [sys.executable, *args],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
    finally:
        handle.close()


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _wait_for(log: Path, pattern: re.Pattern[str], offset: int, proc: subprocess.Popen, timeout_s: float) -> int | None:
    """The first group of `pattern` in the log after `offset`, once it appears."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")[offset:]
        match = pattern.search(text)
        if match:
            return int(match.group(1))
        if proc.poll() is not None:
            return None
        time.sleep(0.05)
    return None


# --------------------------------------------------------------------------- loops


def kill_round(
    report: Report,
    proc: subprocess.Popen,
    log: Path,
    offset: int,
    what: str,
    newest: int,
    run_dir: Path,
    delay_s: float,
    wait_for_checkpoint: bool = False,
) -> int | None:
    """One round: `proc` must announce the step it starts from (the newest checkpoint's), then
    it gets SIGKILLed after `delay_s` (after its first checkpoint with `wait_for_checkpoint`) and
    what it left is verified. Returns the newest verified step, None if it never started."""
    pattern = STARTED_RE if what == "writer" else TRAINER_START_RE
    try:
        started = _wait_for(log, pattern, offset, proc, 120.0)
        if started is None:
            report.failures.append(f"the {what} did not start (exit {proc.poll()}); see {log}")
            return None
        if started != max(newest, 0):
            report.failures.append(f"the {what} resumed at step {started}, latest was {newest}")
        else:
            report.resumes_verified += newest >= 0
        if wait_for_checkpoint:
            deadline = time.monotonic() + 120.0
            while read_latest_pointer(run_dir) is None and proc.poll() is None and time.monotonic() <= deadline:
                time.sleep(0.05)
        time.sleep(delay_s)
    finally:
        _kill(proc)
    report.kills += 1
    return max(newest, verify(run_dir, newest, report))


def writer_loop(kills: int, work: Path, rng: random.Random, max_delay_s: float) -> Report:
    report = Report("writer")
    run_dir, log = work / "run", work / "writer.log"
    newest: int | None = -1
    for _ in range(kills):
        offset = log.stat().st_size if log.exists() else 0
        proc = _popen(["-m", "tools.kill_loop", "--child-writer", str(run_dir)], log)
        newest = kill_round(report, proc, log, offset, "writer", newest, run_dir, rng.uniform(0.0, max_delay_s))
        if newest is None:
            break
    return report


def trainer_loop(kills: int, work: Path, rng: random.Random, max_delay_s: float) -> Report:
    from td3_bringup.graph import repo_config_dir, simulator_node, trainer_node
    from td3_bringup.runner import node_command, stop_processes

    report = Report("trainer")
    models = work / "models"
    run_dir = models / "killed"
    config = repo_config_dir()
    sim = simulator_node(config, sync=True, overrides={"image_width": 84, "image_height": 84})
    sim_proc = _popen(node_command(sim)[1:], work / "simulator.log")
    log = work / "trainer.log"
    newest: int | None = -1
    try:
        for _ in range(kills):
            overrides = {
                "run_name": "killed",
                "models_dir": str(models),
                "scenario": SCENARIO,
                "checkpoint_every": 20,
                "keep_last": 2,
                "learning_starts": 40,
                "batch_size": 16,
                "max_episode_steps": 100,
                "progress": False,
                "tensorboard": False,
                "resume": "latest" if newest >= 0 else "",
            }
            offset = log.stat().st_size if log.exists() else 0
            proc = _popen(node_command(trainer_node(config, overrides))[1:], log)
            # Until a first checkpoint exists, then a random moment (often inside a write).
            delay = rng.uniform(0.0, max_delay_s)
            newest = kill_round(report, proc, log, offset, "trainer", newest, run_dir, delay, wait_for_checkpoint=True)
            if newest is None:
                break
    finally:
        stop_processes([sim_proc])
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=("writer", "trainer"), default="writer")
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--max-delay-s", type=float, default=0, help="kill within this after start (default 1.5 / 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", type=Path, help="keep files here (default: a temporary directory)")
    parser.add_argument("--child-writer", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_writer:
        writer_main(args.child_writer)
        return 0
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(101, 200)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    rng = random.Random(args.seed)
    loop = writer_loop if args.target == "writer" else trainer_loop
    delay = args.max_delay_s or (1.5 if args.target == "writer" else 3.0)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="td3_kill_") as tmp:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        report = loop(args.kills, work, rng, delay)
    result = {k: v for k, v in asdict(report).items() if k != "seen_temp_files"}
    result |= {"crashes": report.crashes, "seconds": round(time.monotonic() - started, 1)}
    print(json.dumps(result, indent=2))
    print(
        f"kill_loop ({report.target}): {report.kills} kills survived, {report.checkpoints_verified} checkpoints "
        f"verified, {report.kills_during_a_write} kills cut a write, {report.resumes_verified} resumes verified, "
        f"{report.crashes} failures"
    )
    return 1 if report.failures or report.kills < args.kills else 0


if __name__ == "__main__":
    sys.exit(main())
