"""Every image encoding decodes to the same grayscale, and malformed messages are refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from td3_core.image_codec import MAX_SIDE, SUPPORTED_ENCODINGS, ImageError, gray_from_image_msg, image_to_gray
from td3_core.preprocessing import PreprocessConfig, frame_from_image_msg, resize_gray

RNG = np.random.default_rng(7)
SRC = Path(__file__).resolve().parents[1] / "src"


def _msg(encoding: str, pixels: np.ndarray, step_pad: int = 0, bigendian: int = 0) -> SimpleNamespace:
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, -1).view(np.uint8) if pixels.dtype != np.uint8 else pixels.reshape(height, -1)
    if step_pad:
        rows = np.concatenate([rows, np.zeros((height, step_pad), np.uint8)], axis=1)
    return SimpleNamespace(
        encoding=encoding, height=height, width=width, step=rows.shape[1], data=rows.tobytes(), is_bigendian=bigendian
    )


def _reference_gray(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    return ((77 * r + 150 * g + 29 * b + 128) >> 8).astype(np.uint8)


def test_colour_encodings_agree_on_the_same_picture():
    rgb = RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    alpha = RNG.integers(0, 256, (6, 5, 1), dtype=np.uint8)
    expected = _reference_gray(rgb)
    variants = {
        "rgb8": rgb,
        "bgr8": rgb[..., ::-1],
        "rgba8": np.concatenate([rgb, alpha], axis=2),
        "bgra8": np.concatenate([rgb[..., ::-1], alpha], axis=2),
    }
    for encoding, pixels in variants.items():
        gray = gray_from_image_msg(_msg(encoding, np.ascontiguousarray(pixels)))
        np.testing.assert_array_equal(gray, expected, err_msg=encoding)


def test_mono_encodings_and_row_padding():
    mono = RNG.integers(0, 256, (4, 7), dtype=np.uint8)
    np.testing.assert_array_equal(gray_from_image_msg(_msg("mono8", mono, step_pad=3)), mono)
    wide = mono.astype(np.uint16) << 8 | 0x7F
    np.testing.assert_array_equal(gray_from_image_msg(_msg("mono16", wide.astype("<u2"))), mono)
    np.testing.assert_array_equal(gray_from_image_msg(_msg("mono16", wide.astype(">u2"), bigendian=1)), mono)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"encoding": "yuv422"}, "unsupported encoding"),
        ({"encoding": "32FC1"}, "unsupported encoding"),
        ({"height": 0}, "outside"),
        ({"width": MAX_SIDE + 1}, "outside"),
        ({"step": 3}, "step"),
        ({"data": b""}, "expected step"),
        ({"data": b"\x00" * 10}, "expected step"),
    ],
)
def test_malformed_messages_are_refused_with_a_reason(fields: dict, reason: str):
    msg = _msg("bgra8", np.zeros((4, 4, 4), np.uint8))
    for key, value in fields.items():
        setattr(msg, key, value)
    with pytest.raises(ImageError, match=reason):
        gray_from_image_msg(msg)


def test_huge_dimensions_are_refused_before_allocating():
    with pytest.raises(ImageError):
        image_to_gray("bgra8", 8000, 8000, 8000 * 4, b"")


@settings(max_examples=300, deadline=None)
@given(
    encoding=st.sampled_from([*SUPPORTED_ENCODINGS, "BGRA8", "bayer_rggb8", "", "16SC1"]),
    height=st.integers(-2, 40),
    width=st.integers(-2, 40),
    step=st.integers(-4, 200),
    size=st.integers(0, 6000),
    bigendian=st.integers(0, 1),
)
def test_fuzzed_fields_decode_or_raise_image_error(encoding, height, width, step, size, bigendian):
    data = bytes(RNG.integers(0, 256, size, dtype=np.uint8))
    try:
        gray = image_to_gray(encoding, height, width, step, data, bigendian)
    except ImageError:
        return
    assert gray.shape == (height, width) and gray.dtype == np.uint8


def test_resize_is_area_average_and_identity_at_target_size():
    image = np.arange(16, dtype=np.uint8).reshape(4, 4) * 10
    np.testing.assert_array_equal(resize_gray(image, 4), image)
    halved = resize_gray(image, 2)
    expected = np.rint(image.reshape(2, 2, 2, 2).astype(float).mean(axis=(1, 3))).astype(np.uint8)
    np.testing.assert_array_equal(halved, expected)


def test_camera_frame_becomes_84x84_uint8():
    frame = frame_from_image_msg(_msg("bgra8", RNG.integers(0, 256, (600, 800, 4), dtype=np.uint8)), PreprocessConfig())
    assert frame.shape == (84, 84) and frame.dtype == np.uint8


def _exact_area_resize(gray: np.ndarray, size: int) -> np.ndarray:
    """The reference: area resampling in whole numbers (int64, no BLAS), rounded half to even."""

    def overlaps(src: int) -> np.ndarray:
        edges = np.arange(size + 1) * src  # output pixel edges, in source pixels times size
        pixels = np.arange(src + 1) * size
        return np.clip(
            np.minimum(edges[1:, None], pixels[None, 1:]) - np.maximum(edges[:-1, None], pixels[None, :-1]), 0, None
        )

    height, width = gray.shape
    total = overlaps(height) @ gray.astype(np.int64) @ overlaps(width).T
    quotient, remainder = np.divmod(total, height * width)
    return (
        quotient + ((2 * remainder > height * width) | ((2 * remainder == height * width) & (quotient % 2 == 1)))
    ).astype(np.uint8)


RESIZE_SHAPES = [(120, 160), (600, 800), (90, 84), (300, 400), (85, 170), (1080, 1920)]
_RESIZE_SCRIPT = f"""
import sys
import numpy as np
from td3_core.preprocessing import resize_gray
rng = np.random.default_rng(7)
frames = [resize_gray(rng.integers(0, 256, s, dtype=np.uint8), 84) for s in {RESIZE_SHAPES} for _ in range(3)]
np.save(sys.argv[1], np.stack(frames))
"""


@pytest.mark.parametrize("threads", ["1", "2", "4"])
def test_resize_is_exact_whatever_blas_threads_the_process_has(tmp_path: Path, threads: str):
    """The preprocessing node runs one BLAS thread and the trainer the default pool: the frames must
    be the same bytes (a float32 product rounded differently per thread count on some machines)."""
    out = tmp_path / "frames.npy"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads, "PYTHONPATH": str(SRC)}
    subprocess.run([sys.executable, "-c", _RESIZE_SCRIPT, str(out)], env=env, check=True, timeout=120)
    rng = np.random.default_rng(7)
    images = [rng.integers(0, 256, s, dtype=np.uint8) for s in RESIZE_SHAPES for _ in range(3)]
    expected = np.stack([_exact_area_resize(image, 84) for image in images])
    np.testing.assert_array_equal(np.load(out), expected)
