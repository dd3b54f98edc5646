"""PNG files of the camera, with no imaging library: zlib + struct.

    python -m td3_sim.snapshot --out docs/images [--track loop] [--seed 0] [--steps 60]

drives the car a little along the route (so the picture shows the road ahead from the lane)
and writes camera_front_800x600.png, camera_front_84x84.png and camera_front_84x84_gray_x4.png
(the grayscale 84x84 frame the networks see, upscaled 4x with nearest neighbours).
"""

from __future__ import annotations

import argparse
import math
import struct
import sys
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def png_bytes(image: np.ndarray, bgr: bool = True) -> bytes:
    """PNG of an (H, W) gray or (H, W, 3|4) uint8 image; channel order BGR(A) unless bgr=False."""
    image = np.ascontiguousarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"PNG needs uint8 pixels, got {image.dtype}")
    if image.ndim == 2:
        colour_type, pixels = 0, image
    elif image.ndim == 3 and image.shape[2] in (3, 4):
        pixels = image[..., [2, 1, 0, *range(3, image.shape[2])]] if bgr else image
        colour_type = 2 if image.shape[2] == 3 else 6
    else:
        raise ValueError(f"PNG needs (H, W), (H, W, 3) or (H, W, 4), got {image.shape}")
    height, width = image.shape[:2]
    rows = np.ascontiguousarray(pixels).reshape(height, -1)
    raw = np.zeros((height, rows.shape[1] + 1), dtype=np.uint8)  # filter byte 0 (None) per row
    raw[:, 1:] = rows

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw.tobytes(), 9))
        + chunk(b"IEND", b"")
    )


def write_png(path: Path | str, image: np.ndarray, bgr: bool = True) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(image, bgr=bgr))
    return path


def gray(bgra: np.ndarray) -> np.ndarray:
    """BT.601 luma in integers, the same formula as td3_core's image decoding."""
    b, g, r = (bgra[..., i].astype(np.uint32) for i in range(3))
    return ((r * 77 + g * 150 + b * 29 + 128) >> 8).astype(np.uint8)


def drive_along_route(world, steps: int) -> None:
    """A simple lane-keeping controller, so that snapshots are taken from the lane."""
    for _ in range(steps):
        x, y, yaw = world.pose
        points = world.route_points
        nearest = int(np.argmin(np.hypot(points[:, 0] - x, points[:, 1] - y)))
        target = points[(nearest + 4) % len(points)]
        error = math.atan2(target[1] - y, target[0] - x) - yaw
        error = (error + math.pi) % (2 * math.pi) - math.pi
        world.step(throttle=0.5 if world.speed < 8.0 else 0.0, steer=float(np.clip(-2.0 * error, -1, 1)), brake=0.0)


def main(argv: Sequence[str] | None = None) -> int:
    from td3_sim.world import SimConfig, SimWorld

    parser = argparse.ArgumentParser(prog="python -m td3_sim.snapshot", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    parser.add_argument("--track", default="loop", choices=("loop", "procedural"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=60, help="ticks driven before the picture")
    parser.add_argument("--pitch", type=float, default=None, help="camera pitch, degrees down")
    parser.add_argument("--obstacles", type=int, default=0)
    parser.add_argument("--randomize-lighting", action="store_true")
    args = parser.parse_args(argv)

    written = []
    for width, height in ((800, 600), (84, 84)):
        extra = {} if args.pitch is None else {"camera_pitch_deg": args.pitch}
        config = SimConfig(
            image_width=width,
            image_height=height,
            track=args.track,
            seed=args.seed,
            obstacles=args.obstacles,
            randomize_lighting=args.randomize_lighting,
            **extra,
        )
        world = SimWorld(config)
        world.reset(args.seed)
        drive_along_route(world, args.steps)
        image = world.render()
        written.append(write_png(args.out / f"camera_front_{width}x{height}.png", image))
        if (width, height) == (84, 84):
            big = np.repeat(np.repeat(gray(image), 4, axis=0), 4, axis=1)
            written.append(write_png(args.out / "camera_front_84x84_gray_x4.png", big))
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
