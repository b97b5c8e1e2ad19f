"""Evaluation of accelerated videos: fidelity against the uncached video (PSNR, SSIM, LPIPS) with the
reference definitions, computed batched on CPU or GPU, and VBench scoring.

The command-line tools live in ``eval/common_metrics`` and ``eval/vbench``; this package holds
everything they do.
"""

from __future__ import annotations

from .errors import MetricsError
from .evaluate import METRICS, FrameScorer, PairResult, evaluate, format_summary, write_results
from .lpips import LPIPSAlex, load_lpips
from .psnr import psnr_frames
from .ssim import ssim_frames
from .vbench_scores import compute_scores, read_results
from .video_io import align_reference, pair_videos, read_video

__all__ = [
    "METRICS",
    "FrameScorer",
    "LPIPSAlex",
    "MetricsError",
    "PairResult",
    "align_reference",
    "compute_scores",
    "evaluate",
    "format_summary",
    "load_lpips",
    "pair_videos",
    "psnr_frames",
    "read_results",
    "read_video",
    "ssim_frames",
    "write_results",
]
