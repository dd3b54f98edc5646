"""The simulator's own record of what happened, for tests and tools: one JSON object a line.

Kinds: "tick" (frame, stamp_ns, the car's true pose, speed, on_road, lateral offset, collision,
route_version), "command" (the frame it arrived at, the stamp it answers, its values),
"set_transform", "goal", "route" (version, trigger, points, first and last point), "reset" (the
reset service's: seed, track length) and "event" (its stamp, and the frame whose messages it
went out with).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any


class GroundTruthLog:
    def __init__(self, path: str) -> None:
        self._file: IO[str] | None = None
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives with the node

    def write(self, kind: str, **values: Any) -> None:
        if self._file is not None:
            self._file.write(json.dumps({"kind": kind, **values}) + "\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read(path: str | Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as file:
        return [json.loads(line) for line in file if line.strip()]
