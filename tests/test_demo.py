"""The demo (`make demo` = td3-demo) end to end, with a smaller budget than config/demo.yaml.

Same command and code path: simulator + trainer processes to the step budget, then the
simulator free-running + the driver on the shipped policy for one lap, then the report and its
files. Only the training budget is smaller (a params file applied after demo.yaml's), so it
fits in the test run. Checked: the trainer's checkpoint, the driver's commands (rate, range),
the lap, both recordings, and the pictures: valid images of the sizes drive_report makes, and
the trajectory plotted is the odometry recorded, message for message.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from td3_bringup import drive_report
from td3_bringup.graph import repo_config_dir
from td3_bringup.recording import read_messages, topic_types

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
        [sys.executable, "-m", "td3_bringup.demo", "--demo-params", str(demo_file)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=600,
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
    assert fields["lap"].startswith("completed in "), fields["lap"]
    assert fields["collisions / lane invasions"].startswith("0 /"), fields
    for key in ("episodes", "episode return", "distance driven", "before the first collision", "safety-gate brakes"):
        assert key in fields
    run_dir = checkpoint.parents[2] / "runs" / checkpoint.parent.name
    _check_recordings_and_pictures(run_dir, fields)


def _check_recordings_and_pictures(run_dir: Path, fields: dict[str, str]) -> None:
    # The training recording holds the trainer's statistics, decodable, of the right type.
    train = run_dir / "train.mcap"
    assert topic_types(train).get("/td3_trainer/episode") == "td3_drive/msg/Episode"
    assert topic_types(train).get("/td3_trainer/train_stats") == "td3_drive/msg/TrainStats"
    episodes = list(read_messages(train, ["/td3_trainer/episode"]))
    assert episodes and all(m.message.length > 0 and math.isfinite(m.message.episode_return) for m in episodes)

    # The pictures exist where the report says, and are valid images of the sizes made.
    expected = {
        "trajectory": (drive_report.TRAJECTORY_PNG, "PNG", drive_report.TRAJECTORY_SIZE),
        "timeline": (drive_report.TIMELINE_PNG, "PNG", drive_report.TIMELINE_SIZE),
        "camera": (drive_report.CAMERA_GIF, "GIF", drive_report.gif_frame_size()),
    }
    for key, (name, kind, size) in expected.items():
        path = run_dir / name
        assert fields[key].endswith(str(Path(run_dir.name) / name)), (key, fields[key])
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert (image.format, image.size) == (kind, size), (name, image.format, image.size)
            if kind == "GIF":
                assert image.n_frames >= 10

    # The trajectory plotted is the odometry recorded: every message, same order, same values.
    odometry = [
        (m.log_time_ns, m.message.pose.pose.position.x, m.message.pose.pose.position.y)
        for m in read_messages(run_dir / "drive.mcap", ["/carla/ego_vehicle/odometry"])
    ]
    plotted = drive_report.read_trajectory_csv(run_dir / drive_report.TRAJECTORY_CSV)
    assert len(odometry) > 100
    assert np.array_equal(plotted[:, :3], np.array(odometry, dtype=np.float64))
    data = drive_report.load_drive(run_dir / "drive.mcap")
    assert np.array_equal(data.odometry, plotted)
    assert len(data.route) > 100, "the route (latched, published once) is in the recording and on the map"
