"""A static schedule: its file (round trip, and every kind of bad file as one clear error), the
preview against the run, and the policy executing the mask exactly on VideoSys's Open-Sora and
CogVideoX pipelines."""

from __future__ import annotations

import json
import re

import pytest
import torch
from videosys_helpers import FAST_SKIPS, generate

from magcache_videosys import (
    MagCacheConfig,
    ScheduleFileError,
    StaticScheduleConfig,
    disable_magcache,
    disable_schedule,
    enable_magcache,
    enable_schedule,
    get_stats,
)
from magcache_videosys.cli import main as magcache_cli

MASK = [False, False, True, True, False, True, False, True, True, True]  # 10 steps, K 3


def test_round_trip_keeps_mask_name_and_provenance(tmp_path):
    cfg = StaticScheduleConfig(skip=MASK, name="mine", provenance={"made": "by hand", "passes": 4})
    path = cfg.save(tmp_path / "s.json")
    data = json.loads(path.read_text())
    assert data["computed_steps"] == [0, 1, 4, 6] and data["skipped_steps"] == [2, 3, 5, 7, 8, 9]
    assert data["mask"] == "CCssCsCsss" and data["passes"] == 4 and data["max_skip_steps"] == 3
    again = StaticScheduleConfig.load(path)
    assert again == cfg and again.provenance == {"made": "by hand", "passes": 4}
    assert StaticScheduleConfig.from_steps(10, [2, 3, 5, 7, 8, 9]).skip == tuple(MASK)
    assert cfg.predicted_speedup == 2.5


BAD_FILES = {
    "not JSON": ("{", "is not valid JSON"),
    "a list": ("[false, true]", "expected a JSON object, got list"),
    "wrong length": ('{"num_steps": 4, "skip": [false, true, false]}', "'skip' has 3 entries but num_steps is 4"),
    "step 0 skipped": ('{"skip": [true, false, false]}', "step 0 is skipped, but a skipped step reuses the residual"),
    "not booleans": ('{"skip": [0, 1, 0]}', "'skip' must be a list of true/false"),
    "one step": ('{"skip": [false]}', "a schedule needs at least 2 steps"),
    "another format": ('{"format": "ratio-table", "skip": [false, true]}', "format is 'ratio-table'"),
    "disagreeing steps": (
        '{"skip": [false, true, false], "computed_steps": [0, 1]}',
        r"computed_steps \[0, 1\] disagrees with the mask in 'skip' \(\[0, 2\]\)",
    ),
}


@pytest.mark.parametrize("case", BAD_FILES, ids=list(BAD_FILES))
def test_bad_schedule_files_are_one_clear_error(tmp_path, case):
    text, message = BAD_FILES[case]
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ScheduleFileError, match=message):
        StaticScheduleConfig.load(path)


def test_unreadable_schedule_paths(tmp_path):
    with pytest.raises(ScheduleFileError, match="No such file"):
        StaticScheduleConfig.load(tmp_path / "missing.json")
    with pytest.raises(ScheduleFileError, match="is not a file"):
        StaticScheduleConfig.load(tmp_path)
    (tmp_path / "latin1.json").write_bytes(b'{"name": "\xe9"}')
    with pytest.raises(ScheduleFileError, match="not UTF-8"):
        StaticScheduleConfig.load(tmp_path / "latin1.json")


def test_another_step_count_is_an_error_that_says_so():
    cfg = StaticScheduleConfig(skip=MASK, name="mine")
    assert cfg.computed_steps_for(10) == [0, 1, 4, 6]
    with pytest.raises(ValueError, match="'mine' is a mask of 10 steps but the run has 12; run 10 steps, or search"):
        cfg.computed_steps_for(12)


def test_schedule_command_rejects_knobs_with_a_file(tmp_path, capsys):
    path = StaticScheduleConfig(skip=MASK).save(tmp_path / "s.json")
    assert magcache_cli(["schedule", "--schedule", str(path), "--threshold", "0.1"]) == 2
    assert "--threshold does not apply to it" in capsys.readouterr().err
    assert magcache_cli(["schedule", "--schedule", str(path), "--steps", "12"]) == 2
    assert "a mask of 10 steps but the run has 12" in capsys.readouterr().err


def _computed(text: str, pattern: str) -> list[int]:
    return [int(s) for s in re.search(pattern, text).group(1).split()]


