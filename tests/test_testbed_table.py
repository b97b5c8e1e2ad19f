"""``benchmarks/testbed_table.py`` end to end at its smallest: real subprocesses of the generation run and eval."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.videosys


def test_table_of_base_and_magcache_fast_on_the_testbed_then_a_resume_that_generates_nothing(tmp_path):
    out = tmp_path / "table"
    command = [sys.executable, str(ROOT / "benchmarks" / "testbed_table.py"), "--out", str(out), "--limit", "1"]
    command += ["--num-samples", "2", "--rounds", "1", "--methods", "magcache_fast_testbed"]
    first = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    assert "[2/2] round 1/1" in first.stdout
    with open(out / "testbed_table.csv", newline="") as f:
        rows = {r["table / coefficients"]: r for r in csv.DictReader(f)}
    base, fast = rows["uncached"], rows["test bed's table"]
    assert base["full passes (mean)"] == "30.0" and base["CPU-time speedup (median)"] == "1.00x"
    assert fast["method"] == "MagCache-fast" and fast["videos"] == "2" and fast["full passes (mean)"] == "16.0"
    assert fast["ideal speedup"] == "1.88x" and float(fast["CPU-time speedup (median)"].rstrip("x")) > 1.0
    assert 20 < float(fast["PSNR"]) < 100 and 0.5 < float(fast["SSIM"]) <= 1
    assert (out / "testbed_table.md").read_text().startswith("| method |")
    assert (out / "testbed_table.png").stat().st_size > 1000
    log = (out / "testbed_table.log").read_text()
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    new = (out / "testbed_table.log").read_text()[len(log) :]
    assert "experiments/opensora.py" not in new and "batch_eval.py" in new  # resumed: nothing generated again
