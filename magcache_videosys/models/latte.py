"""Latte (``LatteT2V`` of ``videosys.models.transformers.latte_transformer_3d``; VideoSys ``LattePipeline``).

VideoSys has two classes named ``LatteT2V``: this one and Open-Sora-Plan v1.1's (its own module,
``opensora_plan.py``); they are told apart by module. Both run the same stack, which
:func:`latte_binding` describes for both.

The forward runs ``transformer_blocks[i]`` (spatial) then ``temporal_transformer_blocks[i]`` for
every depth, S0 T0 S1 T1 ..., and changes the layout between them: spatial blocks see
``(b f) t d`` (frames in the batch), temporal blocks ``(b t) f d`` (tokens in the batch); before
every temporal block it rearranges, adds ``temp_pos_embed`` before T0 (when there is more than one
frame), and rearranges back after it. The residual is taken from S0's input to T_{N-1}'s output,
in T_{N-1}'s output layout: every rearrangement and the positional term lie inside that region, so
the residual holds them once, and on a skipped step the last block returns S0's input, brought into
its layout, plus the residual, ignoring its own input (which carries the positional term the
forward added again on the skipped pass). The rearrangement after T_{N-1} lies outside and always
runs. The pipeline passes ``all_timesteps=`` (the scheduler's ``timesteps``): it identifies the run.

TeaCache's reference reads block 0's modulated input (as here), computes the first and last steps
(``TeaCacheConfig(compute_last_step=True)``), and has published coefficients. No MagCache ratio table
is published; make one with ``python -m magcache_videosys calibrate --model latte ...``.
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


class Latte(ModelFamily):
    name = "latte"
    description = "Latte LatteT2V (VideoSys LattePipeline)"
    model_classes = ("LatteT2V",)
    pipeline_classes = ("LattePipeline",)
    config_class = "LatteConfig"
    pab_config_class = "LattePABConfig"
    # Fitted by the TeaCache authors; eval/teacache/experiments/latte.py:180 of github.com/ali-vilab/TeaCache.
    teacache_coefficients = {
        "latte": (-2.46434137e03, 3.08044764e02, 8.07447667e01, -4.11385132e00, 1.11001402e-01),
    }

    def matches(self, module: nn.Module) -> bool:
        return super().matches(module) and type(module).__module__.endswith(".latte_transformer_3d")

    def bind(self, module: nn.Module) -> StackBinding:
        return latte_binding(module)

    def tiny_pipeline(self, config: Any = None, seed: int = 0, **config_kwargs: Any) -> Any:
        """A LattePipeline with tiny components (its generate makes 16 frames of 512x512: 16x16
        latents here); without a config, the per-frame VAE decoder."""
        from diffusers.models import AutoencoderKL
        from diffusers.schedulers import DDIMScheduler

        from ..tiny import init_single_process_group, tiny_text_encoder
        from ..videosys_compat import import_videosys

        videosys = import_videosys()
        from videosys.models.transformers.latte_transformer_3d import LatteT2V

        init_single_process_group()
        if config is None:
            config = videosys.LatteConfig(**{"enable_vae_temporal_decoder": False, **config_kwargs})
        if config.enable_vae_temporal_decoder:
            raise ValueError("the tiny Latte pipeline decodes frame by frame; set enable_vae_temporal_decoder=False.")
        text_encoder, tokenizer = tiny_text_encoder(seed=seed)
        torch.manual_seed(seed)
        # Six levels (32x) turn the 512x512 frames into 16x16 latents; one resnet per decoder level
        # and 4 channels keep decoding 16 such frames near a second.
        vae = AutoencoderKL(
            latent_channels=4,
            down_block_types=("DownEncoderBlock2D",) * 6,
            up_block_types=("UpDecoderBlock2D",) * 6,
            block_out_channels=(4,) * 6,
            layers_per_block=0,
            norm_num_groups=4,
            sample_size=512,
        )
        transformer = LatteT2V(
            num_attention_heads=2,
            attention_head_dim=16,
            in_channels=4,
            out_channels=8,  # learned sigma, as Latte-1: the pipeline keeps the first half
            num_layers=2,
            cross_attention_dim=32,
            sample_size=16,
            patch_size=2,
            norm_type="ada_norm_single",
            caption_channels=text_encoder.config.d_model,
            video_length=16,
        )
        # What the pipeline would load: Latte-1's DDIM with the config's betas (from_pretrained
        # downloads; variance_type is no DDIMScheduler argument and from_pretrained drops it).
        scheduler = DDIMScheduler(
            beta_start=config.beta_start,
            beta_end=config.beta_end,
            beta_schedule=config.beta_schedule,
            clip_sample=False,
        )
        return config.pipeline_cls(
            config,
            tokenizer=tokenizer,
            text_encoder=text_encoder,
            vae=vae.eval(),
            transformer=transformer.eval(),
            scheduler=scheduler,
            device=torch.device("cpu"),
            dtype=torch.float32,
        )


def latte_binding(module: nn.Module) -> StackBinding:
    """The block stack of either ``LatteT2V`` (Latte, Open-Sora-Plan v1.1): S0 T0 S1 T1 ..., the
    residual in the last (temporal) block's ``(b t) f d`` layout."""
    blocks = [b for pair in zip(module.transformer_blocks, module.temporal_transformer_blocks) for b in pair]
    if not blocks:
        raise ValueError("LatteT2V without blocks: nothing to cache.")
    index = {name: position(module, name) for name in ("all_timesteps", "enable_temporal_attentions", "use_image_num")}

    def run_info(args: tuple, kwargs: dict) -> RunInfo | None:
        if call_arg(args, kwargs, index["enable_temporal_attentions"], "enable_temporal_attentions") is False:
            raise ValueError(
                f"{type(module).__name__} called with enable_temporal_attentions=False: its temporal blocks, half of "
                "the block stack, do not run; block-stack caching needs the whole stack. Leave them on, or disable "
                "caching for such calls."
            )
        use_image_num = call_arg(args, kwargs, index["use_image_num"], "use_image_num")
        if use_image_num:
            raise ValueError(
                f"{type(module).__name__} called with use_image_num={use_image_num} (joint image training): the "
                "image frames skip the temporal blocks; block-stack caching needs one chain. Call it with "
                "use_image_num=0, as the pipeline does."
            )
        timesteps = call_arg(args, kwargs, index["all_timesteps"], "all_timesteps")
        return None if timesteps is None else (timesteps, len(timesteps))

    def to_tail(x: torch.Tensor, args: tuple, kwargs: dict) -> torch.Tensor:
        # "(b f) t d -> (b t) f d", with f from the last (temporal) block's input (per rank under SP)
        frames = (args[0] if args else kwargs["hidden_states"]).shape[1]
        bf, tokens, dim = x.shape
        return x.reshape(bf // frames, frames, tokens, dim).transpose(1, 2).reshape(-1, frames, dim)

    return StackBinding(
        blocks=blocks,
        run_info=run_info,
        to_tail=to_tail,
        modulated_input=ada_norm_single_input(module.transformer_blocks[0], "hidden_states", "timestep"),
        all_reduce=parallel_all_reduce(module),
    )
