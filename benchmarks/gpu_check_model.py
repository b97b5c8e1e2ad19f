"""Open-Sora 1.2's transformer at its real size with random weights, inside VideoSys's own
``OpenSoraPipeline``, and the variants the GPU check compares.

The sizes are VideoSys's: ``STDiT3Config``'s defaults (depth 28, hidden 1152, 16 heads, patch
1x2x2, 4 latent channels, caption channels 4096, 300 text tokens), which ``STDiT3_XL_2`` repeats and
``OpenSoraPipeline`` loads as ``hpcai-tech/OpenSora-STDiT-v3``. Random weights cost what trained ones
cost: every matrix product, attention and elementwise kernel has the same shape. MagCache's and
PAB's schedules do not read the data, so they are the real ones too; TeaCache's does, and with
random weights its presets skip nothing (their rows measure its per-step overhead).

Small on purpose, because they run once per video outside the transformer loop: the text encoder
(a two-layer T5 with a character tokenizer whose output width is the real T5-XXL's 4096, so the
STDiT3 caption embedder and cross-attention get inputs of the real width) and the VAE (a small
per-frame autoencoder with Open-Sora 1.2's latent shape). The loop is timed exactly as it runs
with the real ones; the whole call lacks the real T5-XXL's and VAE's fixed cost.
"""

from __future__ import annotations

import contextlib
import importlib
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from gpu_check_probes import Clock, LoopMarks

from magcache_videosys import (
    MagCacheConfig,
    TeaCacheConfig,
    disable_magcache,
    disable_teacache,
    enable_magcache,
    enable_pab,
    enable_teacache,
    get_stats,
)
from magcache_videosys.hooks import get_cache
from magcache_videosys.models import find_family
from magcache_videosys.tiny import TinyVideoVAE, tiny_stdit3, tiny_text_encoder
from magcache_videosys.videosys_compat import import_videosys


@dataclass(frozen=True)
class Setting:
    """What one check runs: the STDiT3 size, the video, the sampler and where."""

    depth: int
    hidden_size: int
    num_heads: int
    caption_channels: int
    resolution: str
    aspect_ratio: str
    frames: int
    steps: int
    device: str
    dtype: str
    prompt: str = "a dog"
    seed: int = 0

    def stdit3_kwargs(self) -> dict[str, int]:
        return dict(
            depth=self.depth,
            hidden_size=self.hidden_size,
            num_heads=self.num_heads,
            caption_channels=self.caption_channels,
        )


# Open-Sora 1.2 as the MagCache paper ran it: 480p, 51 frames, 30 RFLOW steps, batched CFG, bf16.
FULL = Setting(28, 1152, 16, 4096, "480p", "9:16", 51, 30, "cuda", "bfloat16")
# The same code path on the CPU in seconds.
SMALL = Setting(2, 64, 4, 32, "144p", "1:1", 17, 30, "cpu", "float32")


