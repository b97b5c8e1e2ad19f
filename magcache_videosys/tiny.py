"""Tiny random-weight Open-Sora components, built offline, for CPU smoke runs and tests.

The transformer is VideoSys's own ``STDiT3`` and the scheduler its own ``RFLOW``; the text encoder
is a small transformers ``T5EncoderModel`` with a character-level tokenizer, and the VAE a small
diffusers ``AutoencoderKL`` applied frame by frame (VideoSys's Open-Sora VAE always downloads its
spatial half). Nothing is downloaded.
"""

from __future__ import annotations

import string
from typing import Any

import torch
from torch import nn

from .videosys_compat import import_videosys

TEXT_LENGTH = 300  # OpenSoraPipeline tokenizes to 300 tokens and STDiT3's null embedding matches it


def init_single_process_group() -> None:
    """A one-process gloo group, which VideoSys's parallel manager needs even on one device.

    Its store lives in this process: nothing is read from the environment, so it starts at once
    under torchrun too, where each rank is a data-parallel shard with a group of its own (a TCP
    rendezvous there uses torchrun's agent store, which never answers a one-process group)."""
    import torch.distributed as dist

    if dist.is_initialized():
        return
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)


def tiny_stdit3(
    depth: int = 2, hidden_size: int = 64, num_heads: int = 4, caption_channels: int = 32, seed: int = 0
) -> nn.Module:
    """A random-weight VideoSys ``STDiT3``; every block is non-trivial (Open-Sora zero-inits some)."""
    import_videosys()
    from videosys.models.transformers.open_sora_transformer_3d import STDiT3, STDiT3Config

    init_single_process_group()
    torch.manual_seed(seed)
    config = STDiT3Config(
        depth=depth,
        hidden_size=hidden_size,
        num_heads=num_heads,
        caption_channels=caption_channels,
        model_max_length=TEXT_LENGTH,
    )
    model = STDiT3(config)
    with torch.no_grad():
        # Open-Sora zero-initialises the temporal blocks' output projections, which would make
        # them identities; random weights everywhere give residuals that change step to step.
        for block in model.temporal_blocks:
            for proj in (block.attn.proj, block.cross_attn.proj, block.mlp.fc2):
                nn.init.normal_(proj.weight, std=0.02)
        nn.init.normal_(model.final_layer.linear.weight, std=0.02)
    model.enable_parallel(dp_size=1, sp_size=1, enable_cp=False)
    return model.eval()


def char_tokenizer(model_max_length: int | None = None) -> Any:
    """A character-level fast tokenizer (no download): pad 0, end of sequence 1, unknown 2;
    ``model_max_length`` for the pipelines that read the tokenizer's own limit."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "</s>", "<unk>"]
    chars = string.ascii_lowercase + string.digits + string.punctuation
    vocab = {tok: i for i, tok in enumerate(specials + list(chars))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"\S"), behavior="isolated")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    if model_max_length is not None:
        tokenizer.model_max_length = model_max_length
    return tokenizer


def tiny_text_encoder(d_model: int = 32, seed: int = 0, model_max_length: int | None = None) -> tuple[nn.Module, Any]:
    """A two-layer T5 encoder and the character-level tokenizer."""
    from transformers import T5Config, T5EncoderModel

    tokenizer = char_tokenizer(model_max_length)
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=d_model,
        d_kv=8,
        d_ff=2 * d_model,
        num_layers=2,
        num_heads=4,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    return T5EncoderModel(config).eval(), tokenizer


class TinyVideoVAE(nn.Module):
    """A diffusers ``AutoencoderKL`` per frame, with Open-Sora's 4x temporal compression mimicked
    by striding (front-padded, as its causal VAE pads), behind the interface OpenSoraPipeline calls."""

    time_factor = 4

    def __init__(self, latent_channels: int = 4, seed: int = 0) -> None:
        super().__init__()
        from diffusers.models import AutoencoderKL

        torch.manual_seed(seed)
        self.module = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            latent_channels=latent_channels,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(8, 8, 8, 8),
            layers_per_block=1,
            norm_num_groups=4,
            sample_size=64,
        )
        self.out_channels = latent_channels
        self.patch_size = (self.time_factor, 8, 8)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def _time_padding(self, num_frames: int) -> int:
        return -num_frames % self.time_factor

    def get_latent_size(self, input_size: Any) -> list:
        t, h, w = input_size
        t = None if t is None else (t + self._time_padding(t)) // self.time_factor
        return [t, None if h is None else h // 8, None if w is None else w // 8]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Videos (B, 3, T, H, W) to latents; ``generate(loop>1)`` conditions on the last frames."""
        pad = self._time_padding(x.shape[2])
        x = torch.cat([x[:, :, :1].expand(-1, -1, pad, -1, -1), x], dim=2)[:, :, :: self.time_factor]
        return self._framewise(x, lambda frames: self.module.encode(frames).latent_dist.mode())

    def decode(self, z: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        video = self._framewise(z, lambda frames: self.module.decode(frames).sample)
        video = video.repeat_interleave(self.time_factor, dim=2)
        if num_frames is not None:
            video = video[:, :, self._time_padding(num_frames) :][:, :, :num_frames]
        return video

    def forward(self, z: torch.Tensor, decode_only: bool = True, num_frames: int | None = None) -> torch.Tensor:
        if not decode_only:
            raise NotImplementedError("TinyVideoVAE.forward only decodes; OpenSoraPipeline passes decode_only=True.")
        return self.decode(z, num_frames)

    @staticmethod
    def _framewise(x: torch.Tensor, fn: Any) -> torch.Tensor:
        b, c, t, h, w = x.shape
        out = fn(x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w))
        return out.reshape(b, t, *out.shape[1:]).permute(0, 2, 1, 3, 4)


def tiny_components(seed: int = 0, depth: int = 2, hidden_size: int = 64) -> dict[str, nn.Module]:
    """Keyword arguments for ``OpenSoraPipeline(config, **components)``."""
    text_encoder, tokenizer = tiny_text_encoder(seed=seed)
    return dict(
        transformer=tiny_stdit3(depth=depth, hidden_size=hidden_size, seed=seed),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        vae=TinyVideoVAE(seed=seed),
    )


def tiny_opensora_pipeline(config: Any = None, seed: int = 0, **config_kwargs: Any) -> Any:
    """An OpenSoraPipeline on CPU in float32 with tiny components.

    ``config`` (a VideoSys or magcache_videosys ``OpenSoraConfig``) is built from ``config_kwargs``
    when not given; a caching method enabled on it is installed as it would be on every rank.
    """
    videosys = import_videosys()
    if config is None:
        config = videosys.OpenSoraConfig(**config_kwargs)
    return config.pipeline_cls(config, device=torch.device("cpu"), dtype=torch.float32, **tiny_components(seed))
