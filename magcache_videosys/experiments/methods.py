"""The methods the generation run knows, one registry entry each.

An entry says how to turn command-line knobs into the method's config (validated before any
model is loaded), how to enable it on a VideoSys config (so it reaches every rank the engine
starts), which steps it will compute when that is known beforehand, and what it leaves behind
at the end of a run. Adding a method is one :func:`register` call.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..knobs import KNOBS
from ..magcache import PRESETS, MagCacheConfig
from ..plugin import enable_magcache, enable_pab, enable_teacache, get_stats
from ..records import VideoRecord
from ..stats import RunStats
from ..teacache import PRESETS as TEACACHE_PRESETS
from ..teacache import TeaCacheConfig


class MethodError(ValueError):
    """An unknown method, or knobs the method does not take."""


@dataclass(frozen=True)
class Method:
    """One way to generate.

    ``make_config`` gets only the knobs the user gave (all listed in ``knobs``) and returns the
    method's config, or None for the uncached model. ``apply`` enables it on a VideoSys config.
    ``plan`` returns the steps one video computes, or None when that depends on the data.
    ``finish`` runs once every video of the run exists, with the merged manifest records.
    ``required`` lists the knobs the method cannot run without.
    """

    name: str
    help: str
    make_config: Callable[[Mapping[str, Any]], Any]
    apply: Callable[[Any, Any], None] = lambda videosys_config, cfg: None
    knobs: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    fixed_by: str = ""  # e.g. "preset opensora-fast (threshold=0.12, ...)": why it takes no knobs
    knob_method: str = ""  # the method to use instead when the user wants to set the knobs
    plan: Callable[[Any, int], Sequence[int] | None] = lambda cfg, num_steps: list(range(num_steps))
    stats: Callable[[Any], RunStats | None] = lambda pipeline: None
    record_extra: Callable[[RunStats | None], dict[str, Any]] = lambda stats: {}
    finish: Callable[[Path, list[VideoRecord]], list[Path]] | None = None
    config_dict: Callable[[Any], dict[str, Any]] = lambda cfg: {} if cfg is None else cfg.to_dict()


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    unknown = set(method.knobs) - set(KNOBS)
    if unknown:
        raise ValueError(f"method {method.name!r} lists unknown knobs {sorted(unknown)}; add them to KNOBS first.")
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise MethodError(f"unknown method {name!r}; valid methods: {', '.join(METHODS)}.")
    return METHODS[name]


def build_config(method: Method, knobs: Mapping[str, Any]) -> Any:
    """The method's config from the knobs given (None values are 'not given')."""
    given = {k: v for k, v in knobs.items() if v is not None}
    extra = [k for k in given if k not in method.knobs]
    if extra:
        flags = ", ".join(KNOBS[k].flag for k in extra)
        if method.fixed_by:
            instead = (
                f", or use --method {method.knob_method} {flags} ... to set the knobs yourself"
                if method.knob_method
                else ""
            )
            raise MethodError(
                f"--method {method.name} is the {method.fixed_by}, which fixes {flags}; drop {flags}{instead}."
            )
        accepted = ", ".join(KNOBS[k].flag for k in method.knobs) or "no knobs"
        raise MethodError(f"--method {method.name} does not take {flags} (it takes {accepted}).")
    missing = [k for k in method.required if k not in given]
    if missing:
        flags = ", ".join(KNOBS[k].flag for k in missing)
        raise MethodError(f"--method {method.name} needs {flags} ({method.help}).")
    try:
        return method.make_config(given)
    except (TypeError, ValueError) as exc:
        raise MethodError(f"--method {method.name}: {exc}") from None


# --- MagCache ---------------------------------------------------------------------------------


def _magcache_dict(cfg: MagCacheConfig) -> dict[str, Any]:
    """The config plus the table's values: a table file's name alone does not say what it held."""
    data = cfg.to_dict()
    if cfg.table is not None:
        data["table_ratios"] = list(cfg.table.ratios)
    return data


def _magcache_plan(cfg: MagCacheConfig, num_steps: int) -> list[int]:
    return cfg.plan(num_steps).computed_steps


def _magcache_stats(pipeline: Any) -> RunStats | None:
    return get_stats(pipeline)


def _preset_text(preset: str) -> str:
    p = PRESETS[preset]
    power = MagCacheConfig.preset(preset).effective_ratio_power
    return (
        f"preset {preset} (threshold={p['threshold']}, K={p['max_skip_steps']}, "
        f"retention-ratio={p['retention_ratio']}, mag-ratios={p['mag_ratios']}, ratio-power={power})"
    )


def _magcache_preset(speed: str) -> Method:
    preset = f"opensora-{speed}"
    return Method(
        name=f"magcache-{speed}",
        help=f"MagCache, {_preset_text(preset)}",
        make_config=lambda knobs: MagCacheConfig.preset(preset),
        apply=enable_magcache,
        fixed_by=_preset_text(preset),
        knob_method="magcache",
        plan=_magcache_plan,
        stats=_magcache_stats,
        config_dict=_magcache_dict,
    )


