"""The one device choice of trainer and driver: `device` is auto, cpu, cuda or cuda:<index>.

auto takes the GPU when torch can use one and the CPU otherwise; an explicit cuda that cannot be
used is an error, never a silent fall back to the CPU (a run or a drive would be slower than
asked for without saying so).
"""

from __future__ import annotations

import re

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:<index>")
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


class DeviceError(RuntimeError):
    """The requested device is no device name, or cannot be used here."""


def device_name_problem(requested: object) -> str | None:
    """Why `requested` is no device name (for parameter validation), or None."""
    if isinstance(requested, str) and _DEVICE.fullmatch(requested):
        return None
    return f"must be {', '.join(repr(c) for c in DEVICE_CHOICES[:-1])} or 'cuda:<index>'"


def select_device(requested: str = "auto") -> torch.device:
    """auto → cuda when available, else cpu; cpu; cuda[:n] only where that GPU exists."""
    problem = device_name_problem(requested)
    if problem is not None:
        raise DeviceError(f"unknown device {requested!r}: {problem}")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device '{requested}' requested but CUDA is not available to torch {torch.__version__} "
                "(no GPU, no driver, or a CPU-only build); use device:=auto or device:=cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"device '{requested}' requested but only {torch.cuda.device_count()} GPU(s) exist")
    return device
