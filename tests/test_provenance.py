"""A benchmark result names the code and the CPU that produced it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from bench.provenance import code_version, cpu_model, host, onednn_isa


def test_outside_a_git_checkout_the_code_version_is_unknown_not_an_error(tmp_path: Path):
    assert code_version(tmp_path) == {"commit": None, "dirty": None}


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_the_code_version_is_the_checked_out_commit_and_says_when_the_code_differs(tmp_path: Path):
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True, text=True).stdout

    git("init", "-q")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("x = 1\n")
    (tmp_path / "README.md").write_text("results\n")
    git("add", "src/a.py", "README.md")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "one")
    head = git("rev-parse", "HEAD").strip()
    assert code_version(tmp_path) == {"commit": head, "dirty": False}
    (tmp_path / "untracked.txt").write_text("results are written beside the code\n")
    assert code_version(tmp_path)["dirty"] is False
    (tmp_path / "README.md").write_text("results, written up\n")  # docs are not the code
    assert code_version(tmp_path)["dirty"] is False
    (tmp_path / "src" / "a.py").write_text("x = 2\n")
    assert code_version(tmp_path) == {"commit": head, "dirty": True}


def test_the_host_names_the_cpu_and_the_kernels_torch_picked():
    described = host()
    assert described["cpu"] == cpu_model() and described["cpu"]
    assert described["torch_cpu_capability"]  # e.g. AVX2 or AVX512: it decides the rounding
    assert described["cpus"] >= 1


def test_onednn_names_the_instruction_set_it_dispatches_to_and_obeys_its_cap(monkeypatch: pytest.MonkeyPatch):
    found = onednn_isa()
    assert found, "oneDNN's verbose mode printed no isa line"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "SSE41")  # every x86 CPU torch runs on has it
    assert onednn_isa() == "Intel SSE4.1"
