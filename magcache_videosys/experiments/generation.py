"""Generating with VideoSys: the engine on GPUs, or the tiny random-weight pipeline on the CPU.

The only module here that imports VideoSys (on first use). The transformer loop is timed by
wrapping the driver pipeline's ``scheduler.sample`` (it runs every step of one video), with
CUDA synchronised just before and after it and around the whole ``generate`` call, never per step.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

import torch

from ..videosys_compat import INSTALL_HINT, import_videosys, videosys_available
from .runner import Plan, RunError, Sample
from .sharding import visible_gpus
from .videofile import check_mp4, write_mp4

TORCH_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


class PipelineBuilder:
    """Stands in for ``config.pipeline_cls`` to pass constructor options (the dtype) to the
    pipeline of every rank; picklable, so it travels to the ranks the engine spawns."""

    def __init__(self, inner: Callable[..., Any], **kwargs: Any) -> None:
        self.inner = inner
        self.kwargs = kwargs

    def __call__(self, config: Any, *args: Any, **kwargs: Any) -> Any:
        return self.inner(config, *args, **{**self.kwargs, **kwargs})

    @property
    def __name__(self) -> str:
        return getattr(self.inner, "__name__", type(self.inner).__name__)


class LoopTimer:
    """Times each ``scheduler.sample`` call of one pipeline (the whole transformer loop)."""

    def __init__(self, scheduler: Any, sync: Callable[[], None]) -> None:
        self.sync = sync
        self.last_s = float("nan")
        inner = scheduler.sample

        def timed(*args: Any, **kwargs: Any) -> Any:
            self.sync()
            start = time.perf_counter()
            out = inner(*args, **kwargs)
            self.sync()
            self.last_s = time.perf_counter() - start
            return out

        scheduler.sample = timed


def require_videosys(tiny: bool) -> None:
    """Before any model: VideoSys must be importable."""
    if not videosys_available():
        what = (
            "--tiny also needs it (its tiny models are VideoSys's own STDiT3 and RFLOW)" if tiny else "a run needs it"
        )
        raise RunError(f"{INSTALL_HINT} ({what}; --dry-run works without it.)")


def check_size(settings: Any) -> None:
    from videosys.pipelines.open_sora.data_process import get_image_size, get_num_frames

    try:
        get_image_size(settings.resolution, settings.aspect_ratio)
    except (KeyError, AssertionError):
        raise RunError(
            f"VideoSys's Open-Sora has no size for --resolution {settings.resolution} "
            f"--aspect-ratio {settings.aspect_ratio}; "
            f"try e.g. 144p, 240p, 360p, 480p or 720p with 9:16, 16:9, 3:4, 4:3 or 1:1."
        ) from None
    try:
        get_num_frames(settings.num_frames)
    except ValueError:
        raise RunError(
            f"--frames {settings.num_frames!r} is neither a frame count nor a VideoSys duration such as 2s."
        ) from None


def preflight(plan: Plan) -> None:
    """What generating needs, checked before the run creates anything: VideoSys, a size it knows,
    and the GPUs (made visible to this process first)."""
    require_videosys(plan.settings.tiny)
    import_videosys(verbose=plan.options.verbose)
    check_size(plan.settings)
    if plan.settings.tiny:
        return
    if plan.shard.local_rank is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = visible_gpus(plan.shard.local_rank, plan.options.num_gpus)
    if not torch.cuda.is_available():
        raise RunError("no CUDA GPU is visible; VideoSys runs need one (use --tiny for a CPU smoke run).")
    if torch.cuda.device_count() < plan.options.num_gpus:
        raise RunError(
            f"--num-gpus {plan.options.num_gpus} but {torch.cuda.device_count()} GPU(s) are visible to this process."
        )


class VideoSysGenerator:
    """Builds the VideoSys config with the method enabled, then the engine (or tiny pipeline).

    Run :func:`preflight` first (``run`` does, given it)."""

    def __init__(self, plan: Plan) -> None:
        videosys = import_videosys(verbose=plan.options.verbose)
        s = plan.settings
        self.settings = s
        config = (
            videosys.OpenSoraConfig(
                transformer=s.transformer,
                vae=s.vae,
                text_encoder=s.text_encoder,
                num_gpus=plan.options.num_gpus,
                num_sampling_steps=s.num_steps,
                cfg_scale=s.cfg_scale,
            )
            if not s.tiny
            else videosys.OpenSoraConfig(num_sampling_steps=s.num_steps, cfg_scale=s.cfg_scale)
        )
        if plan.method_config is not None:
            plan.method.apply(config, plan.method_config)
        self.engine = None
        if s.tiny:
            from ..tiny import tiny_opensora_pipeline

            self.pipeline = tiny_opensora_pipeline(config)
            self.sync: Callable[[], None] = lambda: None
        else:
            config.pipeline_cls = PipelineBuilder(config.pipeline_cls, dtype=TORCH_DTYPES[s.dtype])
            self.engine = videosys.VideoSysEngine(config)
            self.pipeline = self.engine.driver_worker
            self.sync = torch.cuda.synchronize
        self.timer = LoopTimer(self.pipeline.scheduler, self.sync)

    def generate(self, prompt: str, seed: int) -> Sample:
        s = self.settings
        target = self.engine if self.engine is not None else self.pipeline
        self.sync()
        start = time.perf_counter()
        video = target.generate(
            prompt,
            resolution=s.resolution,
            aspect_ratio=s.aspect_ratio,
            num_frames=s.num_frames,
            seed=seed,
            verbose=False,
        ).video[0]
        self.sync()
        total = time.perf_counter() - start
        return Sample(
            video=video, latency_transformer_s=self.timer.last_s, latency_total_s=total, pipeline=self.pipeline
        )

    def save(self, sample: Sample, path: Path) -> None:
        """Write frames (T, H, W, C uint8) as mp4, byte for byte as VideoSys's ``save_video`` does."""
        write_mp4(sample.video, path)

    def check(self, sample: Sample, path: Path) -> None:
        check_mp4(path, sample.video)

    def close(self) -> None:
        # VideoSysEngine shuts its workers down when it is collected.
        self.engine = None
        self.pipeline = None
