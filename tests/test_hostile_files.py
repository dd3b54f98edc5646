"""Hostile checkpoint files (tools/hostile_files.py): not regular files, values that overflow
in float32, sizes that would allocate gigabytes, malformed fields. Each is refused through the
driver's loading path with a CheckpointError, none blocks, and at driver start-up each gives
the documented FATAL line and exit 2, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

import pytest
import torch

from td3_bringup.graph import driver_node, repo_config_dir
from td3_bringup.runner import node_command
from td3_core.checkpoint import read_latest_pointer, resolve_checkpoint
from td3_core.safe_files import UnsafeFileError, read_small_text
from tools.hostile_files import CASES, make_cases
from tools.hostile_files import main as hostile_main

from .processes import stop_process

STARTUP_S = 45.0


def test_every_hostile_file_is_refused_without_hanging(capsys: pytest.CaptureFixture[str]):
    code = hostile_main(["--deadline-s", "30"])
    out = capsys.readouterr().out
    summary = json.loads(out[: out.rindex("}") + 1])
    assert code == 0, summary
    assert summary["cases"] == len(CASES) and summary["refused"] == len(CASES)
    assert summary["hang"] == summary["crash"] == summary["accepted"] == 0
    messages = {name: result["message"] for name, result in summary["results"].items()}
    assert "FIFO" in messages["fifo_checkpoint"] and "character device" in messages["device_checkpoint"]
    assert "NaN or inf (in torch.float32)" in messages["float64_overflow"]
    assert "saturates every output" in messages["saturated_policy"]
    assert "is compressed" in messages["compressed_record"]
    assert "hidden_dim 10000000 not in" in messages["huge_hidden"]
    assert "parameters, more than" in messages["huge_features"]


def _within(seconds: float, function, *args):
    """Run `function` in a worker thread; fail (instead of hanging the test run) if it blocks."""
    result: list = []
    worker = threading.Thread(target=lambda: result.append(function(*args)), daemon=True)
    worker.start()
    worker.join(seconds)
    assert result, f"{function.__name__} blocked for {seconds} s"
    return result[0]


def test_pointer_reads_never_block_nor_read_without_bound(tmp_path: Path):
    fifo_run, huge_run, good_run = (tmp_path / name for name in ("fifo", "huge", "good"))
    for run in (fifo_run, huge_run, good_run):
        run.mkdir()
    os.mkfifo(fifo_run / "latest")
    with open(huge_run / "latest", "wb") as handle:
        handle.truncate(64 * 1024**3)
    (good_run / "td3_x_step_1.pth").write_bytes(b"x")
    (good_run / "latest").write_text("td3_x_step_1.pth\n")
    assert _within(20, read_latest_pointer, fifo_run) is None
    assert _within(20, read_latest_pointer, huge_run) is None
    assert _within(20, read_latest_pointer, good_run) == good_run / "td3_x_step_1.pth"
    # 'latest' over the models directory skips the unusable runs and finds the good one.
    assert _within(20, resolve_checkpoint, "latest", tmp_path) == good_run / "td3_x_step_1.pth"
    with pytest.raises(UnsafeFileError, match="more than"):
        read_small_text(huge_run / "latest")


@pytest.mark.ros
def test_driver_start_up_refuses_malformed_files_with_exit_2(tmp_path: Path):
    names = ["negative_hidden", "scalar_original_tensor", "infinite_field", "fifo_checkpoint"]
    targets = make_cases(tmp_path, names)
    procs = {}
    try:
        for name, target in targets.items():
            params = {"checkpoint": target, "device": "cpu"}
            log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 - closed right after the start
            procs[name] = subprocess.Popen(
                node_command(driver_node(repo_config_dir(), params)),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            log.close()
        for name, proc in procs.items():
            try:
                code = proc.wait(timeout=STARTUP_S)
            except subprocess.TimeoutExpired:
                code = None
            text = (tmp_path / f"{name}.log").read_text(errors="replace")
            assert code == 2, f"{name}: exit {code}\n{text}"
            assert "cannot start: parameter 'checkpoint'" in text and "Traceback" not in text, text
    finally:
        for proc in procs.values():
            stop_process(proc)


def test_dtype_check_happens_after_conversion():
    from td3_core.checkpoint import CheckpointError, check_values

    check_values(torch.tensor([0.5, -3.0], dtype=torch.float64).float(), "sane")
    with pytest.raises(CheckpointError, match="NaN or inf"):
        check_values(torch.tensor([1e300], dtype=torch.float64).float(), "finite in float64 only")
    with pytest.raises(CheckpointError, match="beyond"):
        check_values(torch.tensor([3e38]), "finite, but products overflow")
