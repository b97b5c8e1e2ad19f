"""Faithfulness: our TeaCache against the TeaCache reference forward for Open-Sora-Plan v1.1.

The reference is ``teacache_forward`` in ``eval/teacache/experiments/opensora_plan.py`` of a local
copy of github.com/ali-vilab/TeaCache named by ``TEACACHE_REFERENCE`` (``references.py``); it exists
for v1.1 only. Both run the same tiny random-weight v1.1 ``LatteT2V`` through VideoSys's own pipeline
and PNDM scheduler (20 steps asked, 29 iterations of the sampling loop, batched CFG, same seed) with
the published coefficients; the iterations whose block stack ran and the final latent must agree
(bit for bit). The reference compares the call's timestep with the run's first and last: PNDM
repeats some timesteps, but not those two, so it computes exactly the first and last iteration,
as ``compute_last_step=True`` does.
"""

from __future__ import annotations

import pytest
import torch
from references import load_reference_script

from magcache_videosys import TeaCacheConfig, enable_teacache, get_stats
from magcache_videosys.models.opensora_plan import TINY_FRAMES, OpenSoraPlan

pytestmark = pytest.mark.videosys

STEPS = 20
CALLS = STEPS + 9


def make_pipeline():
    from magcache_videosys.videosys_compat import import_videosys

    torch.set_num_threads(1)
    config = import_videosys().OpenSoraPlanConfig(version="v110", transformer_type="65x512x512", enable_tiling=False)
    config.num_frames = TINY_FRAMES
    return OpenSoraPlan().tiny_pipeline(config)


def patch_like_reference(transformer: torch.nn.Module, reference, threshold: float) -> None:
    """What the reference's eval_teacache_* does to the class, on a private subclass of this instance."""
    attrs = dict(
        enable_teacache=True,
        rel_l1_thresh=threshold,
        accumulated_rel_l1_distance=0,
        previous_modulated_input=None,
        previous_residual=None,
        forward=reference.teacache_forward,
    )
    transformer.__class__ = type("ReferenceLatteT2V", (type(transformer),), attrs)


def run(pipeline) -> tuple[torch.Tensor, list[int]]:
    """The final latent, and the iterations whose block stack ran (block 0's attention was called)."""
    calls, ran = [], []
    model = pipeline.transformer
    hooks = [
        model.register_forward_pre_hook(lambda m, args: calls.append(len(calls))),
        model.transformer_blocks[0].attn1.register_forward_pre_hook(lambda m, args: ran.append(calls[-1])),
    ]
    try:
        latent = pipeline.generate(
            "a stylish woman walks down a tokyo street",
            seed=0,
            num_inference_steps=STEPS,
            output_type="latents",
            verbose=False,
        ).video
    finally:
        for hook in hooks:
            hook.remove()
    assert len(calls) == CALLS
    return latent, sorted(set(ran))


@pytest.mark.parametrize(
    "threshold, computed",
    [
        (0.1, [0, 1, 3, 5, 7, 9, 11, 13, *range(14, 29)]),
        (0.2, [0, 1, 3, 5, 7, 9, 11, 13, 14, 16, 18, 19, 21, 22, 23, 25, 27, 28]),
    ],
)
def test_matches_reference(threshold, computed):
    reference = load_reference_script(
        "TEACACHE_REFERENCE", "eval/teacache/experiments/opensora_plan.py", "teacache_reference_opensora_plan"
    )
    theirs = make_pipeline()
    patch_like_reference(theirs.transformer, reference, threshold)
    ours = make_pipeline()
    enable_teacache(
        ours, TeaCacheConfig(threshold=threshold, coefficients="opensora-plan-v1.1", compute_last_step=True)
    )
    their_latent, their_computed = run(theirs)
    our_latent, our_computed = run(ours)
    assert our_computed == get_stats(ours).computed_steps and get_stats(ours).num_steps == CALLS
    assert their_computed == our_computed == computed
    assert (their_latent - our_latent).abs().max().item() == 0.0
