"""CogVideoX 2b and 5b (VideoSys ``CogVideoXPipeline``) pass the conformance suite, and the encoder
stream a skipped step leaves as it came in never reaches the output."""

from __future__ import annotations

import inspect

import pytest
import torch
from conformance import STEPS, Conformance, skipping

from magcache_videosys import TeaCacheConfig, enable_magcache, get_stats
from magcache_videosys.hooks import get_cache
from magcache_videosys.models.cogvideox import CogVideoX

pytestmark = pytest.mark.videosys

GEN = dict(height=64, width=64, num_frames=9, num_inference_steps=STEPS, output_type="latent")


class CogVideoXFixture(Conformance):
    family = CogVideoX()
    variant = "2b"

    def make_config(self):
        from magcache_videosys.videosys_compat import import_videosys

        return import_videosys().CogVideoXConfig(model_path=f"tiny/CogVideoX-{self.variant}", vae_tiling=False)

    def make_pipeline(self, config=None):
        torch.set_num_threads(1)
        pipeline = self.family.tiny_pipeline(config or self.make_config())
        pipeline.set_progress_bar_config(disable=True)
        return pipeline

    def generate(self, pipeline, seed=0, decode=False):
        quiet = {"verbose": False} if "verbose" in inspect.signature(pipeline.generate).parameters else {}
        latent = pipeline.generate("a cat on a sofa", seed=seed, **GEN, **quiet).video
        if not decode:
            return latent, None
        with torch.no_grad():
            return latent, pipeline.decode_latents(latent)

    def other_streams(self, out):
        return (out[1],)

    def streams_on_skip(self, head_args, head_kwargs):
        return (head_kwargs["encoder_hidden_states"],)  # the encoder stream as it came in


class TestCogVideoX2b(CogVideoXFixture):
    variant = "2b"
    teacache = TeaCacheConfig(threshold=0.2, coefficients="cogvideox-2b", compute_last_step=True)


class TestCogVideoX5b(CogVideoXFixture):
    variant = "5b"
    teacache = TeaCacheConfig(threshold=0.2, coefficients="cogvideox-5b", compute_last_step=True)


@pytest.mark.parametrize("fixture", [TestCogVideoX2b(), TestCogVideoX5b()], ids=["2b", "5b"])
def test_the_encoder_stream_of_a_skipped_step_never_reaches_the_output(fixture):
    """The last block of a skipped step returns the encoder stream as it came in. Restoring it with
    its own residual (as TeaCache's reference does) or filling it with 1e4 gives bitwise the same
    final latent: 2b drops the stream after the stack, 5b layer-norms each token on its own and
    slices the encoder tokens off."""

    def run(encoder_on_skip):
        pipeline = fixture.make_pipeline()
        enable_magcache(pipeline, skipping())
        cache = get_cache(pipeline.transformer)
        blocks = cache.binding.blocks
        seen = {}

        def head(module, args, kwargs):
            seen["in"] = kwargs["encoder_hidden_states"]

        def tail(module, args, kwargs, out):
            if not cache.skipping:
                seen["residual"] = out[1] - seen["in"]

        hooks = [
            blocks[0].register_forward_pre_hook(head, with_kwargs=True),
            blocks[-1].register_forward_hook(tail, with_kwargs=True),
        ]
        if encoder_on_skip is not None:
            cache.binding.pack_tail = lambda args, kwargs, restored: (restored, encoder_on_skip(seen))
        try:
            latent, _ = fixture.generate(pipeline)
        finally:
            for hook in hooks:
                hook.remove()
        assert get_stats(pipeline).skipped_steps == [1, 3, 5]
        return latent

    as_it_came = run(None)
    restored = run(lambda seen: seen["in"] + seen["residual"])
    garbage = run(lambda seen: torch.full_like(seen["in"], 1e4))
    assert torch.equal(as_it_came, restored) and torch.equal(as_it_came, garbage)
