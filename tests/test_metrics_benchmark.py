"""benchmarks/bench_metrics.py runs without OpenCV, says what it is doing, and reports peak memory."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# cv2 made unimportable, as on a machine where it was never installed (installing it can upgrade numpy)
WITHOUT_OPENCV = """
import runpy, sys
sys.modules["cv2"] = None
sys.argv = ["bench_metrics.py", *sys.argv[1:]]
runpy.run_path("benchmarks/bench_metrics.py", run_name="__main__")
"""


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="the benchmark reads peak RSS from /proc")
def test_benchmark_runs_without_opencv_and_reports_peak_memory():
    tiny = "--videos 2 --frames 3 --height 32 --width 40 --repeats 1 --workers 1 --rss-pairs 1,3 --rss-frames 2"
    run = subprocess.run(
        [sys.executable, "-c", WITHOUT_OPENCV, *tiny.split()], cwd=REPO, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    stages = re.findall(r"^\[\s*\d+s\] (.+)$", run.stdout, flags=re.M)
    assert stages[0] == "making 2 x 2 videos of 3 frames 40x32" and len(stages) >= 12
    assert "peak memory: 3 pairs in a fresh process" in stages
    # the reference loop (scipy, float64) and the fused kernels agree on the means
    diffs = re.search(r"\(\|diff\| (\S+), (\S+)\)", run.stdout)
    assert float(diffs[1]) < 1e-5 and float(diffs[2]) < 1e-6
    assert re.search(r"metrics only: reference loop \(scipy, float64\)\s+\d+\.\d", run.stdout)
    table = run.stdout.split("frame pairs/s\n")[-1].strip().splitlines()
    rows = [[float(cell) for cell in line.split()] for line in table]
    assert [row[:2] for row in rows] == [[1, 2], [3, 6]]  # pairs, frame pairs scored
    assert all(100 < row[2] < 4000 for row in rows)  # peak RSS MB: a Python process with torch loaded
