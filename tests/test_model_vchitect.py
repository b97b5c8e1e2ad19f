"""Vchitect-2.0 (VideoSys ``VchitectXLPipeline``) passes the conformance suite: blocks that return
``(encoder, hidden)`` (the last ``(None, hidden)``), and CFG as two calls per step, each call
position with its own state and residual. No TeaCache here: no reference, no signal."""

from __future__ import annotations

import pytest
import torch
from conformance import STEPS, Conformance

from magcache_videosys import MagCacheConfig, enable_magcache, get_stats
from magcache_videosys.hooks import get_cache
from magcache_videosys.models.vchitect import Vchitect

pytestmark = pytest.mark.videosys

GEN = dict(height=64, width=64, frames=4, num_inference_steps=STEPS)


class TestVchitect(Conformance):
    family = Vchitect()

    def make_config(self):
        from magcache_videosys.videosys_compat import import_videosys

        return import_videosys().VchitectConfig()

    def make_pipeline(self, config=None):
        torch.set_num_threads(1)
        return self.family.tiny_pipeline(config or self.make_config())

    def generate(self, pipeline, seed=0, decode=False):
        latents = []

        def keep(pipe, step, t, tensors):
            latents.append(tensors["latents"])
            return {}

        out = pipeline.generate("a cat on a sofa", seed=seed, output_type="pt", callback_on_step_end=keep, **GEN)
        return latents[-1], torch.stack(out.video[0]) if decode else None

    def other_streams(self, out):
        return (out[0],)

    def streams_on_skip(self, head_args, head_kwargs):
        return (None,)  # the last block keeps no encoder stream


def test_a_bare_transformer_counts_steps_of_two_calls():
    fixture = TestVchitect()
    pipeline = fixture.make_pipeline()
    config = MagCacheConfig(mag_ratios=[0.9] * (STEPS - 1), threshold=0.15, max_skip_steps=2, num_steps=STEPS)
    enable_magcache(pipeline.transformer, config)
    fixture.generate(pipeline)
    stats = get_stats(pipeline.transformer)
    assert stats.complete and stats.num_steps == STEPS and stats.skipped_steps == config.plan().skipped_steps
    assert get_cache(pipeline.transformer).run_calls == 2 * STEPS
