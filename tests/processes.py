"""Start node processes for tests and always stop them, even when the test fails."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path


@contextlib.contextmanager
def node_process(args: Sequence[str], log_path: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """Run `python -m <args>` in its own process group; SIGINT, then SIGKILL, on exit."""
    with command_process([sys.executable, *args], log_path, {**os.environ, **(env or {})}) as proc:
        yield proc


@contextlib.contextmanager
def command_process(argv: Sequence[str], log_path: Path, env: dict[str, str]) -> Iterator[subprocess.Popen]:
    """Run `argv` with exactly `env` in its own process group, with SIGINT at its default
    disposition as a terminal gives it (a non-interactive shell's background jobs ignore it);
    SIGINT, then SIGKILL, on exit."""
    log = open(log_path, "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        list(argv),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        yield proc
    finally:
        stop_process(proc)
        log.close()


def stop_process(proc: subprocess.Popen, grace_s: float = 10.0) -> int | None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        deadline = time.monotonic() + grace_s
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return proc.returncode
