"""Latte (VideoSys ``LattePipeline``, ``LatteT2V``, DDIM) passes the conformance suite: a stack
whose layout changes between blocks, with a positional term added inside it."""

from __future__ import annotations

import pytest
import torch
from conformance import STEPS, Conformance

from magcache_videosys import TeaCacheConfig, enable_magcache
from magcache_videosys.models import find_family
from magcache_videosys.models.latte import Latte
from magcache_videosys.models.opensora_plan import OpenSoraPlan

pytestmark = pytest.mark.videosys


class TestLatte(Conformance):
    family = Latte()
    # The published polynomial is negative for the large changes of a random model at few steps
    # (test_reference_teacache_latte.py uses it at 50 steps): the identity polynomial here.
    teacache = TeaCacheConfig(threshold=0.3, coefficients=[1.0, 0.0], compute_last_step=True)

    def make_config(self):
        from magcache_videosys.videosys_compat import import_videosys

        return import_videosys().LatteConfig(enable_vae_temporal_decoder=False)

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


def test_a_call_without_the_temporal_blocks_is_refused():
    pipeline = TestLatte().make_pipeline()
    assert find_family(pipeline.transformer).name == "latte" and not OpenSoraPlan().matches(pipeline.transformer)
    enable_magcache(pipeline, "opensora-fast")
    with pytest.raises(ValueError, match="enable_temporal_attentions=False: its temporal blocks, half of the block"):
        pipeline.generate(
            "a cat", num_inference_steps=2, output_type="latents", verbose=False, enable_temporal_attentions=False
        )
