"""Export a checkpoint's policy for use outside this project: TorchScript, ONNX and metadata.

    python -m td3_driver.export --checkpoint models/<run> --out exported/
    python -m td3_driver.export --checkpoint models/<run> --policy-only models/shipped/td3_policy.pth

Writes, in --out:
    policy.ts    TorchScript, forward(frames, vector) -> actions
    policy.onnx  ONNX, inputs frames uint8 (B, stack, H, W) and vector float32 (B, vector_dim),
                 output actions float32 (B, 2), batch dimension dynamic
    policy.json  what a consumer must reproduce: preprocessing, observation layout, action mapping
A pixels-only policy (vector_dim 0) keeps the `vector` input with shape (B, 0), so every
consumer calls every export the same way. Both files are checked against the checkpoint's
Policy on random inputs before the command reports success. --policy-only writes the
checkpoint's policy-only form instead (td3_core.checkpoint.policy_only_payload: actor CNN, actor
head, metadata; the driver loads it like any checkpoint, resuming refuses it).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from td3_core.checkpoint import CheckpointError, CheckpointMeta, load_policy, resolve_checkpoint, write_policy_only
from td3_core.image_codec import SUPPORTED_ENCODINGS
from td3_core.networks import Policy
from td3_core.preprocessing import scale_frames

EXPORT_FORMAT = "td3_drive.policy/1"
INPUT_NAMES = ("frames", "vector")
OUTPUT_NAME = "actions"
DEFAULT_OPSET = 17
TOLERANCE = 1e-5


class ExportablePolicy(torch.nn.Module):
    """Policy.forward with the vector always concatenated (a (B, 0) vector adds nothing).

    Policy skips the concatenation for an empty vector, which would leave the ONNX graph
    without a `vector` input; concatenating a zero-width tensor is the same computation.
    """

    def __init__(self, policy: Policy) -> None:
        super().__init__()
        self.actor_cnn = policy.actor_cnn
        self.actor = policy.actor

    def forward(self, frames: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
        features = self.actor_cnn(scale_frames(frames, input_range=self.actor_cnn.input_range))
        return self.actor(torch.cat([features, vector.to(features.dtype)], dim=1))


def example_inputs(meta: CheckpointMeta, batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    arch = meta.architecture
    generator = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (batch, arch.frame_stack, arch.image_size, arch.image_size), generator=generator)
    vector = torch.randn((batch, arch.vector_dim), generator=generator)
    return frames.to(torch.uint8), vector


@contextlib.contextmanager
def _torchscript_quietly():
    """TorchScript is what this command is asked to write; its deprecation notice is not news."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated.*", category=DeprecationWarning)
        yield


def export_torchscript(module: ExportablePolicy, inputs: tuple[torch.Tensor, torch.Tensor], path: Path) -> None:
    with torch.no_grad(), _torchscript_quietly():
        traced = torch.jit.trace(module, inputs, check_trace=True)
        traced.save(str(path))


def export_onnx(module: ExportablePolicy, inputs: tuple[torch.Tensor, torch.Tensor], path: Path, opset: int) -> None:
    axes = {name: {0: "batch"} for name in (*INPUT_NAMES, OUTPUT_NAME)}
    with warnings.catch_warnings():
        # The TorchScript-based exporter is the one that needs no extra packages (onnxscript).
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=".*will be removed.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(
            module,
            inputs,
            str(path),
            dynamo=False,
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_axes=axes,
            opset_version=opset,
        )


def metadata(meta: CheckpointMeta, checkpoint: Path, opset: int) -> dict:
    arch, obs = meta.architecture, meta.observation
    return {
        "format": EXPORT_FORMAT,
        "checkpoint": {
            "path": str(checkpoint),
            "sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
            "format_version": meta.format_version,
            "total_it": meta.total_it,
        },
        "files": {"torchscript": "policy.ts", "onnx": "policy.onnx"},
        "onnx_opset": opset,
        "architecture": arch.to_dict(),
        "preprocessing": {
            **meta.preprocess.to_dict(),
            "encodings": list(SUPPORTED_ENCODINGS),
            "grayscale": "BT.601 luma in integers: (77 R + 150 G + 29 B + 128) >> 8",
            "resize": "area resampling to image_size x image_size (td3_core.preprocessing.resize_gray), rounded",
            "stack": "frame_stack newest frames, oldest first; "
            + (
                f"at episode start the older slots hold frames of grey level {meta.preprocess.fill_level}"
                if meta.preprocess.stack_fill == "constant"
                else "the first frame fills the stack"
            ),
            "scaling": "none outside the model: frames are uint8 0..255, the model maps them to "
            + ("[-1, 1] ((x / 255 - 0.5) / 0.5)" if arch.input_range == "symmetric" else "[0, 1] (x / 255)"),
        },
        "observation": {
            **obs.to_dict(),
            "vector_dim": obs.vector_dim,
            "vector_layout": (
                "[speed / speed_scale, lateral / lateral_scale, heading_error / pi, "
                "x_1 / lookahead_m, y_1 / lookahead_m, ..., x_N / lookahead_m, y_N / lookahead_m] "
                + (
                    "(route points ahead in the vehicle frame, x forward, y left; lateral + left)"
                    if obs.frame == "ros"
                    else "(route points ahead in CARLA's vehicle frame, x forward, y right; lateral + right; "
                    "see the conventions above)"
                )
                if obs.use_vector_state
                else "empty: pixels only, pass a (B, 0) array"
            ),
        },
        "inputs": {
            "frames": {"dtype": "uint8", "shape": ["B", arch.frame_stack, arch.image_size, arch.image_size]},
            "vector": {"dtype": "float32", "shape": ["B", arch.vector_dim]},
        },
        "outputs": {
            "actions": {
                "dtype": "float32",
                "shape": ["B", arch.action_dim],
                "meaning": "[steer (+1 = full right), accel (+ throttle, - brake)], each in [-1, 1]",
            }
        },
        "action": {
            **meta.action.to_dict(),
            "mapping": "steer = clamp(a0) * max_steer; throttle = max(a1, 0) * max_throttle; "
            "brake = max(-a1, 0) * max_brake; non-finite -> full brake",
        },
    }


