"""What td3-run and td3-demo add to a running graph on request: an MCAP recording, a live viewer.

Both are topic taps in the calling process (td3_bringup.topic_tap), started after the nodes and
closed before they stop, so a recording ends with a complete MCAP summary.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path


def add_watch_arguments(parser: argparse.ArgumentParser) -> None:
    """--record / --view (td3-run)."""
    parser.add_argument("--record", type=Path, metavar="FILE.mcap", help="record every topic to this MCAP file")
    parser.add_argument(
        "--record-image-hz", type=float, default=0.0, help="record images at most this often (0 = every one)"
    )
    add_view_arguments(parser)


def add_view_arguments(parser: argparse.ArgumentParser) -> None:
    """--view (td3-run and td3-demo, which always records)."""
    parser.add_argument("--view", action="store_true", help="serve every topic to Foxglove on ws://localhost:PORT")
    parser.add_argument("--view-port", type=int, default=8765)
    parser.add_argument("--view-image-hz", type=float, default=10.0, help="images to the viewer at most this often")


@contextlib.contextmanager
def watching(args: argparse.Namespace) -> Iterator[None]:
    """The recorder and the live viewer the arguments ask for, open for the block's duration."""
    from td3_bringup.topic_tap import TapConfig

    closers = []
    try:
        if getattr(args, "record", None):
            from td3_bringup.recording import Recorder

            try:
                closers.append(Recorder(args.record, TapConfig(max_image_hz=args.record_image_hz)))
            except OSError as error:  # what was asked for cannot be done: stop, saying why
                raise SystemExit(f"[watch] cannot record to {args.record}: {error}") from error
            print(f"[watch] recording to {args.record}", file=sys.stderr)
        if args.view:
            from td3_bringup.live_view import LiveViewer

            try:
                viewer = LiveViewer(port=args.view_port, config=TapConfig(max_image_hz=args.view_image_hz))
            except RuntimeError as error:  # e.g. the port is taken: the graph runs on without a viewer
                print(f"[watch] no live view on port {args.view_port}: {error}", file=sys.stderr)
            else:
                closers.append(viewer)
                print(f"[watch] live view: open {viewer.url} in Foxglove", file=sys.stderr)
        yield
    finally:
        for closer in reversed(closers):
            closer.close()
