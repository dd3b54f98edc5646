"""Hostile checkpoint files through the driver's loading path: every one refused, none hangs.

Classes: files that are not regular files (FIFO pointer, FIFO / device checkpoint, a huge
pointer file), values finite in the file but not in the network (float64 beyond float32, a
policy saturated on a neutral input), memory decided by the file (a compressed record that
expands, architecture fields that would allocate gigabytes), and malformed architecture or
tensor fields (which must be refusals, not tracebacks). Each case runs in a worker thread
with a deadline, so a hang is reported instead of hanging this tool.

    python -m tools.hostile_files [--deadline-s 30]

Prints one JSON object (cases, refused, accepted, hangs, crashes, slowest refusal, peak
resident memory) and a one-line summary; exits non-zero if any case is not refused.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch

from td3_core.checkpoint import CheckpointError, save_checkpoint, write_latest_pointer
from td3_driver.policy_runner import load_runner
from tools.fuzz_driver import write_checkpoint

CPU = torch.device("cpu")
Case = Callable[[Path, dict], Path | str]  # (work dir, a valid payload) → what to load


def _payload_file(work: Path, payload: dict, name: str) -> Path:
    return save_checkpoint(payload, work / name)


def fifo_pointer(work: Path, payload: dict) -> Path:
    run = work / "run_fifo"
    run.mkdir()
    os.mkfifo(run / "latest")
    return run


def fifo_checkpoint(work: Path, payload: dict) -> Path:
    path = work / "fifo.pth"
    os.mkfifo(path)
    return path


def device_checkpoint(work: Path, payload: dict) -> Path:
    path = work / "zero.pth"
    path.symlink_to("/dev/zero")
    return path


def huge_pointer(work: Path, payload: dict) -> str:
    run = work / "run_huge"
    run.mkdir()
    with open(run / "latest", "wb") as handle:
        handle.truncate(64 * 1024**3)  # sparse: 64 GiB that reading whole would try to hold
    return str(run)


def float64_overflow(work: Path, payload: dict) -> Path:
    actor = {k: v.double() for k, v in payload["actor_state_dict"].items()}
    actor["fc3.bias"] = torch.tensor([1e300, 1e300], dtype=torch.float64)  # finite; inf in float32
    return _payload_file(work, {**payload, "actor_state_dict": actor}, "float64.pth")


def saturated_policy(work: Path, payload: dict) -> Path:
    actor = dict(payload["actor_state_dict"])
    actor["fc3.weight"] = torch.zeros_like(actor["fc3.weight"])
    actor["fc3.bias"] = torch.tensor([50.0, 50.0])  # full steer, full throttle whatever it sees
    return _payload_file(work, {**payload, "actor_state_dict": actor}, "saturated.pth")


def compressed_record(work: Path, payload: dict) -> Path:
    """A zeros tensor under an ignored key, deflated: a ~70 kB file that expands to 64 MB."""
    plain = io.BytesIO()
    torch.save({**payload, "junk": torch.zeros(16 * 1024**2)}, plain)
    path = work / "bomb.pth"
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for record in source.infolist():
            target.writestr(record.filename, source.read(record))
    return path


def _architecture(work: Path, payload: dict, name: str, **fields) -> Path:
    return _payload_file(work, {**payload, "architecture": {**payload["architecture"], **fields}}, name)


def huge_hidden(work: Path, payload: dict) -> Path:
    return _architecture(work, payload, "hidden.pth", hidden_dim=10**7)  # fc2 alone: 400 TB


def huge_features(work: Path, payload: dict) -> Path:
    arch = {"image_size": 512, "feature_dim": 8000}  # each field in range, the product (1.8e9) is not
    path = _architecture(work, payload, "features.pth", **arch)
    return _payload_file(work, {**torch.load(path), "preprocessing": {**payload["preprocessing"], **arch}}, path.name)


def negative_hidden(work: Path, payload: dict) -> Path:
    return _architecture(work, payload, "negative.pth", hidden_dim=-5)


def infinite_field(work: Path, payload: dict) -> Path:
    return _architecture(work, payload, "inf.pth", frame_stack=float("inf"))


def scalar_original_tensor(work: Path, payload: dict) -> Path:
    """The original format, whose architecture is read from tensor shapes: a 0-d one."""
    cnn = {**payload["actor_cnn_state_dict"], "features.0.weight": torch.tensor(1.0)}
    keys = ("actor_cnn_state_dict", "critic_cnn_state_dict", "actor_state_dict", "critic_state_dict")
    original = {k: payload[k] for k in keys} | {"actor_cnn_state_dict": cnn, "total_it": 0, "config": {}}
    return _payload_file(work, original, "scalar.pth")


def string_field(work: Path, payload: dict) -> Path:
    return _architecture(work, payload, "string.pth", feature_dim="many")


CASES: dict[str, Case] = {
    "fifo_pointer": fifo_pointer,
    "fifo_checkpoint": fifo_checkpoint,
    "device_checkpoint": device_checkpoint,
    "huge_pointer": huge_pointer,
    "float64_overflow": float64_overflow,
    "saturated_policy": saturated_policy,
    "compressed_record": compressed_record,
    "huge_hidden": huge_hidden,
    "huge_features": huge_features,
    "negative_hidden": negative_hidden,
    "infinite_field": infinite_field,
    "scalar_original_tensor": scalar_original_tensor,
    "string_field": string_field,
}


def try_case(target: Path | str, deadline_s: float) -> dict:
    """Load `target` the driver's way in a worker thread; the outcome, or a hang after the deadline."""
    outcome: dict = {}

    def load() -> None:
        start = time.perf_counter()
        try:
            load_runner(str(target), CPU, warmup_iterations=1)
            outcome["result"] = "accepted"
        except CheckpointError as error:
            outcome.update(result="refused", message=str(error))
        except BaseException as error:  # anything else is what this tool looks for
            outcome.update(result="crash", message=f"{type(error).__name__}: {error}")
        outcome["seconds"] = round(time.perf_counter() - start, 3)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(deadline_s)
    return outcome if outcome else {"result": "hang", "seconds": deadline_s}


