"""Open-Sora-Plan v1.2 (VideoSys ``OpenSoraPlanPipeline``, ``OpenSoraT2V``, Euler ancestral) passes
the conformance suite."""

from __future__ import annotations

import pytest
import torch
from conformance import STEPS, Conformance

from magcache_videosys import MagCacheConfig, TeaCacheConfig, enable_magcache, get_stats
from magcache_videosys.models import find_family
from magcache_videosys.models.latte import Latte
from magcache_videosys.models.opensora_plan import TINY_FRAMES, OpenSoraPlan

pytestmark = pytest.mark.videosys


class TestOpenSoraPlanV12(Conformance):
    family = OpenSoraPlan()
    # No published coefficients for v1.2: the identity polynomial, the raw relative change.
    teacache = TeaCacheConfig(threshold=0.3, coefficients=[1.0, 0.0], compute_last_step=True)

    def make_config(self):
        from magcache_videosys.videosys_compat import import_videosys

        config = import_videosys().OpenSoraPlanConfig(version="v120", enable_tiling=False)
        config.num_frames = TINY_FRAMES
        return config

    def make_pipeline(self, config=None):
        torch.set_num_threads(1)
        return self.family.tiny_pipeline(config or self.make_config())

    def generate(self, pipeline, seed=0, decode=False):
        out = pipeline.generate(
            "a cat on a sofa", seed=seed, num_inference_steps=STEPS, output_type="latents", verbose=False
        )
        if not decode:
            return out.video, None
        with torch.no_grad():
            return out.video, pipeline.decode_latents(out.video)


def test_a_call_with_an_image_chain_is_refused():
    pipeline = TestOpenSoraPlanV12().make_pipeline()
    enable_magcache(pipeline, "opensora-fast")
    x = torch.randn(1, 4, 3 + 1, 8, 8)
    with pytest.raises(ValueError, match="use_image_num=1: every block then runs a second, image chain"):
        pipeline.transformer(
            x, timestep=torch.tensor([500]), encoder_hidden_states=torch.randn(1, 2, 4, 32), use_image_num=1
        )


# --- v1.1: Latte's stack, PNDM's sampling loop ------------------------------------------------------
INFERENCE_STEPS = 5  # PNDM: 5 + 9 = 14 iterations of the sampling loop


class TestOpenSoraPlanV11(TestOpenSoraPlanV12):
    steps = INFERENCE_STEPS + 9
    teacache = TeaCacheConfig(threshold=0.3, coefficients=[1.0, 0.0], compute_last_step=True)

    def make_config(self):
        from magcache_videosys.videosys_compat import import_videosys

        config = import_videosys().OpenSoraPlanConfig(
            version="v110", transformer_type="65x512x512", enable_tiling=False
        )
        config.num_frames = TINY_FRAMES
        return config

    def generate(self, pipeline, seed=0, decode=False):
        out = pipeline.generate(
            "a cat on a sofa", seed=seed, num_inference_steps=INFERENCE_STEPS, output_type="latents", verbose=False
        )
        if not decode:
            return out.video, None
        with torch.no_grad():
            return out.video, pipeline.decode_latents(out.video)


def test_v11_steps_are_the_sampling_loop_iterations_pndm_makes():
    """PNDM's warm-up makes 9 more iterations than the steps asked for; the schedule, the table
    and the statistics all count iterations (the length of scheduler.timesteps)."""
    fixture = TestOpenSoraPlanV11()
    pipeline = fixture.make_pipeline()
    config = MagCacheConfig(mag_ratios=[0.95] * (fixture.steps - 1), threshold=0.2, max_skip_steps=2)
    enable_magcache(pipeline, config)
    fixture.generate(pipeline)
    stats = get_stats(pipeline)
    assert len(pipeline.scheduler.timesteps) == INFERENCE_STEPS + 9 == stats.num_steps == config.table.num_steps
    assert stats.complete and stats.skipped_steps == config.plan().skipped_steps != []
    assert type(pipeline.transformer).__name__ == "LatteT2V" and not Latte().matches(pipeline.transformer)
    assert find_family(pipeline.transformer).name == "opensora-plan"
