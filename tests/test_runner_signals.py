"""SIGTERM (systemd, docker stop) and SIGHUP (a closed terminal) to td3-run and td3-demo stop
the whole node graph, as Ctrl-C does, and the exit status says which signal (128 + its number).
Real processes: the runner (or the demo) starts the simulator and the trainer; the test finds
them as the runner's children, signals the runner only, and checks that none is left."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.ros

STARTUP_S = 60.0
STOP_S = 60.0  # the runner's own grace (15 s per node) plus a slow machine


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid and fields[0] != "Z":
                    found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return False


def _signal_graph(command: list[str], cwd: Path, signum: int, expected_children: int) -> tuple[int | None, set[int]]:
    """Start `command`, wait for its node processes, signal it; (its exit code, nodes still alive)."""
    log = open(cwd / "out.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen([sys.executable, *command], cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    children: set[int] = set()
    try:
        deadline = time.monotonic() + STARTUP_S
        while len(children) < expected_children and time.monotonic() < deadline and proc.poll() is None:
            children = _children(proc.pid)
            time.sleep(0.2)
        assert len(children) == expected_children, (cwd / "out.log").read_text(errors="replace")
        time.sleep(3.0)  # the nodes are importing: a signal now is the hard case for them too
        proc.send_signal(signum)
        try:
            code = proc.wait(timeout=STOP_S)
        except subprocess.TimeoutExpired:
            code = None
        deadline = time.monotonic() + 5.0
        while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        return code, {pid for pid in children if _alive(pid)}
    finally:
        for pid in children | {proc.pid}:  # only what this test started
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait()
        log.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_runner_stops_its_graph_on_signal(tmp_path: Path, signum: int):
    command = ["-m", "td3_bringup.runner", "train", "-p", f"td3_trainer.models_dir:={tmp_path / 'models'}"]
    command += ["-p", f"td3_trainer.log_dir:={tmp_path / 'runs'}", "--log-dir", str(tmp_path / "logs")]
    code, left = _signal_graph(command, tmp_path, signum, expected_children=2)
    assert not left, f"nodes left running after {signal.Signals(signum).name}: {left}"
    assert code == 128 + signum, (tmp_path / "out.log").read_text(errors="replace")


@pytest.mark.slow
def test_demo_stops_its_graph_on_sigterm(tmp_path: Path):
    code, left = _signal_graph(["-m", "td3_bringup.demo", "--models-dir", "models"], tmp_path, signal.SIGTERM, 2)
    assert not left, f"nodes left running after SIGTERM: {left}"
    assert code == 128 + signal.SIGTERM, (tmp_path / "out.log").read_text(errors="replace")
    assert "[demo] SIGTERM: stopped every node" in (tmp_path / "out.log").read_text(errors="replace")
