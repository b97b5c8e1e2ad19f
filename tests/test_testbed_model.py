"""The shipped test bed: its weights load into VideoSys's own classes, and what it samples through the
real OpenSoraPipeline and RFLOW shows the prompt's background, colour and motion."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from magcache_videosys.testbed.model import GENERATE_KWARGS, MODEL_CONFIG, WEIGHTS

pytestmark = pytest.mark.videosys

# Every background four times, every direction three times, every colour twice, each shape six times.
PROMPTS = (
    "a red circle moves left on a black background",
    "a green square moves right on a white background",
    "a blue circle moves up on a gray background",
    "a yellow square moves down on a black background",
    "a magenta circle moves right on a gray background",
    "a cyan square moves left on a white background",
    "a red square moves up on a white background",
    "a blue square moves down on a gray background",
    "a green circle moves left on a gray background",
    "a yellow circle moves up on a white background",
    "a magenta square moves down on a white background",
    "a cyan circle moves right on a black background",
)
AXIS = {"left": "x", "right": "x", "up": "y", "down": "y"}


@pytest.fixture(scope="module")
def pipeline():
    from magcache_videosys.testbed import testbed_opensora_pipeline

    return testbed_opensora_pipeline()


def test_weights_are_small_and_match_their_provenance():
    provenance = json.loads((WEIGHTS.parent / "provenance.json").read_text())
    data = WEIGHTS.read_bytes()
    assert len(data) < 20 * 2**20
    assert provenance["weights"] == dict(file=WEIGHTS.name, bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    assert provenance["settings"]["model_config"] == MODEL_CONFIG


def test_the_pipeline_is_videosys_own(pipeline):
    from videosys.models.transformers.open_sora_transformer_3d import STDiT3
    from videosys.pipelines.open_sora.pipeline_open_sora import OpenSoraPipeline
    from videosys.schedulers.scheduling_rflow_open_sora import RFLOW

    assert isinstance(pipeline, OpenSoraPipeline) and isinstance(pipeline.transformer, STDiT3)
    assert isinstance(pipeline.scheduler, RFLOW) and pipeline.scheduler.use_timestep_transform
    assert pipeline.scheduler.num_sampling_steps == 30 and pipeline.scheduler.cfg_scale == 7.0
    assert pipeline.transformer.depth == MODEL_CONFIG["depth"]


def test_sampled_clips_show_what_the_prompt_names(pipeline):
    from magcache_videosys.testbed.probe import read_clip
    from magcache_videosys.testbed.task import parse_prompt

    hits = {"background": 0, "colour": 0, "axis": 0, "direction": 0}
    for seed, prompt in enumerate(PROMPTS):
        video = pipeline.generate(prompt, seed=seed, verbose=False, **GENERATE_KWARGS).video[0]
        assert video.shape == (17, 192, 192, 3) and video.dtype == torch.uint8
        spec, reading = parse_prompt(prompt), read_clip(video)
        matches = reading.matches(spec)
        for key in ("background", "colour", "direction"):
            hits[key] += matches[key]
        hits["axis"] += AXIS[reading.direction] == AXIS[spec.direction]
    # Of 12, chance gives 4 backgrounds, 2 colours, 6 axes of motion, 3 directions. The shipped weights
    # get 12, 12, 12 and 7 (they move along the right axis, but the wrong way about a third of the
    # time: 17 of 24 on other prompts and seeds); the direction's bound leaves room for rounding.
    assert hits["background"] == hits["colour"] == hits["axis"] == len(PROMPTS)
    assert hits["direction"] >= 6


def test_a_config_with_magcache_builds_a_cached_test_bed():
    from magcache_videosys import get_stats
    from magcache_videosys.configs import OpenSoraConfig
    from magcache_videosys.testbed import testbed_opensora_pipeline

    pipeline = testbed_opensora_pipeline(OpenSoraConfig(enable_magcache=True, magcache_config="opensora-fast"))
    pipeline.generate(PROMPTS[0], seed=0, verbose=False, **GENERATE_KWARGS)
    assert len(get_stats(pipeline).computed_steps) == 12
