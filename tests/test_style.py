"""The code base stays lint-clean and formatted (rules in ruff.toml), so style drift fails CI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ruff")
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff_passes(command):
    run = subprocess.run([sys.executable, "-m", "ruff", *command, "."], cwd=ROOT, capture_output=True, text=True)
    fix = "ruff check --fix . && ruff format ."
    assert run.returncode == 0, f"ruff {' '.join(command)} found problems (fix: {fix}):\n{run.stdout}{run.stderr}"
