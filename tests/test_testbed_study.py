"""The test-bed study: the magnitude-law numbers, and one small end-to-end run of the command."""

from __future__ import annotations

import json

import pytest

from magcache_videosys.testbed.study import magnitude_law


def test_magnitude_law_numbers():
    ratios = [0.9, 1.0, 1.0, 1.0, 0.98, 0.96, 0.94, 0.92, 0.9]
    runs = [
        dict(prompt="a", seed=0, ratio=[r + 0.01 for r in ratios]),
        dict(prompt="a", seed=1, ratio=[r - 0.01 for r in ratios]),
        dict(prompt="b", seed=0, ratio=[r + 0.03 for r in ratios]),
    ]
    law = magnitude_law(ratios, runs)
    assert law["first_ratio"] == 0.9 and law["min_ratio"] == 0.9 and law["max_ratio"] == 1.0
    assert law["mean_ratio_before_last_steps"] == pytest.approx((0.9 + 1 + 1 + 1) / 4)
    assert law["mean_ratio_last_steps"] == pytest.approx(0.94)
    assert law["last_ratios"] == ratios[-5:]
    # Prompt a averages to the table, prompt b sits 0.03 above it at every step.
    assert law["prompt_spread_max"] == pytest.approx(0.03) and law["prompt_spread_mean"] == pytest.approx(0.03)
    assert law["run_std_max"] == pytest.approx(law["run_std_mean"])


@pytest.mark.videosys
def test_the_study_command_writes_a_table_a_curve_and_its_numbers(tmp_path):
    from magcache_videosys.ratios import RatioTable
    from magcache_videosys.testbed.study import TABLE_NAME, main

    assert main(["--out", str(tmp_path), "--prompts", "1", "--seeds", "0", "--fidelity-prompts", "1"]) == 0
    table = RatioTable.from_dict(json.loads((tmp_path / f"{TABLE_NAME}.json").read_text()))
    assert table.num_steps == 30 and table.name == TABLE_NAME
    assert table.settings["resolution"] == "144p" and table.settings["num_frames"] == 17
    assert (tmp_path / "ratio_curve.png").stat().st_size > 0 and (tmp_path / "frames.png").stat().st_size > 0
    report = json.loads((tmp_path / "study.json").read_text())
    assert report["calibration_runs"][0]["ratio"] == pytest.approx(list(table.ratios))
    settings = report["fidelity"]["settings"]
    speeds = ("slow", "fast", "turbo")
    assert set(settings) == {f"{tables}-{speed}" for tables in ("opensora", "testbed") for speed in speeds}
    # The Open-Sora presets' schedules are fixed by their table: 18, 12 and 10 full passes of 30.
    passes = {name: settings[f"opensora-{name}"]["computed_steps"] for name in speeds}
    assert passes == dict(slow=18, fast=12, turbo=10)
    assert all(0 < row["mean_psnr"] <= 100 for row in settings.values())
