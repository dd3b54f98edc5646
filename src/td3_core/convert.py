"""Convert an av_td3_system checkpoint into this project's format 2, to resume training from it.

    td3-convert original.pth models/from_original/

The file's layout variant is detected from its keys and shapes (td3_core.legacy_formats); the
result holds the networks under our names, targets initialised from the online networks,
the optimizer moments mapped to our parameter order, the architecture and input-pipeline profile
the networks were trained with, and an `original_system` record of what was done. A directory
as destination gets td3_original_step_<total_it>.pth and a `latest` pointer, so that the
trainer's `resume` and the driver's `checkpoint` can name the directory.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from td3_core.checkpoint import (
    CheckpointError,
    checkpoint_name,
    load_checkpoint_file,
    save_checkpoint,
    validate_policy,
    validate_training_state,
    write_latest_pointer,
)


def convert(source: Path, destination: str | Path, force: bool = False) -> dict:
    """Write the converted checkpoint; returns a summary. CheckpointError when it cannot be done."""
    payload = load_checkpoint_file(source)
    if "original_system" not in payload:
        raise CheckpointError(f"'{source}' is not an av_td3_system checkpoint; it needs no conversion")
    meta = validate_policy(payload, source)
    try:
        validate_training_state(payload, source)
        resumable = "yes"
    except CheckpointError as error:  # a file without critic or optimizers still drives
        resumable = f"no: {error}"
    into_directory = Path(destination).is_dir() or str(destination).endswith("/")
    target = Path(destination) / checkpoint_name("original", meta.total_it) if into_directory else Path(destination)
    if target.exists() and not force:
        raise CheckpointError(f"'{target}' exists; pass --force to replace it")
    try:
        save_checkpoint(payload, target)
        if into_directory:
            write_latest_pointer(target.parent, target)
    except OSError as error:
        raise CheckpointError(f"cannot write '{target}': {error}") from error
    return {
        "source": str(source),
        "written": str(target),
        "original_system": payload["original_system"],
        "total_it": meta.total_it,
        "resumable": resumable,
        "architecture": meta.architecture.to_dict(),
        "preprocessing": meta.preprocess.to_dict(),
        "observation": meta.observation.to_dict(),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="td3-convert", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("source", type=Path, help="an av_td3_system .pth checkpoint")
    parser.add_argument("destination", help="the .pth to write, or a run directory (existing, or ending in /)")
    parser.add_argument("--force", action="store_true", help="replace an existing destination file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        summary = convert(args.source, args.destination, args.force)
    except CheckpointError as error:
        print(f"td3-convert: {error}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
