"""sensor_msgs/Image → grayscale uint8 array, for every encoding a camera or the bridge sends.

Pure numpy on the message's fields (no cv_bridge needed, none of its copies); every way a
message can be malformed raises ImageError with a reason a log line can carry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Refuse absurd frames before allocating anything: 8K x 8K is far above any car camera.
MAX_SIDE = 8192
MAX_BYTES = 256 * 1024 * 1024


class ImageError(ValueError):
    """A message that cannot be turned into a frame; the text says why."""


@dataclass(frozen=True)
class _Layout:
    channels: int
    itemsize: int
    order: str  # channel order of colour encodings: "bgr", "rgb" or "" for mono


_LAYOUTS: dict[str, _Layout] = {
    "bgra8": _Layout(4, 1, "bgr"),
    "bgr8": _Layout(3, 1, "bgr"),
    "rgba8": _Layout(4, 1, "rgb"),
    "rgb8": _Layout(3, 1, "rgb"),
    "mono8": _Layout(1, 1, ""),
    "8uc1": _Layout(1, 1, ""),
    "mono16": _Layout(1, 2, ""),
    "16uc1": _Layout(1, 2, ""),
    "8uc3": _Layout(3, 1, "bgr"),  # OpenCV's default channel order
    "8uc4": _Layout(4, 1, "bgr"),
}
SUPPORTED_ENCODINGS = tuple(sorted(_LAYOUTS))


def gray_from_channels(pixels: np.ndarray, order: str) -> np.ndarray:
    """BT.601 luma in integer arithmetic: exact, and the same on every machine."""
    if order == "bgr":
        b, g, r = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    else:
        r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    luma = r.astype(np.uint32) * 77 + g.astype(np.uint32) * 150 + b.astype(np.uint32) * 29 + 128
    return (luma >> 8).astype(np.uint8)


def image_to_gray(
    encoding: str, height: int, width: int, step: int, data: bytes | np.ndarray, is_bigendian: int = 0
) -> np.ndarray:
    """Decode the fields of a sensor_msgs/Image into an (height, width) uint8 grayscale array."""
    layout = _LAYOUTS.get(str(encoding).lower())
    if layout is None:
        raise ImageError(f"unsupported encoding '{encoding}' (supported: {', '.join(SUPPORTED_ENCODINGS)})")
    if not (0 < height <= MAX_SIDE and 0 < width <= MAX_SIDE):
        raise ImageError(f"image size {width}x{height} outside 1..{MAX_SIDE}")
    row_bytes = width * layout.channels * layout.itemsize
    if step < row_bytes:
        raise ImageError(f"step {step} is smaller than width*bytes_per_pixel = {row_bytes}")
    if step * height > MAX_BYTES:
        raise ImageError(f"image of {step * height} bytes exceeds the {MAX_BYTES} byte limit")
    buffer = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.view(np.uint8)
    if buffer.size < step * height:
        raise ImageError(f"data has {buffer.size} bytes, expected step*height = {step * height}")
    rows = buffer[: step * height].reshape(height, step)[:, :row_bytes]
    if layout.itemsize == 2:
        dtype = np.dtype(">u2" if is_bigendian else "<u2")
        mono16 = np.ascontiguousarray(rows).view(dtype).reshape(height, width)
        return (mono16 >> 8).astype(np.uint8)
    pixels = rows.reshape(height, width, layout.channels)
    if layout.channels == 1:
        return np.ascontiguousarray(pixels[..., 0])
    return gray_from_channels(pixels, layout.order)


def gray_from_image_msg(msg) -> np.ndarray:
    """Same as image_to_gray, taking a sensor_msgs/Image (or anything with its fields)."""
    return image_to_gray(msg.encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian)
