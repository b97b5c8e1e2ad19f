"""The eval path on the device: PSNR and SSIM (and LPIPS where its weights are present) of synthetic
video pairs, in frame pairs per second against the CPU's fused kernels, values compared frame by
frame.

Both sides run the package's own driver pieces (``FrameScorer``, ``score_video``,
``scoring_context``) on frames already decoded into host memory; the device side's time includes
copying them to the device, as ``evaluate`` does. On the CPU (``--small``) the device side is the
eager code, which is what runs on CUDA.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from bench_metrics import fused_kernels

from magcache_videosys.metrics.errors import MetricsError
from magcache_videosys.metrics.evaluate import FrameScorer, default_batch_size, score_video, scoring_context
from magcache_videosys.metrics.fused import fused_enabled
from magcache_videosys.metrics.lpips import load_lpips

TOLERANCE = 1e-5
NOISE = 8.0  # std of the noise in the "generated" copy, on the 0..255 scale: PSNR near 30 dB, as cached videos


def synthetic_pair(frames: int, height: int, width: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth random video and a noisy copy, ``(T, H, W, 3)`` uint8 as decoders return them."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(frames, 3, height // 16 + 1, width // 16 + 1, generator=generator) * 255
    smooth = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
    noisy = smooth + torch.randn(smooth.shape, generator=generator) * NOISE

    def frames_of(video: torch.Tensor) -> torch.Tensor:
        return video.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()

    return frames_of(smooth), frames_of(noisy)


def _score_all(scorer: FrameScorer, pairs: list, batch: int, pool: Any) -> tuple[float, dict[str, list[np.ndarray]]]:
    """Seconds to score every pair (values come back to the host, so the device has finished)."""
    values: dict[str, list[np.ndarray]] = {name: [] for name in scorer.metrics}
    start = time.perf_counter()
    for reference, generated in pairs:
        scored = score_video(scorer, reference.to(scorer.device), generated.to(scorer.device), batch, pool)
        for name, per_frame in scored.items():
            values[name].append(per_frame)
    return time.perf_counter() - start, values


def _timed(scorer: FrameScorer, pairs: list, batch: int, pool: Any) -> tuple[float, float, dict]:
    """(first call's seconds, which compiles or warms up; seconds for all pairs; their values)."""
    first, _ = _score_all(scorer, pairs[:1], batch, pool)
    seconds, values = _score_all(scorer, pairs, batch, pool)
    return first, seconds, values


def _max_difference(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return float(max(np.abs(x - y).max() for x, y in zip(a, b)))


def _lpips_models(device: torch.device) -> tuple[Any, Any, str | None]:
    """LPIPS for the device and for the CPU, or (None, None, why not)."""
    try:
        return load_lpips(device=device), load_lpips(device="cpu"), None
    except MetricsError as error:
        return None, None, str(error).split(". ")[0]  # what is missing and where; the rest names eval.py's options


def check_metrics(
    device: torch.device, videos: int, frames: int, height: int, width: int, log: Callable[[str], None]
) -> dict[str, Any]:
    """Score ``videos`` synthetic pairs on ``device`` and on the CPU's fused path; rates and differences."""
    pairs = [synthetic_pair(frames, height, width, seed) for seed in range(videos)]
    count = videos * frames
    cpu = torch.device("cpu")
    log(f"metrics: {videos} synthetic pairs of {frames} frames {width}x{height}; CPU fused path (compiles first)")
    with scoring_context(cpu) as pool:
        cpu_first, cpu_seconds, cpu_values = _timed(
            FrameScorer(("psnr", "ssim"), cpu), pairs, default_batch_size(cpu, height, width), pool
        )
    cpu_fused = fused_enabled(cpu)

    device_lpips, cpu_lpips, lpips_missing = _lpips_models(device)
    names = ("psnr", "ssim") if device_lpips is None else ("psnr", "ssim", "lpips")
    log(f"metrics: the {device.type} path ({', '.join(names)})")
    eager = contextlib.nullcontext() if device.type == "cuda" else fused_kernels(False)
    with eager, scoring_context(device) as pool:
        batch = default_batch_size(device, height, width)
        psnr_ssim = FrameScorer(("psnr", "ssim"), device)
        _, device_seconds, device_values = _timed(psnr_ssim, pairs, batch, pool)
        lpips = None
        if device_lpips is not None:
            _, lpips_seconds, lpips_values = _timed(FrameScorer(("lpips",), device, device_lpips), pairs, batch, pool)
            device_values.update(lpips_values)
    if device_lpips is not None:
        # LPIPS has no fused CPU kernel; the CPU side scores one video, eagerly, for the rate and values.
        with scoring_context(cpu) as pool:
            scorer, chunk = FrameScorer(("lpips",), cpu, cpu_lpips), default_batch_size(cpu, height, width)
            cpu_lpips_seconds, cpu_lpips_values = _score_all(scorer, pairs[:1], chunk, pool)
        cpu_values.update(cpu_lpips_values)
        lpips = dict(
            device_frame_pairs_per_s=count / lpips_seconds,
            cpu_frame_pairs_per_s=frames / cpu_lpips_seconds,
            ratio=(count / lpips_seconds) / (frames / cpu_lpips_seconds),
        )

    differences = {name: _max_difference(device_values[name], cpu_values[name]) for name in names}
    return dict(
        videos=videos,
        frames=frames,
        height=height,
        width=width,
        device=device.type,
        device_path="CUDA, eager, TF32 off" if device.type == "cuda" else "CPU, eager (the code CUDA runs)",
        cpu_path="fused" if cpu_fused else "eager (the fused kernels could not be compiled)",
        cpu_first_call_s=cpu_first,
        psnr_ssim=dict(
            device_frame_pairs_per_s=count / device_seconds,
            cpu_frame_pairs_per_s=count / cpu_seconds,
            ratio=cpu_seconds / device_seconds,
        ),
        lpips=lpips,
        lpips_missing=lpips_missing,
        mean={name: float(np.mean(np.concatenate(cpu_values[name]))) for name in ("psnr", "ssim")},
        max_abs_difference=differences,
        tolerance=TOLERANCE,
        equal_within_tolerance=all(d <= TOLERANCE for d in differences.values()),
    )
