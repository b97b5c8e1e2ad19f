"""Faithfulness: our TeaCache against the TeaCache reference forward for Latte.

The reference is ``teacache_forward`` in ``eval/teacache/experiments/latte.py`` of a local copy of
github.com/ali-vilab/TeaCache named by ``TEACACHE_REFERENCE`` (``references.py``). Both run the same
tiny random-weight Latte through VideoSys's own pipeline and DDIM scheduler (batched CFG, same seed)
with the published coefficients; the steps whose block stack ran and the final latent must agree
(bit for bit). The reference keeps its residual in the spatial layout, we keep ours in the last
temporal block's: the same numbers, permuted.

The reference compares the call's timestep with the run's first and last (integer to integer): it
always computes both, as ``compute_last_step=True`` does. The published polynomial is negative
above a relative change of 0.237, where one step would make the reference skip all later ones; a
random model's first steps change that much at few steps, so this runs 50 steps (Latte's default).
"""

from __future__ import annotations

import pytest
import torch
from references import load_reference_script

from magcache_videosys import TeaCacheConfig, enable_teacache, get_stats
from magcache_videosys.models.latte import Latte

pytestmark = pytest.mark.videosys

STEPS = 50


def make_pipeline():
    from magcache_videosys.videosys_compat import import_videosys

    torch.set_num_threads(1)
    return Latte().tiny_pipeline(import_videosys().LatteConfig(enable_vae_temporal_decoder=False))


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
    """The final latent, and the steps whose block stack ran (block 0's attention was called)."""
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
    assert len(calls) == STEPS
    return latent, sorted(set(ran))


@pytest.mark.parametrize(
    "threshold, computed",
    [
        (
            0.1,
            [
                *range(12),
                13,
                14,
                15,
                16,
                17,
                18,
                19,
                21,
                23,
                25,
                26,
                28,
                *range(30, 35),
                36,
                37,
                38,
                40,
                41,
                43,
                45,
                47,
                48,
                49,
            ],
        ),
        (0.2, [*range(9), *range(10, 21, 2), 23, 25, 27, 29, 31, 33, 35, 37, 39, 41, 44, 45, 48, 49]),
    ],
)
def test_matches_reference(threshold, computed):
    reference = load_reference_script(
        "TEACACHE_REFERENCE", "eval/teacache/experiments/latte.py", "teacache_reference_latte"
    )
    theirs = make_pipeline()
    patch_like_reference(theirs.transformer, reference, threshold)
    ours = make_pipeline()
    enable_teacache(ours, TeaCacheConfig(threshold=threshold, coefficients="latte", compute_last_step=True))
    their_latent, their_computed = run(theirs)
    our_latent, our_computed = run(ours)
    assert our_computed == get_stats(ours).computed_steps
    assert their_computed == our_computed == computed
    assert (their_latent - our_latent).abs().max().item() == 0.0
