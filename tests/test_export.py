"""Exported TorchScript and ONNX policies compute what the checkpoint's Policy computes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from td3_core.checkpoint import load_policy
from td3_core.vector_state import ObservationConfig
from td3_driver.export import main

from .checkpoint_factory import small_architecture, write_checkpoint, write_original_checkpoint

pytestmark = pytest.mark.filterwarnings(r"ignore:`torch\.jit\..*deprecated:DeprecationWarning")
ATOL = 1e-5
OBSERVATIONS = {"vector": ObservationConfig(num_waypoints=4), "pixels": ObservationConfig(use_vector_state=False)}


def _random_inputs(policy, batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    arch = policy.arch
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (batch, arch.frame_stack, arch.image_size, arch.image_size), dtype=np.uint8)
    vector = rng.standard_normal((batch, arch.vector_dim)).astype(np.float32)
    return torch.from_numpy(frames), torch.from_numpy(vector)


def _check_exports(checkpoint: Path, out: Path) -> dict:
    assert main(["--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    policy, meta = load_policy(checkpoint)
    scripted = torch.jit.load(str(out / "policy.ts"))
    session = onnxruntime.InferenceSession(str(out / "policy.onnx"), providers=["CPUExecutionProvider"])
    inputs = {i.name: i for i in session.get_inputs()}
    assert list(inputs) == ["frames", "vector"] and [o.name for o in session.get_outputs()] == ["actions"]
    assert inputs["frames"].type == "tensor(uint8)" and inputs["vector"].type == "tensor(float)"
    assert inputs["vector"].shape[1] == meta.architecture.vector_dim
    for batch, seed in ((1, 10), (7, 11)):  # the batch dimension is dynamic
        frames, vector = _random_inputs(policy, batch, seed)
        with torch.no_grad():
            expected = policy(frames, vector).numpy()
            from_script = scripted(frames, vector).numpy()
        from_onnx = session.run(["actions"], {"frames": frames.numpy(), "vector": vector.numpy()})[0]
        assert expected.shape == from_script.shape == from_onnx.shape == (batch, 2)
        np.testing.assert_allclose(from_script, expected, atol=ATOL, rtol=0)
        np.testing.assert_allclose(from_onnx, expected, atol=ATOL, rtol=0)
    assert np.ptp(expected, axis=0).max() > 1e-4, "actions do not depend on the inputs: comparison is vacuous"
    return json.loads((out / "policy.json").read_text())


@pytest.mark.parametrize("kind", OBSERVATIONS)
def test_torchscript_and_onnx_match_the_checkpoint(tmp_path: Path, kind: str):
    observation = OBSERVATIONS[kind]
    arch = small_architecture(observation)
    checkpoint = write_checkpoint(tmp_path / "run" / "td3_s_step_3.pth", observation, arch, total_it=33)
    info = _check_exports(checkpoint, tmp_path / "out")
    assert info["format"] == "td3_drive.policy/1"
    assert info["checkpoint"]["total_it"] == 33 and info["checkpoint"]["format_version"] == 2
    assert info["architecture"] == arch.to_dict()
    assert info["preprocessing"]["image_size"] == 36 and info["preprocessing"]["frame_stack"] == 4
    assert info["observation"]["vector_dim"] == observation.vector_dim
    assert info["inputs"]["vector"]["shape"] == ["B", observation.vector_dim]
    assert info["outputs"]["actions"]["shape"] == ["B", 2]
    assert max(info["verified_max_abs_error"].values()) <= ATOL


def test_original_format_checkpoint_exports(tmp_path: Path):
    arch = small_architecture(ObservationConfig(), image_size=84)
    info = _check_exports(write_original_checkpoint(tmp_path / "old.pth", arch), tmp_path / "out")
    assert info["checkpoint"]["format_version"] == 1 and info["action"]["max_throttle"] == 1.0


def test_unusable_checkpoint_fails_with_a_message(tmp_path: Path, capsys):
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"\x00" * 100)
    assert main(["--checkpoint", str(broken), "--out", str(tmp_path / "out")]) == 1
    assert "broken.pth" in capsys.readouterr().err
    assert not (tmp_path / "out" / "policy.onnx").exists()


def test_command_line_module(tmp_path: Path):
    observation = OBSERVATIONS["pixels"]
    write_checkpoint(tmp_path / "run" / "td3_s_step_1.pth", observation, small_architecture(observation))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "td3_driver.export",
            "--checkpoint",
            str(tmp_path / "run"),
            "--out",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "exported" in result.stdout and result.stderr.strip() == "", result.stderr
    assert {p.name for p in (tmp_path / "x").iterdir()} == {"policy.ts", "policy.onnx", "policy.json"}
