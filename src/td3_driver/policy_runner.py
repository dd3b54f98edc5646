"""The policy on its device (td3_core.device chooses it): warm-up, timed inference, NaN/inf detection.

One forward pass per observation, batch of one, under torch.inference_mode (no autograd
bookkeeping). Frames travel as uint8 and are scaled on the device by the network's own first
step, so the host→device copy is a quarter of a float32 one. Warm-up passes run before the
node's timer starts: the first real command then costs what every later one costs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from td3_core.checkpoint import CheckpointError, CheckpointMeta, load_policy
from td3_core.networks import Policy

# |tanh| this close to 1 means a pre-activation beyond ~7: on every output at once, for a neutral
# observation, that is overflowed or broken weights (full steer and full pedal), not a policy.
SATURATED = 1.0 - 1e-6


class PolicyError(RuntimeError):
    """A policy that loads but cannot drive (e.g. its warm-up output is not finite)."""


@dataclass(frozen=True)
class Inference:
    action: np.ndarray  # (action_dim,) float32, raw network output (tanh range unless broken)
    seconds: float  # host inputs → host action, including copies (and the device sync)
    finite: bool


class PolicyRunner:
    def __init__(self, policy: Policy, meta: CheckpointMeta, device: torch.device) -> None:
        self.meta = meta
        self.device = device
        self.policy = policy.to(device).eval().requires_grad_(False)
        arch = meta.architecture
        self.frames_shape = (arch.frame_stack, arch.image_size, arch.image_size)
        self.vector_dim = arch.vector_dim
        self._empty_vector = torch.zeros((1, 0), dtype=torch.float32, device=device)

    @classmethod
    def load(cls, path: str, device: torch.device) -> PolicyRunner:
        """Load, validate and build a policy from a checkpoint file (CheckpointError if unusable)."""
        policy, meta = load_policy(path, device="cpu")
        return cls(policy, meta, device)

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).unsqueeze(0).to(self.device)

    def infer(self, frames: np.ndarray, vector: np.ndarray) -> Inference:
        """frames: uint8 (stack, H, W); vector: float32 (vector_dim,) → one action."""
        if frames.shape != self.frames_shape or frames.dtype != np.uint8:
            raise ValueError(f"frames {frames.shape} {frames.dtype}, expected {self.frames_shape} uint8")
        if vector.shape != (self.vector_dim,):
            raise ValueError(f"vector of shape {vector.shape}, expected ({self.vector_dim},)")
        start = time.perf_counter()
        with torch.inference_mode():
            frames_t = self._tensor(frames)
            vector_t = self._tensor(vector.astype(np.float32, copy=False)) if self.vector_dim else self._empty_vector
            action = self.policy(frames_t, vector_t)[0].cpu().numpy()  # .cpu() waits for the device
        seconds = time.perf_counter() - start
        return Inference(action, seconds, bool(np.isfinite(action).all()))

    def warm_up(self, iterations: int) -> Inference | None:
        """Forward passes on a neutral observation (black frames, zero vector); PolicyError if an
        output is NaN/inf or every output is saturated."""
        result = None
        frames = np.zeros(self.frames_shape, dtype=np.uint8)
        vector = np.zeros(self.vector_dim, dtype=np.float32)
        for _ in range(iterations):
            result = self.infer(frames, vector)
            if not result.finite:
                raise PolicyError(f"the policy outputs {result.action.tolist()} on a neutral observation")
            if result.action.size and bool((np.abs(result.action) >= SATURATED).all()):
                raise PolicyError(
                    f"the policy saturates every output ({result.action.tolist()}) on a neutral observation: "
                    "overflowed or broken weights"
                )
        return result


def load_runner(path: str, device: torch.device, warmup_iterations: int) -> PolicyRunner:
    """A ready-to-drive runner, or CheckpointError / PolicyError saying why not."""
    runner = PolicyRunner.load(path, device)
    try:
        runner.warm_up(warmup_iterations)
    except PolicyError as error:
        raise CheckpointError(f"checkpoint '{path}': {error}") from error
    return runner
