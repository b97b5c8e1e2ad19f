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

Generation (``experiments/cogvideox.py``): one family for both variants, told apart as VideoSys
does, by the weights: ``--model-path`` (default ``THUDM/CogVideoX-2b``; ``THUDM/CogVideoX-5b``, or any
path with ``5b`` in it or a local copy whose transformer uses rotary embeddings, is the 5b model). The
variant picks TeaCache's coefficients; VideoSys itself runs ``THUDM/CogVideoX-2b`` in fp16 whatever
dtype it is given, so that is its default dtype here and another is refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..console import int_at_least
from .base import (
    Generation,
    GenerationOption,
    ModelFamily,
    RunInfo,
    StackBinding,
    call_arg,
    parallel_all_reduce,
    position,
    quiet_generate_kwargs,
    size_check,
    video_frames,
)

TEXT_LENGTH = 226  # the pipeline's max_sequence_length; the 2b positional embedding is sized for it
MODEL_2B = "THUDM/CogVideoX-2b"  # VideoSys's default, which its pipeline always runs in fp16
MAX_FRAMES = 49  # CogVideoXPipeline.generate refuses more
# (height, width, frames) the 2b model's positional embedding covers: the transformer's sample size
# (60x90 latents of 480x720 pixels, 49 frames), and the tiny transformer's (64x64, 9 frames)
POSITIONS_2B = {False: (480, 720, 49), True: (64, 64, 9)}

# VideoSys's CogVideoXPipeline.generate and CogVideoXConfig defaults; --tiny generates 64x64, 9 frames.
GENERATION = Generation(
    steps=50,
    cfg_scale=6.0,
    options=(
        GenerationOption("height", "--height", 480, 64, "frame height in pixels, a multiple of 16", int_at_least(16)),
        GenerationOption("width", "--width", 720, 64, "frame width in pixels, a multiple of 16", int_at_least(16)),
        GenerationOption("num_frames", "--frames", 49, 9, "frame count: 4k + 1, at most 49", int_at_least(1)),
    ),
    weights=(
        GenerationOption(
            "model_path",
            "--model-path",
            MODEL_2B,
            "tiny/CogVideoX-2b",
            "the CogVideoX pipeline's (THUDM/CogVideoX-5b, or a path with 5b in it, is the 5b model)",
        ),
    ),
    fps=8,
    dtype="bf16",
)


def variant(model_path: str) -> str:
    """``2b`` or ``5b``: a local copy says by its transformer's rotary embeddings (5b has them),
    a hub name by containing ``5b``."""
    config = Path(model_path) / "transformer" / "config.json"
    if config.is_file():
        return "5b" if json.loads(config.read_text()).get("use_rotary_positional_embeddings") else "2b"
    return "5b" if "5b" in model_path.lower() else "2b"


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

    # The TeaCache repository's thresholds (eval_teacache_slow/fast: 0.1, 0.2) with each variant's
    # coefficients; its forward computes the first and last steps.
    teacache_presets = {
        f"teacache-cogvideox-{v}-{speed}": dict(
            threshold=threshold, coefficients=f"cogvideox-{v}", compute_last_step=True
        )
        for v in ("2b", "5b")
        for speed, threshold in (("slow", 0.1), ("fast", 0.2))
    }
    pab_defaults = {"CogVideoXPABConfig": "spatial attention broadcast, range 2, timesteps 100-850"}
    generation = GENERATION

    def matches(self, module: nn.Module) -> bool:
        return super().matches(module) and len(getattr(module, "transformer_blocks", ())) > 0

    def model_label(self, settings: Mapping[str, Any]) -> str:
        return f"CogVideoX-{variant(settings['model_path'])}"

    def default_dtype(self, options: Mapping[str, Any]) -> str:
        return "fp16" if options["model_path"] == MODEL_2B else GENERATION.dtype

    def teacache_preset(self, speed: str, settings: Mapping[str, Any]) -> str | None:
        return f"teacache-cogvideox-{variant(settings['model_path'])}-{speed}"

    def check_generation(self, settings: dict[str, Any]) -> None:
        why = "the VAE's 8x and the transformer's 2x2 patches"
        size_check("--height", settings["height"], 16, why)
        size_check("--width", settings["width"], 16, why)
        frames = settings["num_frames"]
        if frames > MAX_FRAMES or frames % 4 != 1:
            fix = min(MAX_FRAMES, frames // 4 * 4 + 1)
            raise ValueError(
                f"--frames {frames}: CogVideoX makes 4k + 1 frames (its VAE keeps the first and compresses the rest "
                f"4x in time), at most {MAX_FRAMES} (VideoSys's limit); try --frames {fix}."
            )
        if variant(settings["model_path"]) == "2b":
            height, width, most = POSITIONS_2B[bool(settings["tiny"])]
            patches = _patches(settings["height"], settings["width"], frames)
            if patches > _patches(height, width, most):
                raise ValueError(
                    f"CogVideoX-2b's positional embedding covers {height}x{width} at {most} frames; --height "
                    f"{settings['height']} --width {settings['width']} --frames {frames} needs more: choose a size "
                    "within it (5b's rotary embedding has no such limit)."
                )
        if not settings["tiny"] and settings["model_path"] == MODEL_2B and settings["dtype"] != "fp16":
            raise ValueError(
                f"VideoSys runs {MODEL_2B} in fp16 whatever dtype it is given; drop --dtype {settings['dtype']}."
            )

    def videosys_config(self, settings: dict[str, Any], num_gpus: int) -> Any:
        from ..videosys_compat import import_videosys

        if settings["tiny"]:
            return import_videosys().CogVideoXConfig(model_path=settings["model_path"], vae_tiling=False)
        return import_videosys().CogVideoXConfig(model_path=settings["model_path"], num_gpus=num_gpus)

    def generate(self, target: Any, prompt: str, seed: int, settings: dict[str, Any]) -> Any:
        output = target.generate(
            prompt,
            seed=seed,
            height=settings["height"],
            width=settings["width"],
            num_frames=settings["num_frames"],
            num_inference_steps=settings["num_steps"],
            guidance_scale=settings["cfg_scale"],
            **quiet_generate_kwargs(target),
        )
        return video_frames(output.video[0])

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
        rope = variant(config.model_path) == "5b"
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


def _patches(height: int, width: int, frames: int) -> int:
    """Video tokens of one sample: 2x2 patches of the 8x latents, (frames - 1) / 4 + 1 latent frames."""
    return (height // 16) * (width // 16) * ((frames - 1) // 4 + 1)


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
