"""CogVideoX 2b and 5b (``CogVideoXTransformer3DModel``) from VideoSys (upstream and the MagCache copy).

The forward embeds the timestep (``emb``), patch-embeds ``[text, video]`` and splits the result
into the encoder (text) and hidden (video) streams, then runs ``transformer_blocks`` in order with
nothing in between. Every block is called by keyword, ``block(hidden_states=, encoder_hidden_states=,
temb=emb, image_rotary_emb=, timestep=)``, and returns ``(hidden, encoder)``: joint attention and
the feed-forward run over both streams, and both change.

One cached residual, on the hidden stream. The encoder stream never reaches the transformer's
output: 2b drops it after the stack (``norm_final(hidden)``); 5b concatenates ``[encoder, hidden]``,
applies ``norm_final``, a LayerNorm of each token on its own, and slices the encoder tokens off. So
on a skipped step the last block returns the restored hidden stream and the encoder stream as it
came in. ``tests/test_model_cogvideox.py`` shows on both variants that putting anything at all in
the encoder stream there (restoring it with its own residual, as TeaCache's reference does, or
filling it with 1e4) leaves the output bitwise unchanged.

Which run a call belongs to: upstream's pipeline passes nothing, so runs are told apart by the
pipeline's scheduler (enable on a config, engine or pipeline; a bare transformer needs
``num_steps``); the MagCache copy passes ``all_timesteps=`` (the scheduler's ``timesteps``).

TeaCache's reference for CogVideoX reads the timestep embedding ``emb`` (the blocks' ``temb``),
not a modulated input, and computes the first and last steps (``TeaCacheConfig(compute_last_step=True)``).
No MagCache ratio table is published for CogVideoX; calibrate one per variant and step count with
``python -m magcache_videosys calibrate --model cogvideox ...`` (real weights, one prompt).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .base import ModelFamily, RunInfo, StackBinding, call_arg, parallel_all_reduce, position

TEXT_LENGTH = 226  # the pipeline's max_sequence_length; the 2b positional embedding is sized for it


class CogVideoX(ModelFamily):
    name = "cogvideox"
    description = "CogVideoX 2b/5b CogVideoXTransformer3DModel (VideoSys CogVideoXPipeline)"
    model_classes = ("CogVideoXTransformer3DModel",)
    pipeline_classes = ("CogVideoXPipeline",)
    config_class = "CogVideoXConfig"
    pab_config_class = "CogVideoXPABConfig"
    # Fitted by the TeaCache authors; eval/teacache/experiments/cogvideox.py of
    # github.com/ali-vilab/TeaCache, lines 75 (2b) and 78 (5b), chosen there by
    # use_rotary_positional_embeddings (5b uses RoPE).
    teacache_coefficients = {
        "cogvideox-2b": (-3.10658903e01, 2.54732368e01, -5.92380459e00, 1.75769064e00, -3.61568434e-03),
        "cogvideox-5b": (-1.53880483e03, 8.43202495e02, -1.34363087e02, 7.97131516e00, -5.23162339e-02),
    }

    def matches(self, module: nn.Module) -> bool:
        return super().matches(module) and len(getattr(module, "transformer_blocks", ())) > 0

    def bind(self, module: nn.Module) -> StackBinding:
        index = position(module, "all_timesteps")  # the MagCache copy's forward has it, upstream's not

        def run_info(args: tuple, kwargs: dict) -> RunInfo | None:
            timesteps = call_arg(args, kwargs, index, "all_timesteps")
            return None if timesteps is None else (timesteps, len(timesteps))

        blocks = list(module.transformer_blocks)
        temb = position(blocks[0], "temb")
        return StackBinding(
            blocks=blocks,
            run_info=run_info,
            out_hidden=lambda out: out[0],
            passthrough=lambda args, kwargs: (_hidden(args, kwargs), _encoder(args, kwargs)),
            pack_tail=lambda args, kwargs, restored: (restored, _encoder(args, kwargs)),
            modulated_input=lambda args, kwargs: call_arg(args, kwargs, temb, "temb"),
            # The signal (the timestep embedding) is the same on every rank of a sequence-parallel
            # group; only CFG parallelism would split its batch.
            all_reduce=parallel_all_reduce(module, ("cp_group",)),
        )

    def tiny_pipeline(self, config: Any = None, seed: int = 0, **config_kwargs: Any) -> Any:
        """A CogVideoXPipeline with tiny components; the 5b layout (RoPE, the encoder stream
        through ``norm_final``) when ``config.model_path`` names 5b. Generate at 64x64, 9 frames."""
        from ..tiny import init_single_process_group, tiny_text_encoder
        from ..videosys_compat import import_videosys

        videosys = import_videosys()
        from videosys.models.autoencoders.autoencoder_kl_cogvideox import AutoencoderKLCogVideoX
        from videosys.schedulers.scheduling_ddim_cogvideox import CogVideoXDDIMScheduler

        init_single_process_group()
        if config is None:
            settings = {"model_path": "tiny/CogVideoX-2b", "vae_tiling": False, **config_kwargs}
            config = videosys.CogVideoXConfig(**settings)
        rope = "5b" in config.model_path.lower()
        text_encoder, tokenizer = tiny_text_encoder(seed=seed, model_max_length=TEXT_LENGTH)
        torch.manual_seed(seed)
        vae = AutoencoderKLCogVideoX(
            block_out_channels=(8, 8, 8, 8),
            latent_channels=4,
            layers_per_block=1,
            norm_num_groups=4,
            temporal_compression_ratio=4,
            sample_height=64,
            sample_width=64,
        )
        # CogVideoX's scheduler settings (scaled_linear, v-prediction, zero terminal SNR, trailing
        # spacing; snr_shift_scale 3.0 for 2b, 1.0 for 5b), written out: from_pretrained downloads.
        scheduler = CogVideoXDDIMScheduler(
            beta_schedule="scaled_linear",
            clip_sample=False,
            prediction_type="v_prediction",
            rescale_betas_zero_snr=True,
            timestep_spacing="trailing",
            snr_shift_scale=1.0 if rope else 3.0,
        )
        return config.pipeline_cls(
            config,
            tokenizer=tokenizer,
            text_encoder=text_encoder,
            vae=vae,
            transformer=tiny_transformer(rope, seed),
            scheduler=scheduler,
            device=torch.device("cpu"),
            dtype=torch.float32,
        )


def _hidden(args: tuple, kwargs: dict) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


def _encoder(args: tuple, kwargs: dict) -> torch.Tensor:
    return args[1] if len(args) > 1 else kwargs["encoder_hidden_states"]


def tiny_transformer(rope: bool, seed: int = 0, slow_frequencies: int = 5) -> nn.Module:
    """A random-weight ``CogVideoXTransformer3DModel`` for 64x64 pixels and 9 frames (3 latent frames).

    A trained model's timestep embedding changes little from step to step; a random time MLP's
    changes by 50-100 %, far outside the range TeaCache's polynomials were fitted on (there they are
    negative, and TeaCache would skip every step after the first). So the time MLP reads only the
    ``slow_frequencies`` slowest sinusoid frequencies (2.5-3.5 % change per step at 20 steps).
    """
    from videosys.models.transformers.cogvideox_transformer_3d import CogVideoXTransformer3DModel

    torch.manual_seed(seed)
    model = CogVideoXTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=4,
        out_channels=4,
        time_embed_dim=32,
        text_embed_dim=32,
        num_layers=2,
        sample_width=8,
        sample_height=8,
        sample_frames=9,
        max_text_seq_length=TEXT_LENGTH,
        use_rotary_positional_embeddings=rope,
    )
    half = model.time_proj.num_channels // 2
    weight = model.time_embedding.linear_1.weight
    with torch.no_grad():
        # frequency i of each half is exp(-ln(1e4) * i / half): the first ones are the fast ones
        weight[:, : half - slow_frequencies] = 0
        weight[:, half : 2 * half - slow_frequencies] = 0
    return model.eval()
