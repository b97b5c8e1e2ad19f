"""Generating with VideoSys: the engine on GPUs, or on the CPU the trained test bed or the tiny
random-weight pipeline.

The only module here that imports VideoSys (on first use); what differs between model families
(the config, the ``generate`` arguments, the sizes VideoSys knows) comes from the family
(``magcache_videosys/models/``). The transformer loop is timed from the start of a video's first
transformer call to the end of its last, with CUDA events recorded at those points (no host sync in
the loop) and read once the video is done.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

import torch

from ..videosys_compat import INSTALL_HINT, import_videosys, videosys_available
from .runner import Plan, RunError, Sample, Settings
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
    """Times the sampling loop of one pipeline: first transformer call's start to last call's end.

    On CUDA each call's end is an event recorded on the stream (asynchronous); the elapsed time is
    read after ``generate`` returns, when the caller has synchronised anyway. On the CPU it also
    takes the process's CPU time over the same span, which other processes' load changes far less
    than the wall clock."""

    def __init__(self, transformer: torch.nn.Module) -> None:
        self.cuda = next(transformer.parameters()).device.type == "cuda"
        self.start: Any = None
        self.end: Any = None
        self.cpu_start = self.cpu_end = float("nan")
        transformer.register_forward_pre_hook(self._begin)
        transformer.register_forward_hook(self._finish)

    def reset(self) -> None:
        """Before a video: the next transformer call is its first."""
        self.start = self.end = None
        self.cpu_start = self.cpu_end = float("nan")

    def _mark(self) -> Any:
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def _begin(self, module: torch.nn.Module, args: tuple) -> None:
        if self.start is None:
            self.start = self._mark()
            if not self.cuda:
                self.cpu_start = time.process_time()

    def _finish(self, module: torch.nn.Module, args: tuple, out: Any) -> None:
        self.end = self._mark()
        if not self.cuda:
            self.cpu_end = time.process_time()

    def cpu_seconds(self) -> float:
        """The last video's loop in CPU seconds of this process (all its threads); nan on CUDA."""
        return self.cpu_end - self.cpu_start

    def seconds(self) -> float:
        """The last video's loop time (after a synchronisation on CUDA); nan before any call."""
        if self.start is None or self.end is None:
            return float("nan")
        if self.cuda:
            return self.start.elapsed_time(self.end) / 1000.0
        return self.end - self.start


def require_videosys(settings: Settings) -> None:
    """Before any model: VideoSys must be importable."""
    if not videosys_available():
        if settings.tiny:
            what = "--tiny also needs it (its tiny models are VideoSys's own)"
        elif settings.testbed:
            what = "--testbed also needs it (the test bed is VideoSys's own model, trained small)"
        else:
            what = "a run needs it"
        raise RunError(f"{INSTALL_HINT} ({what}; --dry-run works without it.)")


def check_settings(settings: Settings) -> None:
    """The family's own check of what VideoSys can generate (sizes), as a run error."""
    try:
        settings.family.check_generation(settings.to_dict())
    except ValueError as exc:
        raise RunError(str(exc)) from None


def preflight(plan: Plan) -> None:
    """What generating needs, checked before the run creates anything: VideoSys, a size it knows,
    and the GPUs (made visible to this process first)."""
    require_videosys(plan.settings)
    import_videosys(verbose=plan.options.verbose)
    check_settings(plan.settings)
    if plan.settings.tiny or plan.settings.testbed:
        return
    if plan.shard.local_rank is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = visible_gpus(plan.shard.local_rank, plan.options.num_gpus)
    if not torch.cuda.is_available():
        testbed = ", --testbed for real videos of the trained test bed" if plan.settings.family.testbed else ""
        raise RunError(f"no CUDA GPU is visible; VideoSys runs need one (use --tiny for a CPU smoke run{testbed}).")
    if torch.cuda.device_count() < plan.options.num_gpus:
        raise RunError(
            f"--num-gpus {plan.options.num_gpus} but {torch.cuda.device_count()} GPU(s) are visible to this process."
        )


class VideoSysGenerator:
    """Builds the VideoSys config with the method enabled, then the engine (or tiny pipeline).

    Run :func:`preflight` first (``run`` does, given it)."""

    def __init__(self, plan: Plan) -> None:
        videosys = import_videosys(verbose=plan.options.verbose)
        s = self.settings = plan.settings
        self.family = s.family
        config = self.family.videosys_config(s.to_dict(), plan.options.num_gpus)
        if plan.method_config is not None:
            plan.method.apply(config, plan.method_config)
        self.engine = None
        if s.tiny or s.testbed:
            self.pipeline = self.family.tiny_pipeline(config) if s.tiny else self.family.testbed_pipeline(config)
            self.sync: Callable[[], None] = lambda: None
        else:
            config.pipeline_cls = PipelineBuilder(config.pipeline_cls, dtype=TORCH_DTYPES[s.dtype])
            self.engine = videosys.VideoSysEngine(config)
            self.pipeline = self.engine.driver_worker
            self.sync = torch.cuda.synchronize
        self.timer = LoopTimer(self.pipeline.transformer)

    def generate(self, prompt: str, seed: int) -> Sample:
        target = self.engine if self.engine is not None else self.pipeline
        self.timer.reset()
        self.sync()
        start = time.perf_counter()
        video = self.family.generate(target, prompt, seed, self.settings.to_dict())
        self.sync()
        total = time.perf_counter() - start
        return Sample(
            video=video,
            latency_transformer_s=self.timer.seconds(),
            latency_total_s=total,
            pipeline=self.pipeline,
            cpu_transformer_s=self.timer.cpu_seconds(),
        )

    def save(self, sample: Sample, path: Path) -> None:
        """Write frames (T, H, W, C uint8) as mp4, byte for byte as VideoSys's ``save_video`` does."""
        write_mp4(sample.video, path, fps=self.family.generation.fps)

    def check(self, sample: Sample, path: Path) -> None:
        check_mp4(path, sample.video)

    def close(self) -> None:
        # VideoSysEngine shuts its workers down when it is collected.
        self.engine = None
        self.pipeline = None
