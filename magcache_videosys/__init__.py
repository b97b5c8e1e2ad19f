"""MagCache for VideoSys: magnitude-aware step caching for video diffusion transformers."""

from __future__ import annotations

from typing import Any

from .magcache import PRESETS, MagCacheConfig, apply_magcache, remove_magcache
from .models import ModelFamily, UnsupportedModelError, register_family, supported_models
from .plugin import (
    CachedPipeline,
    disable_magcache,
    disable_pab,
    disable_teacache,
    enable_magcache,
    enable_pab,
    enable_teacache,
    get_stats,
)
from .ratios import RatioTable, RatioTableError, load_ratio_table, shipped_tables
from .schedule import plan_schedule
from .stats import RunStats
from .teacache import PRESETS as TEACACHE_PRESETS
from .teacache import TeaCacheConfig, apply_teacache, remove_teacache

__version__ = "0.1.0"

_NEEDS_VIDEOSYS = {"OpenSoraConfig": "configs"}
_FROM_VIDEOSYS = ("VideoSysEngine",)


def __getattr__(name: str) -> Any:
    # Config classes subclass VideoSys's own, and VideoSys's engine is re-exported: they load (and
    # import VideoSys, with the fixes of videosys_compat) on first use.
    if name in _NEEDS_VIDEOSYS:
        from importlib import import_module

        return getattr(import_module(f".{_NEEDS_VIDEOSYS[name]}", __name__), name)
    if name in _FROM_VIDEOSYS:
        from .videosys_compat import import_videosys

        return getattr(import_videosys(), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "PRESETS",
    "TEACACHE_PRESETS",
    "CachedPipeline",
    "MagCacheConfig",
    "ModelFamily",
    "OpenSoraConfig",
    "RatioTable",
    "RatioTableError",
    "RunStats",
    "TeaCacheConfig",
    "UnsupportedModelError",
    "VideoSysEngine",
    "apply_magcache",
    "apply_teacache",
    "disable_magcache",
    "disable_pab",
    "disable_teacache",
    "enable_magcache",
    "enable_pab",
    "enable_teacache",
    "get_stats",
    "load_ratio_table",
    "plan_schedule",
    "register_family",
    "remove_magcache",
    "remove_teacache",
    "shipped_tables",
    "supported_models",
]
