"""What produced a benchmark result: the code's commit and the machine's CPU and math libraries.

Two runs of the same seed repeat each other step for step only on the same code and the same
CPU kernels: oneDNN picks its convolution kernels by the instruction set it finds (measured: the
same convolution on AVX2 kernels differs in its last bits from AVX-512 with AMX ones, and
training amplifies the last bit into another policy), so a result carries both.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
CODE_PATHS = ("src", "bench", "config")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or the platform's word for it elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def onednn_isa() -> str | None:
    """The instruction set oneDNN (torch's convolutions on the CPU) dispatches to, as its verbose
    mode names it, from a short child process (the mode is read once, at the first primitive)."""
    # the first layer of our CNN: a convolution this small is not oneDNN's (torch computes it itself)
    probe = "import torch; torch.nn.functional.conv2d(torch.zeros(1, 4, 84, 84), torch.zeros(32, 4, 8, 8), stride=4)"
    env = {**os.environ, "ONEDNN_VERBOSE": "1"}
    try:
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in done.stdout.splitlines():
        if ",cpu,isa:" in line:
            return line.split(",cpu,isa:", 1)[1].strip()
    return None


def code_version(repo: Path = REPO) -> dict:
    """The commit the code was checked out at and whether its code (src, bench, config: what
    trains and measures, not the docs) differs from it; nulls outside a git checkout (an
    installed copy)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    changed = git("status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS) if commit else None
    return {"commit": commit, "dirty": None if changed is None else bool(changed)}


def host() -> dict:
    return {
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "onednn_isa": onednn_isa(),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "numpy": np.__version__,
        "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "python": platform.python_version(),
    }
