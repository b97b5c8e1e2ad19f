"""Memory of an evaluation stays flat in the number of videos (VBench runs score thousands of pairs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import imageio
import numpy as np
import pytest

from magcache_videosys.metrics.frame_table import FrameTable

REPO = Path(__file__).resolve().parents[1]
SMALL, MANY = 5, 40
# Before the fix the heap grew by about 4 MB a pair at this size (+154 MB from 5 to 40 pairs); now it
# moves by a few MB. The margin leaves room for allocator noise and stays far below the old growth.
MARGIN_MB = 60

MEASURE = """
import os, sys
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from magcache_videosys.metrics.evaluate import evaluate

def rss_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmRSS"))

root, kept = sys.argv[1], []
for count in sys.argv[2:]:
    kept += evaluate(f"{root}/ref{count}", [f"{root}/gen{count}"], metrics="psnr,ssim", device="cpu", progress=False)
    print(rss_mb(), flush=True)
"""


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads the RSS from /proc")
def test_rss_after_40_pairs_is_that_after_5(tmp_path):
    """One process scores 5 pairs (the kernels load, the heap settles), then 40 more pairs, keeping
    every result as a real run does; its resident memory must not grow with the pairs."""
    rng = np.random.default_rng(0)
    sources = []
    for index in range(3):
        reference = rng.integers(0, 256, (9, 120, 160, 3), dtype=np.uint8)
        generated = np.clip(reference + rng.normal(0, 8, reference.shape), 0, 255).astype(np.uint8)
        pair = tmp_path / f"ref_src{index}.mp4", tmp_path / f"gen_src{index}.mp4"
        for path, frames in zip(pair, (reference, generated)):
            imageio.mimwrite(path, list(frames), fps=8, macro_block_size=1)
        sources.append(pair)
    for count in (SMALL, MANY):
        for side in (0, 1):
            folder = tmp_path / f"{('ref', 'gen')[side]}{count}"
            folder.mkdir()
            for video in range(count):  # hard links: real decoding, no time spent encoding 90 files
                os.link(sources[video % len(sources)][side], folder / f"v{video:03d}.mp4")
    run = subprocess.run(
        [sys.executable, "-c", MEASURE, str(tmp_path), str(SMALL), str(MANY)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    after_small, after_many = map(int, run.stdout.split())
    growth = f"RSS {after_small} MB after {SMALL} pairs, {after_many} MB after {MANY} more"
    assert after_many - after_small < MARGIN_MB, growth


def test_frame_table_keeps_each_videos_values_across_growth():
    table = FrameTable(("psnr", "ssim"))
    videos = [np.arange(count, dtype=np.float64) + 1000 * count for count in (3000, 1, 5000, 7)]
    starts = [table.append({"psnr": v, "ssim": -v}) for v in videos]
    assert starts == [0, 3000, 3001, 8001] and table.frames == 8008
    for start, values in zip(starts, videos):
        np.testing.assert_array_equal(table.view("psnr", start, len(values)), values)
        np.testing.assert_array_equal(table.view("ssim", start, len(values)), -values)
    with pytest.raises(ValueError, match="different lengths"):
        table.append({"psnr": np.zeros(2), "ssim": np.zeros(3)})
