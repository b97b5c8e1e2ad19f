"""Faithfulness: our TeaCache against the TeaCache reference forward for CogVideoX 2b and 5b.

The reference is ``teacache_forward`` in ``eval/teacache/experiments/cogvideox.py`` of a local copy
of github.com/ali-vilab/TeaCache named by ``TEACACHE_REFERENCE`` (``references.py``). Both run the
same tiny random-weight CogVideoX through VideoSys's own pipeline and CogVideoX DDIM scheduler
(20 steps, batched CFG, same seed) with the published thresholds (0.1 slow, 0.2 fast) and
coefficients; the steps whose block stack ran and the final latent must agree (bit for bit).

The reference reads the timestep embedding, and compares the call's timestep with the run's first
and last (integer to integer): it always computes both, as ``compute_last_step=True`` does. It
restores the encoder stream on a skipped step too; we do not (it never reaches the output, see
models/cogvideox.py), and the latents still agree bitwise. It needs ``all_timesteps``, which the
MagCache copy's pipeline passes and upstream's does not: there a forward pre-hook hands it the
scheduler's timesteps, as the older copy does itself.
"""

from __future__ import annotations

import pytest
import torch
from references import load_reference_script

from magcache_videosys import TeaCacheConfig, enable_teacache, get_stats
from magcache_videosys.models.cogvideox import CogVideoX

pytestmark = pytest.mark.videosys

STEPS = 20
GEN = dict(height=64, width=64, num_frames=9, num_inference_steps=STEPS, output_type="latent")


def make_pipeline(variant: str):
    from magcache_videosys.videosys_compat import import_videosys

    torch.set_num_threads(1)
    config = import_videosys().CogVideoXConfig(model_path=f"tiny/CogVideoX-{variant}", vae_tiling=False)
    pipeline = CogVideoX().tiny_pipeline(config)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def patch_like_reference(pipeline, reference, threshold: float) -> None:
    """What the reference's eval_teacache_* does to the class, on a private subclass of this instance."""
    transformer = pipeline.transformer
    attrs = dict(
        enable_teacache=True,
        rel_l1_thresh=threshold,
        accumulated_rel_l1_distance=0,
        previous_modulated_input=None,
        previous_residual=None,
        previous_residual_encoder=None,
        forward=reference.teacache_forward,
    )
    transformer.__class__ = type("ReferenceCogVideoX", (type(transformer),), attrs)
    scheduler = pipeline.scheduler

    def give_timesteps(module, args, kwargs):
        if kwargs.get("all_timesteps") is None:
            return args, {**kwargs, "all_timesteps": scheduler.timesteps}
        return None

    transformer.register_forward_pre_hook(give_timesteps, with_kwargs=True)


def run(pipeline) -> tuple[torch.Tensor, list[int]]:
    """The final latent, and the steps whose block stack ran (block 0's attention was called)."""
    calls, ran = [], []
    model = pipeline.transformer
    hooks = [
        model.register_forward_pre_hook(lambda m, args: calls.append(len(calls))),
        model.transformer_blocks[0].attn1.register_forward_pre_hook(lambda m, args: ran.append(calls[-1])),
    ]
    try:
        latent = pipeline.generate("a stylish woman walks down a tokyo street", seed=0, **GEN).video
    finally:
        for hook in hooks:
            hook.remove()
    assert len(calls) == STEPS
    return latent, sorted(set(ran))


@pytest.mark.parametrize(
    "variant, threshold, computed",
    [
        ("2b", 0.1, [0, 3, 6, 9, 12, 15, 18, 19]),
        ("2b", 0.2, [0, 6, 11, 16, 19]),
        ("5b", 0.1, [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 19]),
        ("5b", 0.2, [0, 3, 6, 9, 12, 15, 18, 19]),
    ],
)
def test_matches_reference(variant, threshold, computed):
    reference = load_reference_script(
        "TEACACHE_REFERENCE", "eval/teacache/experiments/cogvideox.py", "teacache_reference_cogvideox"
    )
    theirs = make_pipeline(variant)
    patch_like_reference(theirs, reference, threshold)
    ours = make_pipeline(variant)
    enable_teacache(
        ours, TeaCacheConfig(threshold=threshold, coefficients=f"cogvideox-{variant}", compute_last_step=True)
    )
    their_latent, their_computed = run(theirs)
    our_latent, our_computed = run(ours)
    assert our_computed == get_stats(ours).computed_steps
    assert their_computed == our_computed == computed
    assert (their_latent - our_latent).abs().max().item() == 0.0


def test_the_reference_computes_the_last_step_where_the_rule_alone_would_skip_it():
    config = TeaCacheConfig(threshold=0.2, coefficients="cogvideox-2b", compute_last_step=False)
    rule_only = make_pipeline("2b")
    enable_teacache(rule_only, config)
    _, computed = run(rule_only)
    assert computed[-1] != STEPS - 1 and computed[:4] == [0, 6, 11, 16]
