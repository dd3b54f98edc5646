"""The one image pipeline of the project: camera message → 84x84 grayscale → stack of 4.

Frames are kept as uint8 all the way into the replay buffer and the driver's input tensor; the
scaling to [0, 1] happens on the device in `scale_frames`, the first step of every network
forward pass. The trainer and the driver both call these functions and nothing else.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import torch

from td3_core.image_codec import gray_from_image_msg


@dataclass(frozen=True)
class PreprocessConfig:
    image_size: int = 84  # output frames are image_size x image_size
    frame_stack: int = 4  # frames per observation, oldest first

    def __post_init__(self) -> None:
        if not 8 <= self.image_size <= 512:
            raise ValueError(f"image_size must be in 8..512, got {self.image_size}")
        if not 1 <= self.frame_stack <= 16:
            raise ValueError(f"frame_stack must be in 1..16, got {self.frame_stack}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> PreprocessConfig:
        known = {k: int(v) for k, v in values.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@lru_cache(maxsize=16)
def _area_weights(src: int, dst: int) -> np.ndarray:
    """(dst, src) matrix averaging the source pixels each output pixel covers (area resampling)."""
    weights = np.zeros((dst, src), dtype=np.float32)
    scale = src / dst
    for i in range(dst):
        start, end = i * scale, (i + 1) * scale
        first, last = int(np.floor(start)), min(int(np.ceil(end)), src)
        for j in range(first, last):
            weights[i, j] = min(end, j + 1) - max(start, j)
        weights[i] /= weights[i].sum()
    weights.setflags(write=False)
    return weights


def resize_gray(gray: np.ndarray, size: int) -> np.ndarray:
    """Area-resample an (H, W) uint8 image to (size, size) uint8, deterministically."""
    height, width = gray.shape
    if height == size and width == size:
        return np.ascontiguousarray(gray)
    rows = _area_weights(height, size)
    cols = _area_weights(width, size)
    resized = rows @ gray.astype(np.float32) @ cols.T
    return np.clip(np.rint(resized), 0, 255).astype(np.uint8)


def frame_from_image_msg(msg, config: PreprocessConfig) -> np.ndarray:
    """sensor_msgs/Image → (size, size) uint8 frame; raises ImageError on a bad message."""
    return resize_gray(gray_from_image_msg(msg), config.image_size)


class FrameStacker:
    """Keeps the last `frame_stack` frames; the first frame of an episode fills the stack."""

    def __init__(self, config: PreprocessConfig) -> None:
        self.config = config
        self._frames: deque[np.ndarray] = deque(maxlen=config.frame_stack)

    def reset(self) -> None:
        self._frames.clear()

    def push(self, frame: np.ndarray) -> np.ndarray:
        """Add a frame; returns the (frame_stack, size, size) uint8 stack, oldest first."""
        if not self._frames:
            self._frames.extend([frame] * self.config.frame_stack)
        else:
            self._frames.append(frame)
        return self.stacked()

    def stacked(self) -> np.ndarray:
        if not self._frames:
            raise RuntimeError("no frame pushed since reset")
        return np.stack(self._frames, axis=0)

    def __len__(self) -> int:
        return len(self._frames)


def scale_frames(frames: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 stacks → float32 in [0, 1] on the frames' device; the networks' input scaling.

    `out`: a float32 tensor of the same shape to write into (its layout is kept)."""
    if out is None:
        return frames.to(torch.float32).div_(255.0)
    return out.copy_(frames).div_(255.0)
