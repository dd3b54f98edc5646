"""A bounded run of tools/fuzz_driver.py: random and malformed images, odometry and routes
published at a live driver node over DDS; it stays up, keeps commanding in range, exits cleanly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.fuzz_driver import main


@pytest.mark.ros
@pytest.mark.slow
def test_driver_survives_fuzzed_messages(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    code = main(["--inputs", "400", "--seed", "7", "--work-dir", str(tmp_path)])
    out = capsys.readouterr().out
    result = json.loads(out[: out.rindex("}") + 1])
    assert code == 0, result
    assert result["inputs_tried"] == 400 and result["crashes"] == 0 and result["out_of_range"] == 0
    assert result["by_kind"]["image"] > 0 and result["by_kind"]["odometry"] > 0 and result["by_kind"]["route"] > 0
    assert "dropped a bad message" in (tmp_path / "driver.log").read_text()
