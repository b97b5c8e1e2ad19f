"""Open-Sora-Plan from VideoSys (``OpenSoraPlanPipeline``, upstream and the MagCache copy).

One pipeline class serves two versions, chosen by ``OpenSoraPlanConfig(version=...)``:

- v1.2 (``OpenSoraT2V``): the forward patch-embeds the video, then runs ``transformer_blocks`` in
  order with nothing in between; every block is ``BasicTransformerBlock(hidden, attention_mask=,
  encoder_hidden_states=, encoder_attention_mask=, timestep=, ..., org_timestep=)`` and returns one
  tensor: the Open-Sora 1.2 situation with one chain. With ``use_image_num > 0`` (joint image
  training) every block also runs a second, image chain in the same call; that is refused.
  The pipeline passes ``all_timesteps=`` (the scheduler's ``timesteps``, a new tensor every run),
  which the forward takes in ``**kwargs`` and does not use: it identifies the run.

TeaCache has no reference or published coefficients for v1.2; the signal is block 0's modulated
input (as for the PixArt-style blocks of Open-Sora and Latte), so coefficients fitted elsewhere can
be given as ``TeaCacheConfig(coefficients=[...])``. No MagCache ratio table is published; make one
with ``python -m magcache_videosys calibrate --model opensora-plan ...`` (real weights, one prompt).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .base import (
    ModelFamily,
    RunInfo,
    StackBinding,
    ada_norm_single_input,
    call_arg,
    parallel_all_reduce,
    position,
)

TINY_FRAMES = 9  # 3 latent frames: the Causal VAE keeps the first frame and compresses the rest 4x


class OpenSoraPlan(ModelFamily):
    name = "opensora-plan"
    description = "Open-Sora-Plan v1.2 OpenSoraT2V (VideoSys OpenSoraPlanPipeline)"
    model_classes = ("OpenSoraT2V",)
    pipeline_classes = ("OpenSoraPlanPipeline",)
    config_class = "OpenSoraPlanConfig"
    # v1.2's; default_pab_config picks by the config's version.
    pab_config_class = "OpenSoraPlanV120PABConfig"

    def matches(self, module: nn.Module) -> bool:
        return super().matches(module) and len(getattr(module, "transformer_blocks", ())) > 0

    def default_pab_config(self, config: Any) -> Any:
        from ..videosys_compat import import_videosys

        name = "OpenSoraPlanV110PABConfig" if getattr(config, "version", "v120") == "v110" else self.pab_config_class
        return getattr(import_videosys(), name)()

    def bind(self, module: nn.Module) -> StackBinding:
        images = position(module, "use_image_num")

        def run_info(args: tuple, kwargs: dict) -> RunInfo | None:
            use_image_num = call_arg(args, kwargs, images, "use_image_num")
            if use_image_num:
                raise ValueError(
                    f"OpenSoraT2V called with use_image_num={use_image_num}: every block then runs a second, image "
                    "chain in the same call (joint image training), and block-stack caching needs one chain; "
                    "call it with use_image_num=0, as the pipeline does."
                )
            timesteps = kwargs.get("all_timesteps")
            return None if timesteps is None else (timesteps, len(timesteps))

        blocks = list(module.transformer_blocks)
        return StackBinding(
            blocks=blocks,
            run_info=run_info,
            modulated_input=ada_norm_single_input(blocks[0], "hidden_states", "timestep"),
            all_reduce=parallel_all_reduce(module),
        )

    def tiny_pipeline(self, config: Any = None, seed: int = 0, **config_kwargs: Any) -> Any:
        """An OpenSoraPlanPipeline with tiny components for ``config.num_frames`` frames at 64x64
        (without a config: v1.2, 9 frames, no VAE tiling)."""
        from ..tiny import init_single_process_group, tiny_text_encoder
        from ..videosys_compat import import_videosys

        videosys = import_videosys()
        init_single_process_group()
        if config is None:
            config = videosys.OpenSoraPlanConfig(**{"enable_tiling": False, **config_kwargs})
            config.num_frames = TINY_FRAMES  # the frame count the pipeline reads; checked only in __init__
        if config.version != "v120":
            raise ValueError(f"the tiny Open-Sora-Plan pipeline is built for version v120, not {config.version}.")
        text_encoder, tokenizer = tiny_text_encoder(seed=seed)
        return config.pipeline_cls(
            config,
            tokenizer=tokenizer,
            text_encoder=text_encoder,
            vae=_tiny_causal_vae(seed),
            transformer=_tiny_opensora_t2v((config.num_frames - 1) // 4 + 1, seed),
            scheduler=None,  # the pipeline's own: Euler ancestral
            device=torch.device("cpu"),
            dtype=torch.float32,
        )


def _tiny_causal_vae(seed: int) -> nn.Module:
    """The pipeline's ``CausalVAEModelWrapper`` around a small random v1.2 ``CausalVAEModel`` (4x8x8
    compression, as the real one); the wrapper's constructor always downloads, so it is not called."""
    from videosys.models.autoencoders import autoencoder_kl_open_sora_plan_v120 as vae_module

    torch.manual_seed(seed)
    vae = vae_module.CausalVAEModel(
        hidden_size=32,  # GroupNorm has 32 groups
        hidden_size_mult=(1, 1, 1, 1),
        num_res_blocks=1,
        z_channels=4,
        embed_dim=4,
        # The constructor's defaults name classes the v1.2 module does not define; these it does
        # (the released v1.2 VAE config's).
        encoder_attention="AttnBlock3DFix",
        decoder_attention="AttnBlock3DFix",
        encoder_spatial_downsample=("Downsample", "Spatial2xTime2x3DDownsample", "Spatial2xTime2x3DDownsample", ""),
        encoder_temporal_downsample=("", "", "", ""),
        decoder_spatial_upsample=("", "SpatialUpsample2x", "Spatial2xTime2x3DUpsample", "Spatial2xTime2x3DUpsample"),
        decoder_temporal_upsample=("", "", "", ""),
    )
    wrapper = vae_module.CausalVAEModelWrapper.__new__(vae_module.CausalVAEModelWrapper)
    nn.Module.__init__(wrapper)
    wrapper.vae = vae.eval()
    # diffusers' DiffusionPipeline.device is the first component's ``.device`` in the order of a set
    # of names; without one here, some hash seeds made the pipeline fall back to CUDA.
    wrapper.device = torch.device("cpu")
    return wrapper


def _tiny_opensora_t2v(latent_frames: int, seed: int) -> nn.Module:
    """A random-weight ``OpenSoraT2V`` for 8x8 latents (64x64 pixels)."""
    from videosys.models.transformers.open_sora_plan_v120_transformer_3d import OpenSoraT2V

    torch.manual_seed(seed)
    model = OpenSoraT2V(
        num_attention_heads=2,
        attention_head_dim=24,  # RoPE3D splits each head in three even parts
        in_channels=4,
        out_channels=8,  # learned sigma: the pipeline keeps the first half
        num_layers=2,
        cross_attention_dim=48,
        patch_size=2,
        patch_size_t=1,
        norm_type="ada_norm_single",
        caption_channels=32,
        sample_size=[8, 8],
        sample_size_t=latent_frames,
        use_rope=True,
    )
    return model.eval()
