"""Recording segment errors on VideoSys's tiny Open-Sora, and the search commands end to end."""

from __future__ import annotations

import json

import pytest
import torch

from magcache_videosys import StaticScheduleConfig, disable_schedule, enable_schedule, get_stats
from magcache_videosys.cli import main as magcache_cli
from magcache_videosys.segment_errors import SegmentErrors, record_segment_errors, segments, video_error

pytestmark = pytest.mark.videosys

STEPS = 8
SIZE = dict(resolution="144p", aspect_ratio="1:1", num_frames=1, verbose=False)


def test_restarted_segment_errors_equal_full_runs_of_the_same_mask(make_pipeline):
    """Restarting at the segment from the kept transformer outputs measures what a whole run of
    that mask gives: the same video, so the same error, to the last bit."""
    pipeline = make_pipeline(num_sampling_steps=STEPS)

    def generate(prompt, seed):
        return torch.as_tensor(pipeline.generate(prompt, seed=seed, **SIZE).video[0])

    errors = record_segment_errors(pipeline, generate, [("a cat", 0), ("a dog", 1)], STEPS, 2, 1, progress=False)
    assert set(errors.errors) == set(segments(STEPS, 2, 1))
    assert errors.provenance["replay_check_mse"] == 0.0
    assert errors.provenance["full_passes"] == 2 * (STEPS + sum(STEPS - i - (j - i - 1) for i, j in errors.errors)) + (
        STEPS - STEPS // 2
    )
    assert errors.ratio_table is not None and errors.ratio_table.num_steps == STEPS
    assert pipeline.transformer.__dict__.get("forward") is None  # the replay wrapper is gone
    reference = generate("a dog", 1)
    per_sample = errors.samples[1]["errors"]
    for i, j in [(1, 3), (4, 7), (6, 8)]:
        enable_schedule(pipeline, StaticScheduleConfig.from_steps(STEPS, list(range(i + 1, j))))
        video = generate("a dog", 1)
        assert get_stats(pipeline).skipped_steps == list(range(i + 1, j))
        disable_schedule(pipeline)
        assert per_sample[(i, j)] == video_error(video, reference)
        assert per_sample[(i, j)] > 0
    mean = (errors.samples[0]["errors"][(4, 7)] + per_sample[(4, 7)]) / 2
    assert errors.errors[(4, 7)] == pytest.approx(mean)


def test_search_commands_end_to_end(tmp_path, capsys, cli, prompts):
    errors_file, schedule, plot = tmp_path / "errors.json", tmp_path / "searched.json", tmp_path / "masks.png"
    argv = ["search-calibrate", "--tiny", "--prompt", "a cat", "--steps", str(STEPS), "--frames", "1"]
    assert magcache_cli([*argv, "--K", "2", "--retention-ratio", "0.25", "--out", str(errors_file)]) == 0
    out = capsys.readouterr().out
    assert f"{STEPS + sum(STEPS - i - (j - i - 1) for i, j in segments(STEPS, 2, 1))} full transformer passes" in out
    recorded = SegmentErrors.load(errors_file)
    assert (recorded.num_steps, recorded.max_skip_steps, recorded.first_start) == (STEPS, 2, 1)
    assert recorded.provenance["settings"]["num_steps"] == STEPS

    search = ["search", "--errors", str(errors_file), "--passes", "5", "--retention-ratio", "0.25"]
    assert magcache_cli([*search, "--out", str(schedule), "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "MagCache at threshold" in out and plot.read_bytes().startswith(b"\x89PNG")
    searched = StaticScheduleConfig.load(schedule)
    assert searched.num_computed == 5 and searched.skip[:2] == (False, False)
    assert searched.provenance["objective"] == "sum" and searched.provenance["calibration_samples"]
    assert magcache_cli([*search, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["schedule"]["skip"] == list(searched.skip)

    assert magcache_cli([*search[:3], "--passes", "2", "--retention-ratio", "0.25"]) == 2
    assert "2 passes is out of reach" in capsys.readouterr().err
    assert magcache_cli([*search[:5], "--retention-ratio", "0.1"]) == 2
    assert "retain at least 2 steps" in capsys.readouterr().err
    assert magcache_cli([*search, "--K", "3"]) == 2
    assert "K 3 is more than the recording's 2" in capsys.readouterr().err

    run = ["--method", "schedule", "--schedule", schedule, "--tiny", "--prompts", prompts, "--num-samples", "1"]
    assert cli.main([str(a) for a in [*run, "--steps", STEPS, "--frames", 1, "--out", tmp_path / "videos"]]) == 0
    capsys.readouterr()
    record = json.loads((tmp_path / "videos" / "manifest.jsonl").read_text().splitlines()[0])
    assert record["computed_steps"] == searched.computed_steps
