"""Options shared by ``eval.py`` and ``batch_eval.py``, so both spell and check them the same way, and
what the evaluation scripts share in how they talk to the user."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch

from ..console import int_at_least
from .errors import MetricsError
from .evaluate import METRICS, default_device, parse_metrics
from .lpips import LPIPSAlex, load_lpips


def add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics", default=",".join(METRICS), help="comma-separated subset of %(default)s")
    parser.add_argument("--device", default=default_device(), help="torch device (default: %(default)s)")
    parser.add_argument(
        "--batch-size",
        type=int_at_least(1),
        default=None,
        help="frames per metric call (default: 32 on GPU; on CPU about 256k pixels, e.g. 2 frames at 240p)",
    )
    parser.add_argument(
        "--workers",
        type=int_at_least(0),
        default=min(4, os.cpu_count() or 1),
        help="decoding threads, 0 decodes inline",
    )
    parser.add_argument(
        "--allow-missing", action="store_true", help="evaluate the videos both folders hold and list the rest"
    )
    parser.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip videos that cannot be scored (unreadable, truncated, shorter or smaller reference) and list them",
    )
    parser.add_argument("--lpips-weights", help="AlexNet checkpoint (default: torch hub cache)")
    parser.add_argument("--lpips-heads", help="LPIPS v0.1 alex.pth heads (default: from the installed lpips package)")


def _check_device(device: str) -> None:
    try:
        kind = torch.device(device).type
    except RuntimeError as exc:
        raise MetricsError(f"bad --device {device!r}: {exc}") from exc
    if kind == "cuda" and not torch.cuda.is_available():
        raise MetricsError(f"--device {device} asked for, but CUDA is not available here; pass --device cpu")


def lpips_from_args(args: argparse.Namespace) -> LPIPSAlex | None:
    """Check the device and load LPIPS weights before any video is decoded, so a missing file fails fast."""
    _check_device(args.device)
    if "lpips" not in parse_metrics(args.metrics):
        return None
    return load_lpips(args.lpips_weights, args.lpips_heads, args.device)


def evaluate_options(args: argparse.Namespace, lpips_model: LPIPSAlex | None) -> dict[str, Any]:
    """The keyword arguments of :func:`~magcache_videosys.metrics.evaluate.evaluate` the options give."""
    return dict(
        metrics=parse_metrics(args.metrics),
        device=args.device,
        batch_size=args.batch_size,
        workers=args.workers,
        allow_missing=args.allow_missing,
        skip_bad=args.skip_bad,
        lpips_model=lpips_model,
    )


def evaluation_settings(args: argparse.Namespace, lpips_model: LPIPSAlex | None) -> dict[str, Any]:
    """What a result file records about how it was made."""
    settings: dict[str, Any] = {"device": args.device, "batch_size": args.batch_size, "torch": torch.__version__}
    if lpips_model is not None and lpips_model.weight_files:
        settings["lpips_weights"] = [str(p) for p in lpips_model.weight_files]
    return settings


def one_line_warnings() -> None:
    """Show warnings as ``warning: MESSAGE`` on stderr, printed above the progress bar instead of through it."""
    from tqdm.auto import tqdm

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        tqdm.write(f"warning: {message}", file=sys.stderr)

    warnings.showwarning = show


def interrupted(outputs: Sequence[Path], since: float) -> str:
    """What an interrupted evaluation script kept, for ``console.run_command``: which of its ``outputs``
    were written after ``since`` (a ``time.time()``)."""
    written = [str(p) for p in outputs if p.is_file() and p.stat().st_mtime >= since]
    if not written:
        return "Nothing was written: results are written once every video is scored; run the command again."
    return f"Only {', '.join(written)} had been written."
