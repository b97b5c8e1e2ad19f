"""Measuring a model's magnitude-ratio table with VideoSys generation in calibration mode.

Every step is computed; per run the mean token-wise ratio ``||r_t|| / ||r_{t-1}||``, its std and
the cosine distance are recorded, then averaged over the prompts and seeds. The table keeps the
settings it was measured under, so a later reader knows what it is valid for.
"""

from __future__ import annotations

import platform
import statistics
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from tqdm import tqdm

from .hooks import get_cache
from .magcache import MagCacheConfig
from .ratios import RatioTable
from .stats import RunStats
from .validation import is_int, is_real


@dataclass
class CalibrationSettings:
    """What to generate while measuring; defaults are the MagCache paper's Open-Sora setting."""

    prompts: Sequence[str]
    seeds: Sequence[int] = (0,)
    steps: int = 30
    resolution: str = "480p"
    aspect_ratio: str = "9:16"
    frames: int = 51
    cfg_scale: float = 7.0
    num_gpus: int = 1
    transformer: str = "hpcai-tech/OpenSora-STDiT-v3"
    vae: str = "hpcai-tech/OpenSora-VAE-v1.2"
    text_encoder: str = "DeepFloyd/t5-v1_1-xxl"
    tiny: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.prompts or any(not isinstance(p, str) or not p.strip() for p in self.prompts):
            raise ValueError("calibration needs at least one non-empty prompt.")
        if not self.seeds:
            raise ValueError("calibration needs at least one seed.")
        if not is_int(self.steps) or self.steps < 2:
            raise ValueError(f"steps must be a whole number >= 2, got {self.steps!r}.")
        for name in ("frames", "num_gpus"):
            value = getattr(self, name)
            if not is_int(value) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}.")
        if not is_real(self.cfg_scale):
            raise ValueError(f"cfg_scale must be a finite number, got {self.cfg_scale!r}.")


def _generator(settings: CalibrationSettings) -> tuple[Any, str, str]:
    """A VideoSys engine (or the tiny CPU pipeline) with MagCache in calibration mode."""
    from .configs import OpenSoraConfig

    config = OpenSoraConfig(
        transformer=settings.transformer,
        vae=settings.vae,
        text_encoder=settings.text_encoder,
        num_gpus=settings.num_gpus,
        num_sampling_steps=settings.steps,
        cfg_scale=settings.cfg_scale,
        enable_magcache=True,
        magcache_config=MagCacheConfig(calibrate=True),
    )
    if settings.tiny:
        from .tiny import tiny_opensora_pipeline

        return tiny_opensora_pipeline(config), "tiny random-weight STDiT3 (magcache_videosys.tiny)", "float32"
    from videosys import VideoSysEngine

    return VideoSysEngine(config), f"Open-Sora 1.2 ({settings.transformer})", "bfloat16"


def _stats(target: Any) -> RunStats:
    pipeline = getattr(target, "driver_worker", target)
    return get_cache(pipeline.transformer).latest_stats()


def calibrate_opensora(settings: CalibrationSettings, name: str = "calibrated", progress: bool = True) -> RatioTable:
    """Generate every (prompt, seed) with calibration on and return the averaged table."""
    target, model, dtype = _generator(settings)
    runs: list[RunStats] = []
    jobs = [(p, s) for p in settings.prompts for s in settings.seeds]
    for prompt, seed in tqdm(jobs, desc="calibrating", unit="video", disable=not progress):
        target.generate(
            prompt,
            resolution=settings.resolution,
            aspect_ratio=settings.aspect_ratio,
            num_frames=settings.frames,
            seed=seed,
            verbose=False,
        )
        stats = _stats(target)
        if not stats.complete or len(stats.ratio) != settings.steps - 1:
            raise RuntimeError(f"calibration run for {prompt!r} (seed {seed}) did not record every step.")
        runs.append(stats)
    return average_runs(runs, settings, name=name, model=model, dtype=dtype)


def average_runs(
    runs: Sequence[RunStats], settings: CalibrationSettings, name: str, model: str, dtype: str
) -> RatioTable:
    """One table from several calibration runs: per-step means, with the spread across runs kept."""
    ratios = [r.ratio for r in runs]
    per_step = list(zip(*ratios))
    mean = [statistics.fmean(v) for v in per_step]
    import magcache_videosys

    measured = dict(
        model=model,
        steps=settings.steps,
        resolution=settings.resolution,
        aspect_ratio=settings.aspect_ratio,
        num_frames=settings.frames,
        cfg_scale=settings.cfg_scale,
        dtype=dtype,
        prompts=list(settings.prompts),
        seeds=list(settings.seeds),
        runs=len(runs),
        ratio_std_across_runs=[statistics.pstdev(v) for v in per_step],
        versions={
            "magcache_videosys": magcache_videosys.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "videosys": _videosys_version(),
        },
        **settings.extra,
    )
    return RatioTable(
        ratios=tuple(mean),
        std=tuple(statistics.fmean(v) for v in zip(*(r.ratio_std for r in runs))),
        cosine_distance=tuple(statistics.fmean(v) for v in zip(*(r.cosine_distance for r in runs))),
        name=name,
        model=model,
        settings=measured,
        source="python -m magcache_videosys calibrate: mean token-wise residual-norm ratio per step, "
        "averaged over the prompts and seeds in settings",
    )


def _videosys_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("videosys")
    except metadata.PackageNotFoundError:
        import videosys

        return f"source checkout at {videosys.__path__[0]}"
