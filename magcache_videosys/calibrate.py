"""Measuring a model's magnitude-ratio table: the generation run in calibration mode, then the average.

``python -m magcache_videosys calibrate`` and ``experiments/<model>.py --method magcache-calibrate``
are one path: the generation run (resumable, shardable, every video recorded) with MagCache in
calibration mode, which computes every step and records per step the mean token-wise ratio
``||r_t|| / ||r_{t-1}||``, its std and the cosine distance. Once every video of the run exists,
:func:`table_from_records` averages them into a table that keeps the settings it was measured
under, the spread across videos and the package versions, so a later reader knows what it is
valid for.
"""

from __future__ import annotations

import platform
import statistics
from typing import Any, Sequence

import torch

from .ratios import RatioTable
from .records import VideoRecord

COLUMNS = ("ratio", "ratio_std", "cosine_distance")


def table_from_records(records: Sequence[VideoRecord], name: str, source: str) -> RatioTable:
    """One table from the records of a calibration run: per-step means over the videos, with the
    spread of the ratio across videos, the prompts and the versions kept in its settings."""
    usable = [r for r in records if r.extra.get("ratio")]
    if not usable:
        raise ValueError("no calibration records: every video of a --method magcache-calibrate run records its ratios.")
    lengths = {len(r.extra["ratio"]) for r in usable}
    if len(lengths) != 1:
        raise ValueError(f"calibration records of different step counts ({sorted(lengths)}); calibrate one at a time.")
    per_step = {key: list(zip(*(r.extra[key] for r in usable))) for key in COLUMNS}
    settings: dict[str, Any] = dict(usable[0].settings or {})
    settings.update(
        videos=len(usable),
        prompts=sorted({r.prompt or "" for r in usable}),
        seeds=sorted({r.seed for r in usable if r.seed is not None}),
        ratio_std_across_videos=[statistics.pstdev(v) for v in per_step["ratio"]],
        versions=_versions(),
    )
    return RatioTable(
        ratios=tuple(statistics.fmean(v) for v in per_step["ratio"]),
        std=tuple(statistics.fmean(v) for v in per_step["ratio_std"]),
        cosine_distance=tuple(statistics.fmean(v) for v in per_step["cosine_distance"]),
        name=name,
        model=_model_text(settings),
        settings=settings,
        source=f"{source}: mean token-wise residual-norm ratio per step, averaged over the videos in settings",
    )


def _model_text(settings: dict[str, Any]) -> str:
    """The family and its weights, e.g. ``opensora (transformer hpcai-tech/OpenSora-STDiT-v3, ...)``."""
    from .models import family_named

    model = str(settings.get("model", "unknown"))
    try:
        weights = family_named(model, generating=True).generation.weights
    except ValueError:
        return model
    return f"{model} ({', '.join(f'{w.name} {settings.get(w.name)}' for w in weights)})"


def _versions() -> dict[str, str]:
    import magcache_videosys

    from .videosys_compat import videosys_version

    return {
        "magcache_videosys": magcache_videosys.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "videosys": videosys_version(),
    }
