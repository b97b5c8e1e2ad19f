"""Open-Sora-Plan from VideoSys (``OpenSoraPlanPipeline``, upstream and the MagCache copy).

One pipeline class serves two versions, chosen by ``OpenSoraPlanConfig(version=...)``:

- v1.2 (``OpenSoraT2V``): the forward patch-embeds the video, then runs ``transformer_blocks`` in
  order with nothing in between; every block is ``BasicTransformerBlock(hidden, attention_mask=,
  encoder_hidden_states=, encoder_attention_mask=, timestep=, ..., org_timestep=)`` and returns one
  tensor: the Open-Sora 1.2 situation with one chain. With ``use_image_num > 0`` (joint image
  training) every block also runs a second, image chain in the same call; that is refused.
  The pipeline passes ``all_timesteps=`` (the scheduler's ``timesteps``, a new tensor every run),
  which the forward takes in ``**kwargs`` and does not use: it identifies the run.
- v1.1 (``LatteT2V`` of ``open_sora_plan_v110_transformer_3d``; Latte's class has the same name and
  is told apart by module): Latte's stack, S0 T0 S1 T1 ... with the layout changed between blocks
  and ``temp_pos_embed`` added before T0 (``latte.py`` says why the residual region is right).
  Its sampler is PNDM, whose warm-up (Runge-Kutta) makes ``num_inference_steps + 9`` iterations of
  the sampling loop, one transformer call each. The schedule speaks of those iterations: a run has
  ``len(scheduler.timesteps)`` steps (the length of ``all_timesteps``), and a ratio table, a plan
  and ``get_stats`` all count them.

TeaCache reads block 0's modulated input. Its reference and published coefficients exist for v1.1
only; it computes the first and last steps (``TeaCacheConfig(compute_last_step=True)``). For v1.2
coefficients fitted elsewhere can be given as ``TeaCacheConfig(coefficients=[...])``. No MagCache
ratio table is published for either; make one with ``python -m magcache_videosys calibrate --model
opensora-plan ...`` (real weights, one prompt, per version and step count).
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
from .latte import latte_binding

TINY_FRAMES = 9  # 3 latent frames: the Causal VAE keeps the first frame and compresses the rest 4x


class OpenSoraPlan(ModelFamily):
    name = "opensora-plan"
    description = "Open-Sora-Plan v1.2 OpenSoraT2V and v1.1 LatteT2V (VideoSys OpenSoraPlanPipeline)"
    model_classes = ("OpenSoraT2V", "LatteT2V")
    pipeline_classes = ("OpenSoraPlanPipeline",)
    config_class = "OpenSoraPlanConfig"
    # v1.2's; default_pab_config picks by the config's version.
    pab_config_class = "OpenSoraPlanV120PABConfig"
    # Fitted by the TeaCache authors for v1.1; eval/teacache/experiments/opensora_plan.py:191 of
    # github.com/ali-vilab/TeaCache.
    teacache_coefficients = {
        "opensora-plan-v1.1": (2.05943668e05, -1.48759286e04, 3.06085986e02, 1.31418080e00, 2.39658469e-03),
    }

    def matches(self, module: nn.Module) -> bool:
        if not super().matches(module) or len(getattr(module, "transformer_blocks", ())) == 0:
            return False
        return type(module).__name__ == "OpenSoraT2V" or _is_v110(module)

    def default_pab_config(self, config: Any) -> Any:
        from ..videosys_compat import import_videosys

        name = "OpenSoraPlanV110PABConfig" if getattr(config, "version", "v120") == "v110" else self.pab_config_class
        return getattr(import_videosys(), name)()

    def bind(self, module: nn.Module) -> StackBinding:
        if _is_v110(module):
            return latte_binding(module)
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
        """An OpenSoraPlanPipeline of ``config.version`` with tiny components for
        ``config.num_frames`` frames at 64x64 (without a config: 9 frames, no VAE tiling; the
        version from ``config_kwargs``, v1.2 by default)."""
        from ..tiny import init_single_process_group, tiny_text_encoder
        from ..videosys_compat import import_videosys

        videosys = import_videosys()
        init_single_process_group()
        if config is None:
            settings = {"enable_tiling": False, **config_kwargs}
            if settings.get("version") == "v110":
                settings.setdefault("transformer_type", "65x512x512")
            config = videosys.OpenSoraPlanConfig(**settings)
            config.num_frames = TINY_FRAMES  # the frame count the pipeline reads; checked only in __init__
        latent_frames = (config.num_frames - 1) // 4 + 1
        text_encoder, tokenizer = tiny_text_encoder(seed=seed)
        transformer = _tiny_transformer(config.version, latent_frames, seed, text_encoder.config.d_model)
        return config.pipeline_cls(
            config,
            tokenizer=tokenizer,
            text_encoder=text_encoder,
            vae=_tiny_causal_vae(config.version, seed),
            transformer=transformer,
            scheduler=None,  # the pipeline's own: Euler ancestral (v1.2), PNDM (v1.1)
            device=torch.device("cpu"),
            dtype=torch.float32,
        )


def _is_v110(module: nn.Module) -> bool:
    return type(module).__name__ == "LatteT2V" and type(module).__module__.endswith(
        ".open_sora_plan_v110_transformer_3d"
    )


def _tiny_causal_vae(version: str, seed: int) -> nn.Module:
    """The pipeline's ``CausalVAEModelWrapper`` around a small random ``CausalVAEModel`` of the
    version (4x8x8 compression, as the real ones); the wrapper's constructor always downloads, so
    it is not called."""
    if version == "v110":
        from videosys.models.autoencoders import autoencoder_kl_open_sora_plan_v110 as vae_module
    else:
        from videosys.models.autoencoders import autoencoder_kl_open_sora_plan_v120 as vae_module

    torch.manual_seed(seed)
    small = dict(hidden_size=32, hidden_size_mult=(1, 1, 1, 1), num_res_blocks=1, z_channels=4, embed_dim=4)
    if version != "v110":
        # The v1.2 constructor's defaults name classes its module does not define; these it does
        # (the released v1.2 VAE config's).
        small.update(
            encoder_attention="AttnBlock3DFix",
            decoder_attention="AttnBlock3DFix",
            encoder_spatial_downsample=("Downsample", "Spatial2xTime2x3DDownsample", "Spatial2xTime2x3DDownsample", ""),
            encoder_temporal_downsample=("", "", "", ""),
            decoder_spatial_upsample=(
                "",
                "SpatialUpsample2x",
                "Spatial2xTime2x3DUpsample",
                "Spatial2xTime2x3DUpsample",
            ),
            decoder_temporal_upsample=("", "", "", ""),
        )
    vae = vae_module.CausalVAEModel(**small)  # hidden_size 32: its GroupNorms have 32 groups
    wrapper = vae_module.CausalVAEModelWrapper.__new__(vae_module.CausalVAEModelWrapper)
    nn.Module.__init__(wrapper)
    wrapper.vae = vae.eval()
    # diffusers' DiffusionPipeline.device is the first component's ``.device`` in the order of a set
    # of names; without one here, some hash seeds made the pipeline fall back to CUDA.
    wrapper.device = torch.device("cpu")
    return wrapper


def _tiny_transformer(version: str, latent_frames: int, seed: int, caption_channels: int) -> nn.Module:
    """A random-weight ``OpenSoraT2V`` (v1.2) or v1.1 ``LatteT2V`` for 8x8 latents (64x64 pixels)."""
    torch.manual_seed(seed)
    common = dict(
        num_attention_heads=2,
        in_channels=4,
        out_channels=8,  # learned sigma: the pipeline keeps the first half
        num_layers=2,
        patch_size=2,
        patch_size_t=1,
        norm_type="ada_norm_single",
        caption_channels=caption_channels,
        sample_size=[8, 8],
    )
    if version == "v110":
        from videosys.models.transformers.open_sora_plan_v110_transformer_3d import LatteT2V

        model = LatteT2V(**common, attention_head_dim=16, cross_attention_dim=32, video_length=latent_frames)
    else:
        from videosys.models.transformers.open_sora_plan_v120_transformer_3d import OpenSoraT2V

        # RoPE3D splits each head in three even parts
        model = OpenSoraT2V(
            **common, attention_head_dim=24, cross_attention_dim=48, sample_size_t=latent_frames, use_rope=True
        )
    return model.eval()