def _previews(capsys, cli, prompts, tmp_path, path) -> dict[str, list[int]]:
    out = {}
    assert magcache_cli(["schedule", "--schedule", str(path)]) == 0
    out["schedule"] = _computed(capsys.readouterr().out, r"\(computed: ([\d ]+)\)")
    assert magcache_cli(["schedule", "--schedule", str(path), "--json"]) == 0
    out["schedule --json"] = json.loads(capsys.readouterr().out)["computed_steps"]
    argv = ["--method", "schedule", "--schedule", path, "--steps", "10", "--prompts", prompts]
    assert cli.main([str(a) for a in [*argv, "--out", tmp_path / "never", "--dry-run"]]) == 0
    out["opensora.py --dry-run"] = _computed(capsys.readouterr().out, r"computes +\d+ of \d+ steps: ([\d ]+)")
    return out


@pytest.mark.videosys
def test_the_run_computes_the_previewed_steps(capsys, cli, prompts, tmp_path, make_pipeline, videosys):
    path = StaticScheduleConfig(skip=MASK).save(tmp_path / "s.json")
    shown = _previews(capsys, cli, prompts, tmp_path, path)
    pipeline = make_pipeline(num_sampling_steps=10)
    enable_schedule(pipeline, path)  # a file is accepted where a config is
    generate(pipeline, num_frames=1)
    ran = get_stats(pipeline).computed_steps
    assert {name: ran for name in shown} == shown == {name: [0, 1, 4, 6] for name in shown}


@pytest.mark.videosys
def test_magcache_s_mask_as_a_schedule_gives_magcache_s_video_bitwise(make_pipeline):
    """The same decisions on the same runtime: the schedule of opensora-fast, written as a mask,
    gives the final latent of MagCache opensora-fast exactly."""
    mask = StaticScheduleConfig.from_steps(30, FAST_SKIPS, name="fast-as-mask")
    ours = make_pipeline()
    enable_schedule(ours, mask)
    latent, _ = generate(ours, num_frames=1)
    assert get_stats(ours).skipped_steps == FAST_SKIPS
    theirs = make_pipeline()
    enable_magcache(theirs, MagCacheConfig.preset("opensora-fast"))
    reference, _ = generate(theirs, num_frames=1)
    assert get_stats(theirs).skipped_steps == FAST_SKIPS
    assert torch.equal(latent, reference)
    disable_schedule(ours)
    disable_magcache(theirs)
    uncached, _ = generate(ours, num_frames=1)
    assert not torch.equal(uncached, latent)  # the mask did change the run


@pytest.mark.videosys
def test_a_run_of_another_step_count_stops_with_the_reason(make_pipeline):
    pipeline = make_pipeline(num_sampling_steps=12)
    enable_schedule(pipeline, StaticScheduleConfig(skip=MASK))
    with pytest.raises(ValueError, match="Schedule is configured for num_steps=10 but this sampling run has 12"):
        generate(pipeline, num_frames=1)


@pytest.mark.videosys
def test_a_videosys_config_carries_the_schedule(tmp_path, videosys):
    from magcache_videosys import OpenSoraConfig
    from magcache_videosys.plugin import CachedPipeline

    path = StaticScheduleConfig(skip=MASK).save(tmp_path / "s.json")
    config = OpenSoraConfig(num_sampling_steps=10, enable_schedule=True, schedule_config=str(path))
    assert config.enable_schedule and config.schedule_config.skip == tuple(MASK)
    assert isinstance(config.pipeline_cls, CachedPipeline)
    with pytest.raises(ValueError, match="enable_schedule=True needs schedule_config"):
        OpenSoraConfig(enable_schedule=True)
    with pytest.raises(ValueError, match="enable_magcache and enable_schedule are both set"):
        OpenSoraConfig(enable_magcache=True, enable_schedule=True, schedule_config=str(path))
    with pytest.raises(RuntimeError, match="Schedule is already enabled on this config"):
        enable_magcache(config, "opensora-fast")


@pytest.mark.videosys
def test_the_mask_runs_exactly_on_cogvideox():
    """Another family: the schedule of the conformance suite's ``skipping()`` as a mask gives
    MagCache's decisions and final latent bitwise on VideoSys's CogVideoX pipeline."""
    from conformance import STEPS, skipping
    from test_model_cogvideox import CogVideoXFixture

    fixture = CogVideoXFixture()
    plan = skipping(STEPS).plan(STEPS)
    mask = StaticScheduleConfig.from_steps(STEPS, plan.skipped_steps)
    ours = fixture.make_pipeline()
    enable_schedule(ours, mask)
    latent, _ = fixture.generate(ours)
    assert get_stats(ours).computed_steps == plan.computed_steps == [0, 2, 4]
    theirs = fixture.make_pipeline()
    enable_magcache(theirs, skipping(STEPS))
    reference, _ = fixture.generate(theirs)
    assert torch.equal(latent, reference)
