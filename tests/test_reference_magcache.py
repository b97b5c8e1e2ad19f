"""Faithfulness: our MagCache against the MagCache reference implementation for Open-Sora 1.2.

The reference (``eval/magcache/experiments/opensora.py`` in github.com/Zehong-Ma/MagCache) is read
at test time from a local copy named by ``MAGCACHE_REFERENCE`` (``references.py``); it is never part
of this repo.
Both run the same tiny random-weight STDiT3 through VideoSys's own pipeline and RFLOW scheduler
(30 steps, batched CFG, same seed); the skipped steps and the final latent must agree.
"""

from __future__ import annotations

import re
import types

import pytest
import torch
from reference_values import OPENSORA_RATIOS
from references import load_reference_script
from videosys_helpers import FAST_SKIPS

from magcache_videosys import enable_magcache, get_stats

pytestmark = pytest.mark.videosys


def load_reference() -> types.ModuleType:
    """The reference's Open-Sora experiment script (``magcache_forward``), from ``MAGCACHE_REFERENCE``."""
    return load_reference_script(
        "MAGCACHE_REFERENCE", "eval/magcache/experiments/opensora.py", "magcache_reference_opensora"
    )


def patch_like_reference(transformer: torch.nn.Module, reference: types.ModuleType) -> None:
    """What the reference's eval_ours does to the class, on a private subclass of this instance."""
    import numpy as np

    attrs = dict(
        enable_magcache=True,
        forward=reference.magcache_forward,
        magcache_thresh=0.12,
        K=3,
        skip_time=6,
        t=0,
        residual_cache=None,
        accumulated_err=0,
        accumulated_sim=1,
        accumulated_steps=0,
        skip_steps=0,
        cache_time=4,
        ratio=np.array(OPENSORA_RATIOS) ** 0.5,
    )
    transformer.__class__ = type("ReferenceSTDiT3", (type(transformer),), attrs)


def final_latent(pipeline) -> torch.Tensor:
    latents = []
    handle = pipeline.vae.register_forward_pre_hook(lambda m, args: latents.append(args[0].clone()))
    pipeline.generate(
        "a stylish woman walks down a tokyo street",
        seed=0,
        resolution="144p",
        aspect_ratio="1:1",
        num_frames=17,
        verbose=False,
    )
    handle.remove()
    return latents[-1]


def test_matches_reference_schedule_and_latent(capsys):
    from magcache_videosys.tiny import tiny_opensora_pipeline

    reference = load_reference()
    theirs = tiny_opensora_pipeline(seed=0)
    patch_like_reference(theirs.transformer, reference)
    ours = tiny_opensora_pipeline(seed=0)
    enable_magcache(ours, "opensora-fast")

    capsys.readouterr()
    their_latent = final_latent(theirs)
    their_skips = [int(s) for s in re.findall(r"skip time (\d+)", capsys.readouterr().out)]
    our_latent = final_latent(ours)

    assert their_skips == FAST_SKIPS
    assert get_stats(ours).skipped_steps == FAST_SKIPS
    diff = (their_latent - our_latent).abs().max().item()
    assert diff <= 1e-6, f"max abs difference {diff}"
