"""A tiny random-weight diffusers PixArt transformer, a batched-CFG Euler sampling loop, and a
tiny diffusers ``PixArtAlphaPipeline`` around it.

PixArt is the image DiT that Open-Sora's STDiT grew from; it stands in for STDiT3 in the tests
that must run without VideoSys.
"""

from __future__ import annotations

from typing import Callable

import torch
from diffusers import AutoencoderKL, DDIMScheduler, PixArtAlphaPipeline, PixArtTransformer2DModel

CHANNELS = 4
TEXT_DIM = 12


def tiny_pixart(num_layers: int = 3, seed: int = 0, caption_channels: int = TEXT_DIM) -> PixArtTransformer2DModel:
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
        caption_channels=caption_channels,
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


def tiny_pixart_pipeline(seed: int = 0) -> PixArtAlphaPipeline:
    """diffusers' own PixArt-alpha pipeline with tiny components and a DDIM scheduler (16x16 pixels)."""
    from magcache_videosys.tiny import tiny_text_encoder

    text_encoder, tokenizer = tiny_text_encoder(seed=seed)
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        latent_channels=CHANNELS,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 8),
        layers_per_block=1,
        norm_num_groups=4,
    )
    pipeline = PixArtAlphaPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae.eval(),
        transformer=tiny_pixart(seed=seed, caption_channels=text_encoder.config.d_model),
        scheduler=DDIMScheduler(),
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def generate_pixart(pipeline: PixArtAlphaPipeline, steps: int, seed: int = 0) -> torch.Tensor:
    """One sampling run; the final latent."""
    return pipeline(
        "a cat on a sofa",
        num_inference_steps=steps,
        generator=torch.Generator().manual_seed(seed),
        output_type="latent",
        use_resolution_binning=False,
        clean_caption=False,
        max_sequence_length=16,
    ).images
