"""Open-Sora 1.2 (VideoSys ``OpenSoraPipeline``, ``STDiT3``, RFLOW) passes the conformance suite."""

from __future__ import annotations

import pytest
import torch
from conformance import STEPS, Conformance

from magcache_videosys import TeaCacheConfig
from magcache_videosys.models.opensora import OpenSora

pytestmark = pytest.mark.videosys

GEN = dict(resolution="144p", aspect_ratio="1:1", num_frames=17, verbose=False)


class TestOpenSora(Conformance):
    family = OpenSora()
    # Random weights change the modulated input far more per step than trained ones (see
    # test_videosys_teacache.py): this threshold skips some of the six steps.
    teacache = TeaCacheConfig(threshold=0.6)

    def make_config(self):
        from magcache_videosys.videosys_compat import import_videosys

        return import_videosys().OpenSoraConfig(num_sampling_steps=STEPS)

    def make_pipeline(self, config=None):
        torch.set_num_threads(1)
        return self.family.tiny_pipeline(config or self.make_config())

    def generate(self, pipeline, seed=0, decode=False):
        latents = []
        handle = pipeline.vae.register_forward_pre_hook(lambda m, args: latents.append(args[0].clone()))
        try:
            video = pipeline.generate("a cat on a sofa", seed=seed, **GEN).video
        finally:
            handle.remove()
        return latents[-1], video if decode else None
