"""diffusers PixArt-alpha (``PixArtTransformer2DModel`` in diffusers' own ``PixArtAlphaPipeline``)
passes the conformance suite, and runs are told apart after an interruption.

No VideoSys here: PixArt is not a VideoSys model, so it has no VideoSys config and no PAB, and its
family gives no TeaCache signal.
"""

from __future__ import annotations

import pytest
import torch
from conformance import STEPS, Conformance
from pixart_helpers import generate_pixart, tiny_pixart_pipeline

from magcache_videosys import MagCacheConfig, disable_magcache, enable_magcache, get_stats
from magcache_videosys.models.pixart import PixArt


class TestPixArt(Conformance):
    family = PixArt()
    test_enabled_on_the_config_every_rank_builds_it_in = None  # not a VideoSys model: no config
    test_pab_runs = None  # PAB is VideoSys's own

    def make_pipeline(self, config=None):
        torch.set_num_threads(1)
        return tiny_pixart_pipeline()

    def generate(self, pipeline, seed=0, decode=False):
        latent = generate_pixart(pipeline, STEPS, seed)
        if not decode:
            return latent, None
        with torch.no_grad():
            return latent, pipeline.vae.decode(latent / pipeline.vae.config.scaling_factor).sample


# --- an interrupted run, where the calls say nothing about their run -------------------------------
STEPS_10 = 10
SKIPPING_10 = MagCacheConfig(
    mag_ratios=[0.9] * (STEPS_10 - 1), threshold=0.15, max_skip_steps=2, retention_ratio=0.2, num_steps=STEPS_10
)


def interrupted(pipeline, at_call: int) -> None:
    calls = []

    def interrupt(module, args):
        calls.append(1)
        if len(calls) == at_call + 1:
            raise KeyboardInterrupt("user pressed Ctrl-C")

    handle = pipeline.transformer.register_forward_pre_hook(interrupt)
    with pytest.raises(KeyboardInterrupt):
        generate_pixart(pipeline, STEPS_10)
    handle.remove()


def test_on_the_pipeline_the_scheduler_tells_a_new_run_after_an_interruption():
    pipeline = tiny_pixart_pipeline()
    enable_magcache(pipeline, SKIPPING_10)
    reference = generate_pixart(pipeline, STEPS_10)
    assert get_stats(pipeline).skipped_steps == [2, 4, 6, 8] == SKIPPING_10.plan().skipped_steps
    interrupted(pipeline, at_call=4)
    assert get_stats(pipeline).steps_seen == 4
    again = generate_pixart(pipeline, STEPS_10)
    assert get_stats(pipeline).skipped_steps == [2, 4, 6, 8] and get_stats(pipeline).complete
    assert torch.equal(again, reference)


def test_on_a_bare_transformer_counting_stays_out_of_phase_until_reenabled():
    # The transformer's calls carry nothing that tells runs apart, and a bare transformer has no
    # scheduler: calls are counted up to num_steps. The interrupted run's fifth call (step 4) was
    # counted, then stopped; the next run's first 5 calls finish that count (steps 5-9) and its last
    # 5 start a new one (steps 0-4), and so on for every later run.
    pipeline = tiny_pixart_pipeline()
    model = pipeline.transformer
    enable_magcache(model, SKIPPING_10)
    reference = generate_pixart(pipeline, STEPS_10)
    interrupted(pipeline, at_call=4)
    shifted = generate_pixart(pipeline, STEPS_10)
    stats = get_stats(model)
    assert stats.steps_seen == 5 and stats.skipped_steps == [2, 4]  # the run in progress: steps 0-4
    assert not torch.equal(shifted, reference)
    # Disabling and enabling again starts counting afresh.
    disable_magcache(model)
    enable_magcache(model, SKIPPING_10)
    assert torch.equal(generate_pixart(pipeline, STEPS_10), reference)
    assert get_stats(model).skipped_steps == [2, 4, 6, 8] and get_stats(model).complete
