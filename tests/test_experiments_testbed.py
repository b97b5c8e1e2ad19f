"""``experiments/opensora.py --testbed`` and ``calibrate --testbed``: the generation run on the trained test bed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from videosys_helpers import manifest
from videosys_helpers import run_cli as generate

import magcache_videosys
from magcache_videosys.cli import main as magcache_cli
from magcache_videosys.experiments.prompts import load_prompts
from magcache_videosys.models import family_named
from magcache_videosys.testbed import parse_prompt
from magcache_videosys.testbed.study import PROMPTS as CALIBRATION_PROMPTS

TESTBED = family_named("opensora").testbed


def test_the_testbed_prompt_file_holds_16_or_more_distinct_task_prompts_held_out_from_calibration():
    prompts = load_prompts(TESTBED.prompts).prompts
    assert len(prompts) >= 16 and len(set(prompts)) == len(prompts)
    specs = [parse_prompt(p) for p in prompts]
    assert {s.colour for s in specs} == {"red", "green", "blue", "yellow", "magenta", "cyan"}
    assert {s.direction for s in specs} == {"left", "right", "up", "down"}
    assert {s.background for s in specs} == {"black", "gray", "white"} and {s.shape for s in specs} == {
        "circle",
        "square",
    }
    assert not set(prompts) & set(CALIBRATION_PROMPTS)  # the shipped table was measured on other prompts


def test_dry_run_states_what_the_presets_mean_on_the_testbed(cli, capsys, tmp_path):
    text = generate(cli, capsys, "--method", "magcache-fast", "--testbed", "--dry-run", "--out", tmp_path / "o")
    assert "mag-ratios=opensora-v1.2" in text  # the published Open-Sora preset, as a user would run it
    assert "--mag-ratios opensora-testbed" in text and "--coefficients opensora-testbed" in text
    assert (
        "24 distinct in" in text and "prompts.json" in text and "resolution 144p, aspect-ratio 1:1, frames 17" in text
    )
    assert "computes   12 of 30 steps" in text and "fp32" in text
    own = generate(
        cli,
        capsys,
        "--method",
        "magcache",
        "--mag-ratios",
        "opensora-testbed",
        "--testbed",
        "--dry-run",
        "--out",
        tmp_path,
    )
    assert '"mag_ratios": "opensora-testbed", "ratio_power": 1.0' in own
    assert "computes   16 of 30 steps: 0 1 2 3 4 5 8 10 12 14 16 18 20 22 24 27" in own


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--resolution", "240p"], "--resolution 240p: the test bed was trained at --resolution 144p"),
        (["--frames", "51"], "--frames 51: the test bed was trained at --frames 17"),
        (["--tiny"], "--tiny (random weights) and --testbed (the trained test bed) exclude each other"),
        (["--transformer", "x"], "--testbed builds the test bed's trained weights; drop --transformer"),
        (["--dtype", "bf16"], "--testbed runs on the CPU in fp32; drop --dtype bf16"),
    ],
)
def test_testbed_sizes_and_weights_are_fixed(cli, capsys, tmp_path, extra, message):
    assert cli.main(["--method", "base", "--testbed", "--dry-run", "--out", str(tmp_path / "o"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_ratios_lists_the_testbed_table(capsys):
    assert magcache_cli(["ratios"]) == 0
    assert "opensora-testbed: test bed" in capsys.readouterr().out


@pytest.mark.videosys
def test_a_testbed_run_writes_a_playable_video_that_shows_its_prompt(cli, capsys, tmp_path):
    from magcache_videosys.metrics.video_io import read_video
    from magcache_videosys.testbed.probe import read_clip

    out = tmp_path / "base"
    text = generate(cli, capsys, "--method", "base", "--testbed", "--limit", "1", "--num-samples", "1", "--out", out)
    assert "generated 1 videos" in text
    [record] = manifest(out)
    prompt = load_prompts(TESTBED.prompts).prompts[0]
    assert record["prompt"] == prompt and record["settings"]["testbed"] is True and record["num_computed"] == 30
    assert 0 < record["cpu_transformer_s"] and 0 < record["latency_transformer_s"] < record["latency_total_s"]
    video = read_video(out / record["video"])
    assert video.shape == (17, 192, 192, 3)
    reading, spec = read_clip(video), parse_prompt(prompt)
    assert (reading.background, reading.colour) == (spec.background, spec.colour)
    assert abs(reading.move[0]) > 0.3 > abs(reading.move[1])  # it moves along the prompt's (horizontal) axis


@pytest.mark.videosys
def test_calibrate_testbed_writes_a_table_and_its_curve(capsys, tmp_path):
    table, plot = tmp_path / "tb.json", tmp_path / "tb.png"
    prompt = load_prompts(TESTBED.prompts).prompts[1]
    assert magcache_cli(["calibrate", "--testbed", "--prompt", prompt, "--out", str(table), "--plot", str(plot)]) == 0
    data = json.loads(table.read_text())
    assert data["num_steps"] == 30 and len(data["ratios"]) == len(data["std"]) == len(data["cosine_distance"]) == 29
    assert data["settings"]["testbed"] is True and data["settings"]["prompts"] == [prompt]
    assert all(0.85 < r < 1.1 for r in data["ratios"][1:])  # step 1's is the odd one out (about 1.5)
    assert plot.stat().st_size > 1000


def test_the_shipped_testbed_table_is_the_studys_calibration():
    from magcache_videosys.ratios import load_ratio_table

    study = Path(magcache_videosys.__file__).parent / "testbed" / "study" / "opensora-testbed.json"
    assert load_ratio_table("opensora-testbed").to_dict() == load_ratio_table(study).to_dict()
    assert len(json.loads(study.read_text())["settings"]["prompts"]) == 6


def test_runs_without_the_testbed_keep_the_settings_signature_they_had(tmp_path):
    from magcache_videosys.experiments.runner import Options, make_plan

    plain = make_plan(Options(method="base", out=tmp_path / "a", tiny=True)).settings.to_dict()
    assert "testbed" not in plain  # a run begun before --testbed existed resumes: its records' settings match
    testbed = make_plan(Options(method="base", out=tmp_path / "b", testbed=True)).settings.to_dict()
    assert testbed["testbed"] is True and testbed["resolution"] == "144p" and testbed["dtype"] == "fp32"
