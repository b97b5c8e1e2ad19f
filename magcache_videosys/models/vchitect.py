"""Vchitect-2.0 (``VchitectXLTransformerModel``; VideoSys ``VchitectXLPipeline``, upstream and the MagCache copy).

The forward puts the frames into the batch, embeds the timestep (``temb``) and the text, then runs
``transformer_blocks`` in order with nothing in between. Every block is called by keyword,
``block(hidden_states=, encoder_hidden_states=, temb=, freqs_cis=, full_seqlen=, Frame=, timestep=)``,
and returns ``(encoder, hidden)``; the last block (``context_pre_only``) returns ``(None, hidden)``,
and after the stack only the hidden stream is used. So one residual, on the hidden stream: a
skipped step's last block returns ``(None, restored hidden)``, as the real one would. (The encoder
stream enters as one copy of the text and leaves as one per frame: it has no residual of the
input's shape, and nothing after the stack reads it.)

CFG runs as two transformer calls per step, unconditional then conditional, batch 1 each: each
call position keeps its own policy state and residual (``calls_per_step=2``), as MagCache's Wan
reference does for its two calls. The calls carry nothing that identifies the run: runs are told
apart by the pipeline's scheduler (enable on a config, engine or pipeline); a bare transformer
needs ``num_steps`` (steps, not calls).

No TeaCache reference or coefficients exist for Vchitect, and this family gives no TeaCache
signal. No MagCache ratio table is published; make one with ``python -m magcache_videosys
calibrate --model vchitect ...`` (real weights, one prompt).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .base import ModelFamily, StackBinding, call_arg, position

CLIP_LENGTH = 77  # the CLIP tokenizers' model_max_length, which the pipeline reads
T5_LENGTH = 256  # the pipeline's max_sequence_length_t5


class Vchitect(ModelFamily):
    name = "vchitect"
    description = "Vchitect-2.0 VchitectXLTransformerModel (VideoSys VchitectXLPipeline)"
    model_classes = ("VchitectXLTransformerModel",)
    pipeline_classes = ("VchitectXLPipeline",)
    config_class = "VchitectConfig"
    pab_config_class = "VchitectPABConfig"

    def matches(self, module: nn.Module) -> bool:
        return super().matches(module) and len(getattr(module, "transformer_blocks", ())) > 0

    def bind(self, module: nn.Module) -> StackBinding:
        blocks = list(module.transformer_blocks)
        hidden, encoder = (position(blocks[0], name) for name in ("hidden_states", "encoder_hidden_states"))
        return StackBinding(
            blocks=blocks,
            run_info=lambda args, kwargs: None,
            out_hidden=lambda out: out[1],
            passthrough=lambda args, kwargs: (
                call_arg(args, kwargs, encoder, "encoder_hidden_states"),
                call_arg(args, kwargs, hidden, "hidden_states"),
            ),
            pack_tail=lambda args, kwargs, restored: (None, restored),
            calls_per_step=2,
        )

    def tiny_pipeline(self, config: Any = None, seed: int = 0, **config_kwargs: Any) -> Any:
        """A VchitectXLPipeline with tiny components; generate at 64x64 with a few frames.

        Its constructor loads every component it is not given and then registers ``self.<name>``
        for all of them, so components passed in fail (AttributeError). Here the object is made with
        ``__new__``, the components are set on it, and VideoSys's own constructor then runs with the
        same components; a caching method on the config is installed as ``CachedPipeline`` does.
        """
        from diffusers.schedulers import FlowMatchEulerDiscreteScheduler

        from ..plugin import CachedPipeline
        from ..tiny import init_single_process_group, tiny_text_encoder
        from ..videosys_compat import import_videosys

        videosys = import_videosys()
        init_single_process_group()
        if config is None:
            config = videosys.VchitectConfig(**config_kwargs)
        text_encoder_3, tokenizer_3 = tiny_text_encoder(seed=seed, model_max_length=T5_LENGTH)
        (text_encoder, tokenizer), (text_encoder_2, tokenizer_2) = _tiny_clip(seed), _tiny_clip(seed + 1)
        components = dict(
            text_encoder=text_encoder,
            text_encoder_2=text_encoder_2,
            text_encoder_3=text_encoder_3,
            tokenizer=tokenizer,
            tokenizer_2=tokenizer_2,
            tokenizer_3=tokenizer_3,
            vae=_tiny_vae(seed),
            transformer=_tiny_transformer(seed, text_encoder_3.config.d_model),
            scheduler=FlowMatchEulerDiscreteScheduler(),  # Vchitect-2.0's settings are not known offline
        )
        builder = config.pipeline_cls
        cls = builder.pipeline_cls if isinstance(builder, CachedPipeline) else builder
        pipeline = cls.__new__(cls)
        pipeline.__dict__.update(components)
        cls.__init__(pipeline, config, **components, device=torch.device("cpu"), dtype=torch.float32)
        return builder.install(config, pipeline) if isinstance(builder, CachedPipeline) else pipeline


def _tiny_clip(seed: int) -> tuple[nn.Module, Any]:
    """A two-layer CLIP text encoder with a projection (hidden and projection size 16) and the
    character-level tokenizer."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from ..tiny import char_tokenizer

    tokenizer = char_tokenizer(CLIP_LENGTH)
    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=CLIP_LENGTH,
        projection_dim=16,
        pad_token_id=0,
        eos_token_id=1,
    )
    return CLIPTextModelWithProjection(config).eval(), tokenizer


def _tiny_vae(seed: int) -> nn.Module:
    from diffusers.models import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8,) * 4,
        layers_per_block=1,
        norm_num_groups=4,
        shift_factor=0.0,  # the pipeline adds it (an SD3-style VAE); None fails there
        scaling_factor=1.5,
    ).eval()


def _tiny_transformer(seed: int, text_width: int) -> nn.Module:
    """A random-weight ``VchitectXLTransformerModel`` for 8x8 latents (64x64 pixels)."""
    from videosys.models.transformers.vchitect_transformer_3d import VchitectXLTransformerModel

    torch.manual_seed(seed)
    return VchitectXLTransformerModel(
        sample_size=8,
        patch_size=2,
        in_channels=4,
        out_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=text_width,  # T5's width
        caption_projection_dim=32,  # = heads x head size
        pooled_projection_dim=32,  # the two CLIP projections of 16, concatenated
        pos_embed_max_size=16,
    ).eval()