class OpenSoraLatentVAE(TinyVideoVAE):
    """The tiny per-frame VAE with Open-Sora 1.2's latent shape: frames in micro-batches of 17, each
    compressed 4x in time with front padding (17 -> 5 latent frames, 51 -> 15), 8x in space, 4
    channels, as VideoSys's ``VideoAutoencoderPipeline.get_latent_size`` computes."""

    micro_frame_size = 17

    def _latent_frames(self, frames: int) -> int:
        return super().get_latent_size([frames, None, None])[0]

    def get_latent_size(self, input_size: Any) -> list:
        t, h, w = input_size
        if t is not None:
            whole, rest = divmod(t, self.micro_frame_size)
            t = whole * self._latent_frames(self.micro_frame_size) + (self._latent_frames(rest) if rest else 0)
        return [t, *super().get_latent_size([None, h, w])[1:]]

    def decode(self, z: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        per_chunk = self._latent_frames(self.micro_frame_size)
        parts, left = [], num_frames
        for start in range(0, z.shape[2], per_chunk):
            frames = None if left is None else min(self.micro_frame_size, left)
            parts.append(super().decode(z[:, :, start : start + per_chunk], frames))
            left = None if left is None else left - self.micro_frame_size
        return torch.cat(parts, dim=2)


@dataclass(frozen=True)
class Variant:
    """One way to run the pipeline: ``method`` is plain, magcache, teacache or pab."""

    name: str
    method: str
    config: Any = None

    @property
    def strict(self) -> bool:
        """Whether the plugin's code must run without any host-device synchronisation."""
        return self.method == "magcache"


MAGCACHE_SPEEDS = ("slow", "fast", "turbo")
TEACACHE_SPEEDS = ("slow", "fast")


def variants() -> list[Variant]:
    return [
        Variant("plain VideoSys", "plain"),
        Variant("MagCache never-skip", "magcache", MagCacheConfig.preset("opensora-fast", max_skip_steps=0)),
        *(Variant(f"MagCache {s}", "magcache", MagCacheConfig.preset(f"opensora-{s}")) for s in MAGCACHE_SPEEDS),
        *(Variant(f"TeaCache {s}", "teacache", TeaCacheConfig.preset(f"teacache-{s}")) for s in TEACACHE_SPEEDS),
        Variant("PAB", "pab"),
    ]


def pab_manager_module() -> Any:
    """VideoSys's module holding the process-wide PAB manager (its path differs between the copies)."""
    try:
        return importlib.import_module("videosys.core.pab.pab_mgr")
    except ModuleNotFoundError:
        return importlib.import_module("videosys.core.pab_mgr")


class Bench:
    """Two pipelines over identical random-weight STDiT3s: one plain (MagCache and TeaCache are
    enabled on it and removed again), one built with PAB through ``enable_pab``. VideoSys keeps
    PAB's settings process-wide, so they are switched on only around the PAB pipeline's runs."""

    def __init__(self, setting: Setting) -> None:
        videosys = import_videosys()
        self.setting = setting
        self.device = torch.device(setting.device)
        self.dtype = getattr(torch, setting.dtype)
        self.clock = Clock(self.device)
        text_encoder, tokenizer = tiny_text_encoder(d_model=setting.caption_channels, seed=setting.seed)
        parts = dict(
            text_encoder=text_encoder.to(self.device, self.dtype),
            tokenizer=tokenizer,
            vae=OpenSoraLatentVAE(seed=setting.seed).to(self.device, self.dtype),
        )
        self.pipelines = {}
        for method in ("plain", "pab"):
            config = videosys.OpenSoraConfig(num_sampling_steps=setting.steps, cfg_scale=7.0)
            if method == "pab":
                enable_pab(config)
                self.pab_settings = config.pab_config
            transformer = tiny_stdit3(**setting.stdit3_kwargs(), seed=setting.seed).to(self.device, self.dtype)
            self.pipelines[method] = config.pipeline_cls(
                config, device=self.device, dtype=self.dtype, transformer=transformer, **parts
            )
        self._pab_off()  # building the PAB pipeline switched PAB on for every pipeline of the process
        self.loops = {method: LoopMarks(p.scheduler, self.clock) for method, p in self.pipelines.items()}
        self.text_tokens: int | None = None

    # --- the model ---------------------------------------------------------------------------
    def pipeline(self, variant: Variant) -> Any:
        return self.pipelines["pab" if variant.method == "pab" else "plain"]

    def blocks(self, variant: Variant) -> list:
        """The block stack in execution order (S0 T0 S1 T1 ...), as the plugin sees it."""
        transformer = self.pipeline(variant).transformer
        return list(find_family(transformer).bind(transformer).blocks)

    def parameters(self) -> int:
        return sum(p.numel() for p in self.pipelines["plain"].transformer.parameters())

    # --- running a variant -------------------------------------------------------------------
    @contextlib.contextmanager
    def enabled(self, variant: Variant) -> Iterator[Any]:
        """The variant's pipeline with its method on; off again afterwards, whatever happened."""
        pipeline = self.pipeline(variant)
        enable, disable = {
            "magcache": (enable_magcache, disable_magcache),
            "teacache": (enable_teacache, disable_teacache),
        }.get(variant.method, (None, None))
        if enable is not None:
            enable(pipeline, variant.config)
        if variant.method == "pab":
            pab_manager_module().set_pab_manager(self.pab_settings)
        try:
            yield pipeline
        finally:
            if disable is not None:
                disable(pipeline)
            if variant.method == "pab":
                self._pab_off()

    def _pab_off(self) -> None:
        """Switch VideoSys's PAB off and free what it keeps between steps (an attention output per
        block), so that neither leaks into the next variant's time or memory."""
        pab_manager_module().PAB_MANAGER = None
        for block in self.blocks(Variant("PAB", "pab")):
            for name in ("last_attn", "last_cross"):
                if hasattr(block, name):
                    setattr(block, name, None)
        for outputs in ("mlp_spatial_outputs", "mlp_temporal_outputs"):
            getattr(self.pab_settings, outputs, {}).clear()

    def generate(self, pipeline: Any) -> None:
        s = self.setting
        pipeline.generate(
            s.prompt,
            resolution=s.resolution,
            aspect_ratio=s.aspect_ratio,
            num_frames=s.frames,
            seed=s.seed,
            verbose=False,
        )

    def call(self, variant: Variant, pipeline: Any) -> tuple[float, float]:
        """Generate one video: (transformer loop seconds, whole call seconds)."""
        if self.clock.cuda:
            torch.cuda.synchronize()
        start = self.clock.mark()
        self.generate(pipeline)
        end = self.clock.mark()
        call = self.clock.seconds(start, end)
        return self.loops["pab" if variant.method == "pab" else "plain"].seconds(), call

    def count_text_tokens(self, variant: Variant) -> None:
        """The caption length the cross-attention sees, from one plain call."""
        pipeline = self.pipeline(variant)
        seen: list[int] = []

        def hook(_: Any, args: tuple, kwargs: dict) -> None:
            seen.append(int(kwargs["attention_mask"].sum()))

        handle = pipeline.text_encoder.register_forward_pre_hook(hook, with_kwargs=True)
        try:
            self.generate(pipeline)
        finally:
            handle.remove()
        self.text_tokens = seen[0]

    def passes(self, variant: Variant, pipeline: Any) -> int:
        """Block-stack passes of the latest run (plain and PAB run the stack at every step)."""
        if variant.method in ("magcache", "teacache"):
            return len(get_stats(pipeline).computed_steps)
        return self.setting.steps

    @staticmethod
    def cache_bytes(pipeline: Any) -> int | None:
        """The one cached residual of the method on the pipeline, if any."""
        cache = get_cache(pipeline.transformer)
        if cache is None or cache.residual is None:
            return None
        return cache.residual.numel() * cache.residual.element_size()

    def tokens_per_video(self) -> int:
        """Transformer tokens of one video ([T, H/2, W/2] latent patches)."""
        from videosys.pipelines.open_sora.data_process import get_image_size

        vae = self.pipelines["plain"].vae
        height, width = get_image_size(self.setting.resolution, self.setting.aspect_ratio)
        t, h, w = vae.get_latent_size([self.setting.frames, height, width])
        return t * (h // 2) * (w // 2)
