"""A bounded run of tools/fuzz_driver.py: random and malformed images, odometry and routes
published at a live driver node over DDS, then valid but large messages (100,000-point routes,
large images) and a frozen camera; it stays up, keeps commanding in range and at its rate
(the tool fails on a gap over 1 s), brakes on the frozen camera, exits cleanly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.fuzz_driver import main


@pytest.mark.ros
@pytest.mark.slow
def test_driver_survives_fuzzed_messages(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    # A gap bound with room for a loaded 2-core machine; without the fix a 100,000-point route alone
    # stopped every command for about 6 s.
    args = ["--inputs", "400", "--big-messages", "4", "--max-gap-s", "2.0", "--seed", "7"]
    code = main([*args, "--work-dir", str(tmp_path)])
    out = capsys.readouterr().out
    result = json.loads(out[: out.rindex("}") + 1])
    assert code == 0, result
    random_mix = sum(result["by_kind"][kind] for kind in ("image", "valid_image", "odometry", "route"))
    assert random_mix == 400 and result["crashes"] == 0 and result["out_of_range"] == 0
    assert result["by_kind"]["image"] > 0 and result["by_kind"]["odometry"] > 0 and result["by_kind"]["route"] > 0
    assert result["by_kind"]["big_route"] == 2 and result["by_kind"]["big_image"] == 2
    assert result["largest_command_gap_s"] <= 2.0
    assert result["frozen_commands_judged"] > 0 and result["frozen_safety_brakes"] == result["frozen_commands_judged"]
    log = (tmp_path / "driver.log").read_text()
    assert "dropped a bad message" in log and "max_route_points" in log and "exceeds max_image_bytes" in log
