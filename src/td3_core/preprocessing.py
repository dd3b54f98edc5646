"""The one image pipeline of the project: camera message → 84x84 grayscale → stack of 4.

Frames are kept as uint8 all the way into the replay buffer and the driver's input tensor; the
scaling to the network's input range ([0, 1] for ours, [-1, 1] for the original system's
encoders) happens on the device in `scale_frames`, the first step of every network forward
pass. The trainer and the driver both call these functions and nothing else.

The stack fill at episode start is part of the checkpoint's profile: ours repeats the first
frame; the original system starts from zero-valued frames, which in [-1, 1] is mid-grey (stored
as grey level 128, the uint8 nearest to 127.5: half a grey level from the original's 0.0).
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import torch

from td3_core.image_codec import ImageError, gray_from_image_msg

INPUT_RANGES = ("unit", "symmetric")  # [0, 1] and [-1, 1]
# Where a node's frames come from: the raw camera (decoded and resized here), or the topic of the
# preprocessing node (td3_preprocess), which already holds this function's output.
IMAGE_INPUTS = ("raw", "preprocessed")
RAW_IMAGE_TOPIC = "rgb_front/image"
PREPROCESSED_IMAGE_TOPIC = "rgb_front/preprocessed"  # 84x84 (image_size) mono8, the camera's header
STACK_FILLS = ("first_frame", "constant")
PROFILE_FIELDS = ("stack_fill", "fill_level")  # set by a checkpoint's metadata, never by a parameter


@dataclass(frozen=True)
class PreprocessConfig:
    image_size: int = 84  # output frames are image_size x image_size
    frame_stack: int = 4  # frames per observation, oldest first
    stack_fill: str = "first_frame"  # episode start: repeat the first frame, or constant fill_level frames
    fill_level: int = 0  # grey level of the constant frames

    def __post_init__(self) -> None:
        if self.stack_fill not in STACK_FILLS:
            raise ValueError(f"stack_fill must be one of {', '.join(STACK_FILLS)}, got {self.stack_fill!r}")
        if not 0 <= self.fill_level <= 255:
            raise ValueError(f"fill_level must be in 0..255, got {self.fill_level}")
        if not 8 <= self.image_size <= 512:
            raise ValueError(f"image_size must be in 8..512, got {self.image_size}")
        if not 1 <= self.frame_stack <= 16:
            raise ValueError(f"frame_stack must be in 1..16, got {self.frame_stack}")

    @property
    def constant_fill(self) -> int | None:
        """The grey level of the frames before an episode's first one, or None: the first repeated."""
        return self.fill_level if self.stack_fill == "constant" else None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> PreprocessConfig:
        fields = cls.__dataclass_fields__
        return cls(**{k: (str(v) if k == "stack_fill" else int(v)) for k, v in values.items() if k in fields})


@lru_cache(maxsize=16)
def _area_overlaps(src: int, dst: int, dtype: type = np.float64) -> np.ndarray:
    """(dst, src) matrix of how much of source pixel j output pixel i covers, in units of 1/dst of
    a source pixel: whole numbers, each row summing to src (area resampling)."""
    overlaps = np.zeros((dst, src), dtype=dtype)
    for i in range(dst):
        start, end = i * src, (i + 1) * src  # the output pixel's span, in source pixels times dst
        for j in range(start // dst, min(-(-end // dst), src)):
            overlaps[i, j] = min(end, (j + 1) * dst) - max(start, j * dst)
    overlaps.setflags(write=False)
    return overlaps


def resize_gray(gray: np.ndarray, size: int) -> np.ndarray:
    """Area-resample an (H, W) uint8 image to (size, size) uint8, rounded half to even.

    Exact: both products are sums of whole numbers held exactly (the first below 255 * H < 2**24,
    float32's exact range, for any side MAX_SIDE allows; the second in float64), so BLAS's
    summation order, kernels and thread count cannot change a rounding: the preprocessing node
    (one BLAS thread), the trainer and the driver get the same bytes on every machine."""
    height, width = gray.shape
    if height == size and width == size:
        return np.ascontiguousarray(gray)
    row_sums = _area_overlaps(height, size, np.float32) @ gray.astype(np.float32)
    total = (row_sums.astype(np.float64) @ _area_overlaps(width, size).T).astype(np.int64)
    quotient, remainder = np.divmod(total, height * width)
    round_up = (2 * remainder > height * width) | ((2 * remainder == height * width) & (quotient % 2 == 1))
    return np.minimum(quotient + round_up, 255).astype(np.uint8)


def frame_from_image_msg(msg, config: PreprocessConfig) -> np.ndarray:
    """sensor_msgs/Image → (size, size) uint8 frame; raises ImageError on a bad message."""
    return resize_gray(gray_from_image_msg(msg), config.image_size)


def frame_from_preprocessed_msg(msg, config: PreprocessConfig) -> np.ndarray:
    """The preprocessing node's sensor_msgs/Image → the frame it holds, unchanged; raises ImageError
    unless it is an image_size x image_size mono8 frame (a node run with another image_size would
    otherwise be resampled a second time, silently unlike the raw camera's frames)."""
    size = config.image_size
    if str(msg.encoding).lower() != "mono8" or msg.width != size or msg.height != size:
        raise ImageError(
            f"expected a preprocessed {size}x{size} mono8 frame, got {msg.width}x{msg.height} {msg.encoding}: "
            f"the preprocessing node's image_size must be {size} (preprocessing.image_size)"
        )
    return gray_from_image_msg(msg)


def image_topic(image_input: str) -> str:
    """The topic suffix (under /carla/<role_name>/) a node with this image_input reads."""
    if image_input not in IMAGE_INPUTS:
        raise ValueError(f"image_input must be one of {', '.join(IMAGE_INPUTS)}, got {image_input!r}")
    return RAW_IMAGE_TOPIC if image_input == "raw" else PREPROCESSED_IMAGE_TOPIC


def frame_reader(image_input: str):
    """frame_from_image_msg or frame_from_preprocessed_msg, for a node's image_input."""
    image_topic(image_input)  # validates
    return frame_from_image_msg if image_input == "raw" else frame_from_preprocessed_msg


class FrameStacker:
    """Keeps the last `frame_stack` frames; at episode start the stack is filled as configured."""

    def __init__(self, config: PreprocessConfig) -> None:
        self.config = config
        self._frames: deque[np.ndarray] = deque(maxlen=config.frame_stack)

    def reset(self) -> None:
        self._frames.clear()

    def push(self, frame: np.ndarray) -> np.ndarray:
        """Add a frame; returns the (frame_stack, size, size) uint8 stack, oldest first."""
        if not self._frames:
            if self.config.constant_fill is not None:
                self._frames.extend([np.full_like(frame, self.config.constant_fill)] * (self.config.frame_stack - 1))
                self._frames.append(frame)
            else:
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


def scale_frames(frames: torch.Tensor, out: torch.Tensor | None = None, input_range: str = "unit") -> torch.Tensor:
    """uint8 stacks → float32 in [0, 1] (unit) or [-1, 1] (symmetric: (x/255 - 0.5)/0.5) on the
    frames' device; the networks' input scaling.

    `out`: a float32 tensor of the same shape to write into (its layout is kept)."""
    scaled = frames.to(torch.float32) if out is None else out.copy_(frames)
    scaled.div_(255.0)
    if input_range == "symmetric":
        scaled.sub_(0.5).div_(0.5)
    return scaled
