"""A converted av_td3_system checkpoint (variant C6): td3-convert, td3-export, our trainer resumes
it on the embedded simulator, and the driver drives the simulator with it (separate processes)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import torch

from td3_core.checkpoint import load_checkpoint_file, read_latest_pointer, validate_training_state
from td3_core.convert import main as convert_main
from td3_driver.export import main as export_main

from . import original_system as original
from .checkpoint_factory import write_checkpoint
from .processes import node_process, stop_process
from .test_trainer_e2e import simulator, tail, trainer_args, wait_exit

pytestmark = pytest.mark.filterwarnings(r"ignore:`torch\.jit\..*deprecated:DeprecationWarning")
CAMERA = {"image_width": 256, "image_height": 144}  # the original system's camera (sensors.py defaults)
THROTTLE = 0.8


def _original_c6(tmp_path: Path) -> Path:
    """A C6 file whose actor drives straight with throttle 0.8 (fc3 weights 0, bias atanh(action))."""
    ckpt = original.checkpoint("C6", seed=4)
    ckpt["actor_state_dict"]["fc3.weight"].zero_()
    ckpt["actor_state_dict"]["fc3.bias"].copy_(torch.tensor([0.0, math.atanh(THROTTLE)]))
    path = tmp_path / "original" / "td3_scenario_0_step_1200.pth"
    path.parent.mkdir(parents=True)
    torch.save(ckpt, path)
    return path


def _converted(tmp_path: Path) -> Path:
    run_dir = tmp_path / "models" / "from_original"
    assert convert_main([str(_original_c6(tmp_path)), str(run_dir) + "/"]) == 0
    latest = read_latest_pointer(run_dir)
    assert latest is not None
    return latest


def test_convert_writes_a_resumable_checkpoint_and_td3_export_works(tmp_path: Path, capsys):
    converted = _converted(tmp_path)
    summary = json.loads(capsys.readouterr().out)
    assert summary["original_system"]["variant"] == "C6" and summary["resumable"] == "yes"
    ckpt = load_checkpoint_file(converted)
    assert "original_system" in ckpt and ckpt["format_version"] == 2
    meta = validate_training_state(ckpt, converted)
    assert meta.architecture.fc_activation == "leaky_relu" and meta.observation.lateral == "unsigned"
    assert ckpt["config"]["actor_encoder"] == "own"
    out = tmp_path / "exported"
    assert export_main(["--checkpoint", str(converted.parent), "--out", str(out)]) == 0
    info = json.loads((out / "policy.json").read_text())
    assert info["architecture"]["input_range"] == "symmetric"
    assert info["preprocessing"]["stack_fill"] == "constant" and info["preprocessing"]["fill_level"] == 128
    assert max(info["verified_max_abs_error"].values()) <= 1e-5
    # Converting twice is refused unless asked; our own files need no conversion.
    assert convert_main([str(tmp_path / "original" / "td3_scenario_0_step_1200.pth"), str(converted)]) == 1
    ours = write_checkpoint(tmp_path / "ours" / "td3_s_step_1.pth")
    assert convert_main([str(ours), str(tmp_path / "x.pth")]) == 1
    assert "needs no conversion" in capsys.readouterr().err


def test_convert_refuses_variant_a(tmp_path: Path, capsys):
    source = tmp_path / "a.pth"
    torch.save(original.checkpoint("A"), source)
    assert convert_main([str(source), str(tmp_path / "out.pth")]) == 1
    assert "cannot drive from camera pixels" in capsys.readouterr().err
    assert not (tmp_path / "out.pth").exists()


@pytest.mark.ros
@pytest.mark.slow
def test_trainer_resumes_a_converted_c6_checkpoint_on_the_simulator(tmp_path: Path):
    converted = _converted(tmp_path)
    before = load_checkpoint_file(converted)
    budget = 300
    params = {
        "resume": str(converted.parent),
        "total_steps": budget,
        "checkpoint_every": 0,
        "tensorboard": False,
        "learning_starts": 100,
        "batch_size": 16,
        "preprocessing.image_size": 84,
        "network.feature_dim": 512,
        "network.hidden_dim": 256,
        "observation.num_waypoints": 25,
        "actor_encoder": "own",
    }
    log = tmp_path / "trainer.log"
    with simulator(tmp_path, CAMERA), node_process(trainer_args(tmp_path, params), log) as trainer:
        code = wait_exit(trainer, log)
    text = tail(log, 20000)
    assert code == 0, text
    assert "Traceback" not in text and f"resumed from {converted}" in text
    final = read_latest_pointer(converted.parent)
    assert final is not None and final != converted
    after = load_checkpoint_file(final)
    validate_training_state(after, final)
    assert after["extra"]["env_steps"] == budget
    # It trained: more updates, weights moved, Adam moments continued from the original's.
    assert before["total_it"] < after["total_it"] <= before["total_it"] + budget
    moved = after["actor_cnn_state_dict"]["features.0.weight"] - before["actor_cnn_state_dict"]["features.0.weight"]
    assert float(moved.abs().max()) > 0
    step_before = before["actor_cnn_optimizer_state_dict"]["state"][0]["step"]
    assert float(after["actor_cnn_optimizer_state_dict"]["state"][0]["step"]) > float(step_before)
    # The networks and input pipeline stayed the original's.
    for key in ("architecture", "preprocessing", "observation"):
        assert after[key] == before[key], key


@pytest.mark.ros
@pytest.mark.slow
def test_driver_drives_the_simulator_with_a_converted_c6_checkpoint(tmp_path: Path):
    import rclpy

    from td3_bringup.graph import simulator_node
    from td3_bringup.runner import node_command

    from .test_driver_node import CONFIG, Probe, _driver_args, _in_range, _is_full_brake, record_driving

    converted = _converted(tmp_path)
    rclpy.init()
    probe = Probe()
    try:
        sim = node_command(simulator_node(CONFIG, sync=False, overrides=CAMERA))[1:]
        driver_log = tmp_path / "driver.log"
        with (
            node_process(sim, tmp_path / "simulator.log") as sim_proc,
            node_process(_driver_args(converted.parent), driver_log) as driver,
        ):
            received, moved, _ = record_driving(probe, sim_proc, driver, driver_log)
            assert received and all(_in_range(msg) for msg in received)
            assert sum(abs(msg.throttle - THROTTLE) < 1e-3 for msg in received) > 0.8 * len(received)
            assert len(moved) >= 2, "no odometry from the simulator"
            start_p, end_p = moved[0].pose.pose.position, moved[-1].pose.pose.position
            assert math.hypot(end_p.x - start_p.x, end_p.y - start_p.y) > 0.5
            stop_time = time.monotonic()
            assert stop_process(driver) == 0
            probe.spin_for(3.0)
            after = probe.commands_since(stop_time)
            assert after and _is_full_brake(after[-1])
        log_text = driver_log.read_text(errors="replace")
        assert "Traceback" not in log_text
    finally:
        probe.close()
        rclpy.shutdown()


def test_resume_compares_the_parameters_but_takes_the_profile_from_the_checkpoint(tmp_path: Path):
    from td3_core.checkpoint import CheckpointError
    from td3_trainer.checkpointing import load_resume
    from td3_trainer.params import resume_expectations, validate

    converted = _converted(tmp_path)
    matching = {"network.feature_dim": 512, "network.hidden_dim": 256, "observation.num_waypoints": 25}
    params = validate({"preprocessing.image_size": 84, **matching})
    assert params.architecture.cnn_activation == "relu"  # the parameters know nothing of the profile
    load_resume(converted, with_replay=False, expected=resume_expectations(params))
    ten_waypoints = validate({"preprocessing.image_size": 84, **matching, "observation.num_waypoints": 10})
    with pytest.raises(CheckpointError, match="vector_dim: checkpoint 53 vs parameters 23"):
        load_resume(converted, with_replay=False, expected=resume_expectations(ten_waypoints))
