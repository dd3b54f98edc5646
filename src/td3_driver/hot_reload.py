"""Pick up a newer checkpoint while driving, without ever disturbing the policy in use.

A checkpoint is identified by (resolved path, mtime, size): `latest` and run directories
resolve to the trainer's newest complete file (its `latest` pointer moves only after the file
is complete), and a .pth path that is replaced gets a new mtime. A candidate is loaded,
validated and warmed up into a NEW runner on a worker thread; the node swaps it in only when
that succeeded. A broken candidate is remembered and not tried again until it changes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from td3_core.checkpoint import CheckpointError, resolve_checkpoint
from td3_driver.policy_runner import PolicyRunner


@dataclass(frozen=True)
class CheckpointId:
    path: Path
    mtime_ns: int
    size: int

    @classmethod
    def of(cls, path: Path) -> CheckpointId:
        stat = path.stat()
        return cls(path.resolve(), stat.st_mtime_ns, stat.st_size)

    def __str__(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class Swap:
    """A validated runner ready to replace the current one."""

    identity: CheckpointId
    runner: PolicyRunner


@dataclass(frozen=True)
class Rejected:
    identity: CheckpointId
    reason: str


Loader = Callable[[Path], PolicyRunner]  # load + validate + warm up; raises on anything unusable
Compatible = Callable[[PolicyRunner], str | None]  # why the new policy cannot replace the old one


class CheckpointWatcher:
    """poll() from a timer: starts at most one background load, reports its outcome once."""

    def __init__(
        self, spec: str, models_dir: str, current: CheckpointId, loader: Loader, compatible: Compatible
    ) -> None:
        self.spec = spec
        self.models_dir = models_dir
        self.current = current
        self._loader = loader
        self._compatible = compatible
        self._rejected: set[CheckpointId] = set()
        self._thread: threading.Thread | None = None
        self._outcome: Swap | Rejected | None = None
        self.last_error = ""  # why the newest candidate could not even be resolved (logged by the node)

    def candidate(self) -> CheckpointId | None:
        """The checkpoint the spec names now, if it is neither the current one nor known broken."""
        try:
            identity = CheckpointId.of(resolve_checkpoint(self.spec, self.models_dir))
        except (CheckpointError, OSError) as error:  # e.g. the run directory is being pruned
            self.last_error = str(error)
            return None
        self.last_error = ""
        if identity == self.current or identity in self._rejected:
            return None
        return identity

    @property
    def loading(self) -> bool:
        """A load is running now."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def busy(self) -> bool:
        """A load was started and its outcome not yet reported by poll()."""
        return self._thread is not None

    def poll(self) -> Swap | Rejected | None:
        """The outcome of a finished load (once), else start a load of a new candidate."""
        if self.loading:
            return None
        if self._thread is not None:
            self._thread = None
            outcome, self._outcome = self._outcome, None
            if isinstance(outcome, Swap):
                self.current = outcome.identity
            elif isinstance(outcome, Rejected):
                self._rejected.add(outcome.identity)
            return outcome
        identity = self.candidate()
        if identity is not None:
            self._thread = threading.Thread(target=self._load, args=(identity,), name="checkpoint-reload", daemon=True)
            self._thread.start()
        return None

    def _load(self, identity: CheckpointId) -> None:
        try:
            runner = self._loader(identity.path)
            problem = self._compatible(runner)
            self._outcome = Rejected(identity, problem) if problem else Swap(identity, runner)
        except CheckpointError as error:
            self._outcome = Rejected(identity, str(error))
        except Exception as error:  # anything else too: the running policy must not be affected
            self._outcome = Rejected(identity, f"{type(error).__name__}: {error}")

    def wait(self, timeout: float | None = None) -> None:
        """Block until a background load finishes (tests and shutdown)."""
        if self._thread is not None:
            self._thread.join(timeout)
