"""The demo (`make demo` = td3-demo) end to end, with a smaller budget than config/demo.yaml.

Same command and code path: simulator + trainer processes to the step budget, then the
simulator free-running + the driver on the checkpoint the trainer wrote, then the report. Only
the budget is smaller (a params file applied after demo.yaml's), so it fits in the test run.
This is also the driver's test with a checkpoint from the trainer: separate processes over
DDS, commands at about the configured rate, all in range, and the car moves.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from td3_bringup.graph import repo_config_dir

SMALL_BUDGET = {
    "carla_simulator": {"ros__parameters": {"image_width": 84, "image_height": 84}},
    "td3_trainer": {
        "ros__parameters": {
            "total_steps": 160,
            "learning_starts": 100,
            "batch_size": 16,
            "buffer_size": 1000,
            "checkpoint_every": 80,
            "max_episode_steps": 60,
        }
    },
}


@pytest.mark.ros
@pytest.mark.slow
def test_demo_trains_drives_and_reports(tmp_path: Path):
    demo_file = tmp_path / "demo_small.yaml"
    # demo.yaml's settings, with the budget made smaller on top.
    settings = yaml.safe_load((repo_config_dir() / "demo.yaml").read_text())
    for node, values in SMALL_BUDGET.items():
        settings.setdefault(node, {"ros__parameters": {}})["ros__parameters"].update(values["ros__parameters"])
    demo_file.write_text(yaml.safe_dump(settings))
    proc = subprocess.run(
        [sys.executable, "-m", "td3_bringup.demo", "--demo-params", str(demo_file), "--drive-seconds", "4"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert "Traceback" not in out
    report = out[out.index("[demo] report") :]
    fields = dict(re.findall(r"^\s+(\S.*?\S)\s{2,}(.*)$", report, flags=re.MULTILINE))
    assert fields["training steps"].startswith("160 environment steps"), fields
    checkpoint = Path(fields["checkpoint"])
    checkpoint = checkpoint if checkpoint.is_absolute() else tmp_path / checkpoint
    assert checkpoint.is_file() and checkpoint.name == "td3_scenario_0_step_160.pth"
    assert fields["driver"].startswith("loaded it;"), fields["driver"]
    match = re.match(r"loaded it; (\d+) commands at ([\d.]+) Hz", fields["driver"])
    assert match, fields["driver"]
    commands, rate = int(match.group(1)), float(match.group(2))
    assert commands >= 20
    assert abs(rate - 20.0) <= 10.0, f"{rate} Hz, configured 20 (a tolerance, not a timing test)"
    assert fields["commands out of range"] == "0"
    # The trainer's (seeded, synchronous, so reproducible) checkpoint makes the car drive.
    distance = float(re.match(r"([\d.]+) m", fields["distance driven"]).group(1))
    assert distance > 1.0, fields
    for key in ("episodes", "episode return", "distance driven", "before the first collision"):
        assert key in fields