def verify(policy: Policy, meta: CheckpointMeta, out: Path, batch: int = 5) -> dict[str, float]:
    """Max |difference| of each export from the checkpoint's Policy on random inputs."""
    import onnxruntime

    frames, vector = example_inputs(meta, batch, seed=1)
    with torch.no_grad():
        expected = policy(frames, vector).numpy()
        with _torchscript_quietly():
            scripted = torch.jit.load(str(out / "policy.ts"))(frames, vector).numpy()
    session = onnxruntime.InferenceSession(str(out / "policy.onnx"), providers=["CPUExecutionProvider"])
    onnx_out = session.run([OUTPUT_NAME], {"frames": frames.numpy(), "vector": vector.numpy()})[0]
    return {
        "torchscript": float(np.abs(scripted - expected).max()),
        "onnx": float(np.abs(onnx_out - expected).max()),
    }


def export(spec: str, out: Path, models_dir: str = "models", opset: int = DEFAULT_OPSET, check: bool = True) -> dict:
    """Export the policy of a checkpoint spec into `out`; returns the metadata written."""
    checkpoint = resolve_checkpoint(spec, models_dir)
    policy, meta = load_policy(checkpoint, device="cpu")
    out.mkdir(parents=True, exist_ok=True)
    module = ExportablePolicy(policy).eval()
    inputs = example_inputs(meta, batch=2)
    export_torchscript(module, inputs, out / "policy.ts")
    export_onnx(module, inputs, out / "policy.onnx", opset)
    info = metadata(meta, Path(checkpoint), opset)
    if check:
        errors = verify(policy, meta, out)
        info["verified_max_abs_error"] = errors
        bad = {name: error for name, error in errors.items() if not error <= TOLERANCE}
        if bad:
            raise RuntimeError(f"exported policy differs from the checkpoint's: {bad} (tolerance {TOLERANCE})")
    (out / "policy.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="td3-export", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--checkpoint", required=True, help="a .pth file, a run directory or 'latest'")
    parser.add_argument("--out", type=Path, help="directory for policy.ts, policy.onnx, policy.json")
    parser.add_argument(
        "--policy-only",
        type=Path,
        metavar="FILE.pth",
        help="instead: write the checkpoint's policy-only form (actor + metadata; drives, cannot resume)",
    )
    parser.add_argument("--models-dir", default="models", help="where 'latest' looks for runs (default: models)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default: {DEFAULT_OPSET})")
    parser.add_argument("--no-verify", action="store_true", help="skip comparing the exports with the checkpoint")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.policy_only:
        try:
            written = write_policy_only(args.checkpoint, args.policy_only, args.models_dir)
        except (CheckpointError, OSError) as error:
            print(f"td3-export: {error}", file=sys.stderr)
            return 1
        print(f"wrote the policy-only form of {args.checkpoint} to {written} ({written.stat().st_size} bytes)")
        return 0
    if args.out is None:
        parser.error("--out is required (or --policy-only FILE.pth)")
    try:
        info = export(args.checkpoint, args.out, args.models_dir, args.opset, check=not args.no_verify)
    except CheckpointError as error:
        print(f"td3-export: {error}", file=sys.stderr)
        return 1
    except (RuntimeError, OSError) as error:
        print(f"td3-export: export failed: {error}", file=sys.stderr)
        return 1
    errors = info.get("verified_max_abs_error")
    checked = f"; max |diff| vs checkpoint: {errors}" if errors else ""
    print(f"exported {info['checkpoint']['path']} to {args.out}/policy.ts, policy.onnx, policy.json{checked}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