def _release(work: Path) -> None:
    """Open every FIFO for writing once, so a loader blocked on one (an unfixed build) returns."""
    for path in work.rglob("*"):
        if path.is_fifo():
            with contextlib.suppress(OSError):
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


def make_cases(work: Path, names: list[str]) -> dict[str, Path | str]:
    valid = write_checkpoint(work / "valid" / "td3_valid_step_0.pth")
    write_latest_pointer(valid.parent, valid)
    payload = torch.load(valid, weights_only=True)
    targets = {}
    for name in names:
        (work / name).mkdir()
        targets[name] = str(CASES[name](work / name, payload))
    return targets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deadline-s", type=float, default=30.0, help="a case still loading after this is a hang")
    parser.add_argument("--cases", nargs="*", choices=sorted(CASES), help="only these cases")
    parser.add_argument("--make", type=Path, help=argparse.SUPPRESS)  # write the files only (child process)
    args = parser.parse_args(argv)
    names = args.cases or list(CASES)
    if args.make:
        print(json.dumps(make_cases(args.make, names)))
        return 0
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="td3_hostile_") as tmp:
        work = Path(tmp)
        # Written by a child process, so the peak memory below is the loader's alone.
        maker = [sys.executable, "-m", "tools.hostile_files", "--make", tmp, "--cases", *names]
        targets = json.loads(subprocess.run(maker, check=True, capture_output=True, text=True).stdout)
        baseline_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        for name, target in targets.items():
            results[name] = try_case(target, args.deadline_s)
        _release(work)
    kinds = ("refused", "accepted", "hang", "crash")
    counts = {kind: sum(r["result"] == kind for r in results.values()) for kind in kinds}
    refusals = [r["seconds"] for r in results.values() if r["result"] == "refused"]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    summary = {
        "cases": len(results),
        **counts,
        "slowest_refusal_s": max(refusals, default=0.0),
        "rss_before_mb": round(baseline_mb, 1),
        "peak_rss_growth_mb": round(peak_mb - baseline_mb, 1),
        "results": results,
    }
    print(json.dumps(summary, indent=2))
    print(
        f"hostile_files: {summary['cases']} cases, {counts['refused']} refused, {counts['accepted']} accepted, "
        f"{counts['hang']} hangs, {counts['crash']} crashes, slowest refusal {summary['slowest_refusal_s']} s, "
        f"peak memory growth {summary['peak_rss_growth_mb']} MB"
    )
    return 0 if counts["refused"] == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
