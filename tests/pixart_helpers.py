"""A tiny random-weight diffusers PixArt transformer and a batched-CFG Euler sampling loop.

PixArt is the image DiT that Open-Sora's STDiT grew from; it stands in for STDiT3 in the tests
that must run without VideoSys.
"""

from __future__ import annotations

from typing import Callable

import torch
from diffusers import PixArtTransformer2DModel

CHANNELS = 4
TEXT_DIM = 12


def tiny_pixart(num_layers: int = 3, seed: int = 0) -> PixArtTransformer2DModel:
    torch.manual_seed(seed)
    model = PixArtTransformer2DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=CHANNELS,
        out_channels=2 * CHANNELS,
        num_layers=num_layers,
        sample_size=8,
        patch_size=2,
        cross_attention_dim=16,
        caption_channels=TEXT_DIM,
        norm_type="ada_norm_single",
        use_additional_conditions=False,
    )
    return model.eval()


@torch.no_grad()
def sample(
    model: PixArtTransformer2DModel,
    steps: int,
    seed: int = 0,
    batch: int = 1,
    size: int = 8,
    cfg: float = 4.0,
    before_step: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Rectified-flow Euler sampling with batched CFG: one transformer call per step."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, CHANNELS, size, size, generator=g)
    cond = torch.randn(batch, 5, TEXT_DIM, generator=g)
    text = torch.cat([cond, torch.zeros_like(cond)])
    for i in range(steps):
        if before_step is not None:
            before_step(i)
        t = torch.full((2 * batch,), 1000.0 * (1 - i / steps))
        out = model(
            torch.cat([z, z]),
            encoder_hidden_states=text,
            timestep=t,
            added_cond_kwargs={"resolution": None, "aspect_ratio": None},
            return_dict=False,
        )[0]
        v_cond, v_uncond = out[:, :CHANNELS].chunk(2)
        z = z + (v_uncond + cfg * (v_cond - v_uncond)) / steps
    return z
