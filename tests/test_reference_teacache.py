"""Faithfulness: our TeaCache against the TeaCache reference forward for Open-Sora 1.2.

The reference is ``teacache_forward`` in ``eval/teacache/experiments/opensora.py`` of a local copy
of github.com/ali-vilab/TeaCache named by ``TEACACHE_REFERENCE`` (``references.py``); it is never
part of this repo. Both run the same tiny random-weight STDiT3 through
VideoSys's own pipeline and RFLOW scheduler (30 steps, batched CFG, same seed); the steps that run
the block stack and the final latent must agree (they agree bit for bit). The published
thresholds (0.1, 0.2) skip nothing on random weights, whose modulated inputs change far more per
step; these thresholds skip. In float32 the reference computes only the first step for sure; in
bfloat16 also the last (``compute_last_step``, see TeaCacheConfig).
"""

from __future__ import annotations

import pytest
import torch
from references import load_reference_script

from magcache_videosys import TeaCacheConfig, enable_teacache, get_stats

pytestmark = pytest.mark.videosys

GEN = dict(resolution="144p", aspect_ratio="1:1", num_frames=17, verbose=False)


def make_pipeline(dtype: torch.dtype):
    from magcache_videosys.tiny import tiny_components
    from magcache_videosys.videosys_compat import import_videosys

    config = import_videosys().OpenSoraConfig()
    parts = {k: v.to(dtype) if isinstance(v, torch.nn.Module) else v for k, v in tiny_components(seed=0).items()}
    return config.pipeline_cls(config, device=torch.device("cpu"), dtype=dtype, **parts)


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
    transformer.__class__ = type("ReferenceSTDiT3", (type(transformer),), attrs)


def run(pipeline) -> tuple[torch.Tensor, list[int]]:
    """The final latent, and the steps whose block stack ran (seen inside the first block: on a
    skipped step our runtime still calls the block, which passes its input through)."""
    latents, calls, ran = [], [], []
    model = pipeline.transformer
    hooks = [
        pipeline.vae.register_forward_pre_hook(lambda m, args: latents.append(args[0].clone())),
        model.register_forward_pre_hook(lambda m, args: calls.append(len(calls))),
        model.spatial_blocks[0].attn.register_forward_pre_hook(lambda m, args: ran.append(calls[-1])),
    ]
    try:
        pipeline.generate("a stylish woman walks down a tokyo street", seed=0, **GEN)
    finally:
        for hook in hooks:
            hook.remove()
    assert len(calls) == 30
    return latents[-1], sorted(set(ran))


def compare(dtype: torch.dtype, config: TeaCacheConfig) -> tuple[list[int], list[int]]:
    """Run the reference and ours; assert equal decisions and latents; return both computed lists."""
    reference = load_reference_script(
        "TEACACHE_REFERENCE", "eval/teacache/experiments/opensora.py", "teacache_reference_opensora"
    )
    theirs = make_pipeline(dtype)
    patch_like_reference(theirs.transformer, reference, config.threshold)
    ours = make_pipeline(dtype)
    enable_teacache(ours, config)
    their_latent, their_computed = run(theirs)
    our_latent, our_computed = run(ours)
    assert our_computed == get_stats(ours).computed_steps
    diff = (their_latent.float() - our_latent.float()).abs().max().item()
    assert diff <= 1e-6, f"max abs difference {diff}"
    return their_computed, our_computed


@pytest.mark.parametrize(
    "threshold, computed",
    [
        (0.5, [0, 2, 4, 6, 8, 10, 11, 13, 15, 17, 19, 21, 23, 25, 26, 28, 29]),
        (0.8, [0, 2, 4, 7, 9, 11, 13, 16, 18, 20, 23, 26, 28]),  # the last step skipped
        (1.0, [0, 3, 6, 9, 11, 14, 17, 19, 22, 25, 28]),
    ],
)
def test_float32_matches_reference_with_the_default_last_step(threshold, computed):
    # In float32 only the first timestep equals its int-truncated entry of the run's list.
    theirs, ours = compare(torch.float32, TeaCacheConfig(threshold=threshold))
    assert theirs == ours == computed


def test_bfloat16_reference_computes_the_last_step_as_compute_last_step_does():
    # In bfloat16, VideoSys's default dtype, the last timestep rounds to an integer and the
    # reference's last-step test fires: at this threshold the rule alone would skip step 29.
    config = TeaCacheConfig(threshold=1.0, compute_last_step=True)
    theirs, ours = compare(torch.bfloat16, config)
    assert theirs == ours and theirs[-1] == 29
    rule_only = make_pipeline(torch.bfloat16)
    enable_teacache(rule_only, config.replace(compute_last_step=False))
    _, computed = run(rule_only)
    assert computed == ours[:-1] and len(ours) <= 12