def _magcache_explicit(knobs: Mapping[str, Any]) -> MagCacheConfig:
    return MagCacheConfig.preset("opensora-fast", **{KNOBS[k].field: v for k, v in knobs.items()})


# --- calibration ------------------------------------------------------------------------------
CALIBRATION_FILE = "ratio_table.json"


def _calibration_extra(stats: RunStats | None) -> dict[str, Any]:
    if stats is None:
        return {}
    return stats.measured


def save_calibration(out_dir: Path, records: list[VideoRecord]) -> list[Path]:
    """The run's ratio table (``calibrate.table_from_records``), saved beside its videos."""
    from ..calibrate import table_from_records

    settings = records[0].settings or {}
    table = table_from_records(
        records,
        name=f"calibrated-{settings.get('model')}-{settings.get('num_steps')}",
        source=f"experiments/{settings.get('model')}.py --method magcache-calibrate",
    )
    return [table.save(out_dir / CALIBRATION_FILE)]


register(Method("base", "the uncached model (the baseline every speedup is measured against)", lambda knobs: None))
for _speed in ("slow", "fast", "turbo"):
    register(_magcache_preset(_speed))
register(
    Method(
        name="magcache",
        help="MagCache with your knobs; those not given come from preset opensora-fast",
        make_config=_magcache_explicit,
        apply=enable_magcache,
        knobs=("threshold", "K", "retention_ratio", "mag_ratios", "ratio_power"),
        plan=_magcache_plan,
        stats=_magcache_stats,
        config_dict=_magcache_dict,
    )
)
register(
    Method(
        name="magcache-calibrate",
        help=f"compute every step and record the magnitude ratios; writes {CALIBRATION_FILE} for --mag-ratios",
        make_config=lambda knobs: MagCacheConfig(calibrate=True),
        apply=enable_magcache,
        stats=_magcache_stats,
        record_extra=_calibration_extra,
        finish=save_calibration,
        config_dict=_magcache_dict,
    )
)


# --- TeaCache ---------------------------------------------------------------------------------
def _teacache_text(preset: str) -> str:
    p = TEACACHE_PRESETS[preset]
    return f"preset {preset} (threshold={p['threshold']}, coefficients={p['coefficients']}, last step computed)"


def _teacache_preset(speed: str) -> Method:
    preset = f"teacache-{speed}"
    return Method(
        name=preset,
        help=f"TeaCache (the paper's baseline), {_teacache_text(preset)}",
        make_config=lambda knobs: TeaCacheConfig.preset(preset),
        apply=enable_teacache,
        fixed_by=_teacache_text(preset),
        knob_method="teacache",
        plan=lambda cfg, num_steps: None,  # decided from the data at every step
        stats=get_stats,
    )


# --- PAB (VideoSys's own Pyramid Attention Broadcast) -----------------------------------------
# Its config is the OpenSoraPABConfig arguments that differ from VideoSys's defaults, so it is
# checked and recorded without importing VideoSys; every step runs the transformer. VideoSys's
# default MLP broadcast names the timesteps 676, 788 and 864, which only a 30-step run at 480p,
# 51 frames in bf16 (the papers' setting) contains; elsewhere it broadcasts attention only.
PAB_FAST = {"spatial_range": 5, "temporal_range": 7, "cross_range": 9}


def _enable_pab(videosys_config: Any, overrides: Mapping[str, Any]) -> None:
    from ..videosys_compat import import_videosys

    enable_pab(videosys_config, import_videosys().OpenSoraPABConfig(**overrides))


def _pab(name: str, overrides: Mapping[str, Any], text: str) -> Method:
    return Method(
        name=name,
        help=text,
        make_config=lambda knobs: dict(overrides),
        apply=_enable_pab,
        config_dict=lambda cfg: {"OpenSoraPABConfig": dict(cfg)},
    )


for _speed in ("slow", "fast"):
    register(_teacache_preset(_speed))
register(
    Method(
        name="teacache",
        help="TeaCache with your --threshold (required: the paper's are 0.1 and 0.2); the rest from preset "
        "teacache-slow",
        make_config=lambda knobs: TeaCacheConfig.preset("teacache-slow", **knobs),
        apply=enable_teacache,
        knobs=("threshold",),
        required=("threshold",),
        plan=lambda cfg, num_steps: None,
        stats=get_stats,
    )
)
register(
    _pab(
        "pab",
        {},
        "PAB, VideoSys's default OpenSoraPABConfig (attention broadcast ranges spatial 2, "
        "temporal 4, cross 6, and MLP broadcast); every step runs the transformer",
    )
)
register(
    _pab(
        "pab-fast",
        PAB_FAST,
        "PAB with ranges spatial 5, temporal 7, cross 9 (the fastest Open-Sora setting of "
        "VideoSys's eval/pab script), else VideoSys's defaults",
    )
)
