"""The methods the generation run knows, one registry entry each.

An entry says how to turn command-line knobs into the method's config for the run's model
(validated before any model is loaded), how to enable it on a VideoSys config (so it reaches every
rank the engine starts), which steps it will compute when that is known beforehand, and what it
leaves behind at the end of a run. Adding a method is one :func:`register` call.

A method's name means the same idea on every model, its settings are the model's own: the
presets come from the model's family (``magcache_videosys/models/``), so ``magcache-fast`` is a
published MagCache setting where the family has a table, ``teacache-fast`` the TeaCache
repository's threshold with that model's coefficients, ``pab`` VideoSys's PAB config of that model;
where none is published, choosing the method is an error that says what to run instead.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..knobs import KNOBS
from ..magcache import PRESETS, MagCacheConfig
from ..models import ModelFamily, family_named, teacache_coefficients
from ..plugin import enable_magcache, enable_pab, enable_schedule, enable_teacache, get_stats
from ..records import VideoRecord
from ..static_schedule import StaticScheduleConfig
from ..stats import RunStats
from ..teacache import PRESETS as TEACACHE_PRESETS
from ..teacache import TeaCacheConfig

#: A run's settings as ``Settings.to_dict()`` gives them: ``model``, ``num_steps``, ``tiny``, the
#: family's own options and weights.
RunSettings = Mapping[str, Any]
DEFAULT_MODEL = "opensora"


class MethodError(ValueError):
    """An unknown method, knobs the method does not take, or a method the model has no setting for."""


@dataclass(frozen=True)
class Method:
    """One way to generate.

    ``make_config`` gets only the knobs the user gave (all listed in ``knobs``) and the run's
    settings, and returns the method's config for that model, or None for the uncached model.
    ``apply`` enables it on a VideoSys config. ``plan`` returns the steps one video computes, or None
    when that depends on the data. ``finish`` runs once every video of the run exists, with the
    merged manifest records. ``required`` lists the knobs the method cannot run without.
    ``meaning`` says what the method is for the run's model (help and dry run; ``help`` is the
    model-independent summary), ``fixed_by`` why a preset takes no knobs, e.g. "preset opensora-fast
    (threshold=0.12, ...)".
    """

    name: str
    help: str
    make_config: Callable[[Mapping[str, Any], RunSettings], Any]
    apply: Callable[[Any, Any], None] = lambda videosys_config, cfg: None
    knobs: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    fixed_by: Callable[[RunSettings], str] | None = None
    knob_method: str = ""  # the method to use instead when the user wants to set the knobs
    meaning: Callable[[RunSettings], str] | None = None
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


def default_settings(family: ModelFamily) -> dict[str, Any]:
    """The settings of a real run of ``family`` with every option at VideoSys's default."""
    options = family.fill_options({}, tiny=False)
    return {
        "model": family.name,
        "num_steps": family.generation.steps,
        "cfg_scale": family.generation.cfg_scale,
        "dtype": family.default_dtype(options),
        "tiny": False,
        **options,
    }


def _family(settings: RunSettings) -> ModelFamily:
    return family_named(settings["model"])


def method_help(method: Method, settings: RunSettings) -> str:
    """What ``method`` means for the model of ``settings``; for a method the model has no setting
    for, why not and what to use instead."""
    if method.meaning is None:
        return method.help
    try:
        return method.meaning(settings)
    except MethodError as exc:
        return f"not available: {exc}"


def build_config(method: Method, knobs: Mapping[str, Any], settings: RunSettings | None = None) -> Any:
    """The method's config from the knobs given (None values are 'not given') for the run's model
    (``settings``; None: Open-Sora 1.2 at VideoSys's defaults)."""
    if settings is None:
        settings = default_settings(family_named(DEFAULT_MODEL))
    given = {k: v for k, v in knobs.items() if v is not None}
    extra = [k for k in given if k not in method.knobs]
    if extra:
        flags = ", ".join(KNOBS[k].flag for k in extra)
        if method.fixed_by is not None:
            instead = (
                f", or use --method {method.knob_method} {flags} ... to set the knobs yourself"
                if method.knob_method
                else ""
            )
            fixed = method.fixed_by(settings)
            raise MethodError(f"--method {method.name} is the {fixed}, which fixes {flags}; drop {flags}{instead}.")
        accepted = ", ".join(KNOBS[k].flag for k in method.knobs) or "no knobs"
        raise MethodError(f"--method {method.name} does not take {flags} (it takes {accepted}).")
    missing = [k for k in method.required if k not in given]
    if missing:
        flags = ", ".join(KNOBS[k].flag for k in missing)
        raise MethodError(f"--method {method.name} needs {flags} ({method_help(method, settings)}).")
    try:
        return method.make_config(given, settings)
    except MethodError:
        raise
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


def calibrate_command(settings: RunSettings) -> str:
    """The ``calibrate`` command that measures a ratio table for runs with these settings."""
    family = _family(settings)
    tiny = bool(settings.get("tiny"))
    defaults = family.fill_options({}, tiny)
    words = ["python", "-m", "magcache_videosys", "calibrate", "--model", family.name]
    words += ["--steps", str(settings["num_steps"])] + (["--tiny"] if tiny else [])
    gen = family.generation
    for option in (*gen.options, *gen.weights):
        if settings.get(option.name, defaults[option.name]) != defaults[option.name]:
            words += [option.flag, str(settings[option.name])]
    table = f"{family.name}-{settings['num_steps']}steps.json"
    return shlex.join([*words, "--prompt", "A PROMPT", "--out", table])


_CALIBRATION_NOTE = {False: " (real weights, one prompt)", True: ""}


def _no_table(settings: RunSettings) -> MethodError:
    family = _family(settings)
    table = f"{family.name}-{settings['num_steps']}steps.json"
    note = _CALIBRATION_NOTE[bool(settings.get("tiny"))]
    return MethodError(
        f"no MagCache ratio table is published for {family.model_label(settings)}; measure one with "
        f"`{calibrate_command(settings)}`{note}, then use --method magcache --mag-ratios {table}."
    )


def _magcache_preset_name(speed: str, settings: RunSettings) -> str:
    name = _family(settings).magcache_preset(speed, settings)
    if name is None:
        raise _no_table(settings)
    return name


def _magcache_preset(speed: str) -> Method:
    def text(settings: RunSettings) -> str:
        return _preset_text(_magcache_preset_name(speed, settings))

    return Method(
        name=f"magcache-{speed}",
        help=f"MagCache, the model's {speed} preset (Open-Sora 1.2: {_preset_text(f'opensora-{speed}')})",
        make_config=lambda knobs, settings: MagCacheConfig.preset(_magcache_preset_name(speed, settings)),
        apply=enable_magcache,
        fixed_by=text,
        knob_method="magcache",
        meaning=lambda settings: _magcache_preset_meaning(speed, settings),
        plan=_magcache_plan,
        stats=_magcache_stats,
        config_dict=_magcache_dict,
    )


def _magcache_preset_meaning(speed: str, settings: RunSettings) -> str:
    family = _family(settings)
    name = family.magcache_preset(speed, settings)
    if name is None:
        return (
            f"not available: no MagCache ratio table is published for {family.model_label(settings)}; measure one "
            "with `python -m magcache_videosys calibrate`, then use --method magcache --mag-ratios TABLE"
        )
    return f"MagCache, {_preset_text(name)}"


def _magcache_explicit(knobs: Mapping[str, Any], settings: RunSettings) -> MagCacheConfig:
    fields = {KNOBS[k].field: v for k, v in knobs.items()}
    preset = _family(settings).magcache_preset("fast", settings)
    if preset is not None:
        return MagCacheConfig.preset(preset, **fields)
    if "mag_ratios" not in fields:
        raise _no_table(settings)
    return MagCacheConfig(**fields)


def _magcache_explicit_meaning(settings: RunSettings) -> str:
    preset = _family(settings).magcache_preset("fast", settings)
    if preset is not None:
        return f"MagCache with your knobs; those not given come from preset {preset}"
    d = MagCacheConfig(calibrate=True)
    return (
        f"MagCache with your knobs and --mag-ratios TABLE (required: no table is published for "
        f"{_family(settings).model_label(settings)}; calibrate measures one); threshold {d.threshold}, K "
        f"{d.max_skip_steps} and retention-ratio {d.retention_ratio} when not given"
    )


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


register(
    Method(
        "base",
        "the uncached model (the baseline every speedup is measured against)",
        lambda knobs, settings: None,
    )
)
for _speed in ("slow", "fast", "turbo"):
    register(_magcache_preset(_speed))
register(
    Method(
        name="magcache",
        help="MagCache with your knobs; those not given come from the model's fast preset (Open-Sora 1.2: "
        "opensora-fast); --mag-ratios is required where the model has none",
        make_config=_magcache_explicit,
        apply=enable_magcache,
        knobs=("threshold", "K", "retention_ratio", "mag_ratios", "ratio_power"),
        meaning=_magcache_explicit_meaning,
        plan=_magcache_plan,
        stats=_magcache_stats,
        config_dict=_magcache_dict,
    )
)
register(
    Method(
        name="magcache-calibrate",
        help=f"compute every step and record the magnitude ratios; writes {CALIBRATION_FILE} for --mag-ratios",
        make_config=lambda knobs, settings: MagCacheConfig(calibrate=True),
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


def _teacache_preset_name(speed: str, settings: RunSettings) -> str:
    family = _family(settings)
    name = family.teacache_preset(speed, settings)
    if name is None:
        raise MethodError(
            f"no TeaCache coefficients are published for {family.model_label(settings)} (TeaCache's rescaling "
            f"polynomial is fitted per model; published: {', '.join(sorted(teacache_coefficients()))}); use "
            "another --method."
        )
    return name


def _teacache_preset(speed: str) -> Method:
    def text(settings: RunSettings) -> str:
        return _teacache_text(_teacache_preset_name(speed, settings))

    return Method(
        name=f"teacache-{speed}",
        help=f"TeaCache (the paper's baseline), the model's {speed} preset (Open-Sora 1.2: "
        f"{_teacache_text(f'teacache-{speed}')})",
        make_config=lambda knobs, settings: TeaCacheConfig.preset(_teacache_preset_name(speed, settings)),
        apply=enable_teacache,
        fixed_by=text,
        knob_method="teacache",
        meaning=lambda settings: f"TeaCache (the paper's baseline), {text(settings)}",
        plan=lambda cfg, num_steps: None,  # decided from the data at every step
        stats=get_stats,
    )


def _teacache_explicit_meaning(settings: RunSettings) -> str:
    preset = _teacache_preset_name("slow", settings)
    return (
        f"TeaCache with your --threshold (required: the TeaCache repository's are 0.1 and 0.2) and --coefficients "
        f"(a shipped polynomial's name); the rest from preset {preset}"
    )


# --- PAB (VideoSys's own Pyramid Attention Broadcast) -----------------------------------------
# Its config is the family's PAB config class and the arguments that differ from VideoSys's
# defaults, so it is checked and recorded without importing VideoSys; every step runs the
# transformer.
def _pab_class(settings: RunSettings) -> str:
    family = _family(settings)
    name = family.pab_config_name(settings)
    if name is None:
        raise MethodError(f"VideoSys has no PAB config for {family.model_label(settings)}; use another --method.")
    return name


def _pab_ranges(fast: bool, settings: RunSettings) -> dict[str, int]:
    if not fast:
        return {}
    family = _family(settings)
    if family.pab_fast_ranges is None:
        raise MethodError(
            f"pab-fast is Open-Sora 1.2's setting (the ranges of VideoSys's eval/pab script); none is published for "
            f"{family.model_label(settings)}: use --method pab (VideoSys's {_pab_class(settings)})."
        )
    return dict(family.pab_fast_ranges)


def _enable_pab(videosys_config: Any, cfg: Mapping[str, Mapping[str, Any]]) -> None:
    from ..videosys_compat import import_videosys

    [(name, overrides)] = cfg.items()
    enable_pab(videosys_config, getattr(import_videosys(), name)(**overrides))


def _pab_meaning(fast: bool, settings: RunSettings) -> str:
    name = _pab_class(settings)
    defaults = _family(settings).pab_defaults.get(name, "its attention broadcast")
    if not fast:
        return f"PAB, VideoSys's default {name} ({defaults}); every step runs the transformer"
    ranges = ", ".join(f"{k.removesuffix('_range')} {v}" for k, v in _pab_ranges(True, settings).items())
    return f"PAB with ranges {ranges} (the fastest setting of VideoSys's eval/pab script), else VideoSys's defaults"


def _pab(name: str, fast: bool) -> Method:
    return Method(
        name=name,
        help=_pab_meaning(fast, default_settings(family_named(DEFAULT_MODEL))),
        make_config=lambda knobs, settings: {_pab_class(settings): _pab_ranges(fast, settings)},
        apply=_enable_pab,
        meaning=lambda settings: _pab_meaning(fast, settings),
        config_dict=lambda cfg: {name: dict(overrides) for name, overrides in cfg.items()},
    )


for _speed in ("slow", "fast"):
    register(_teacache_preset(_speed))
register(
    Method(
        name="teacache",
        help="TeaCache with your --threshold (required: the paper's are 0.1 and 0.2) and --coefficients; the rest "
        "from the model's slow preset (Open-Sora 1.2: teacache-slow)",
        make_config=lambda knobs, settings: TeaCacheConfig.preset(_teacache_preset_name("slow", settings), **knobs),
        apply=enable_teacache,
        knobs=("threshold", "coefficients"),
        required=("threshold",),
        meaning=_teacache_explicit_meaning,
        plan=lambda cfg, num_steps: None,
        stats=get_stats,
    )
)
register(_pab("pab", fast=False))
register(_pab("pab-fast", fast=True))


# --- a static schedule (a searched mask, or any mask written as a schedule file) ----------------
def _schedule_plan(cfg: StaticScheduleConfig, num_steps: int) -> list[int]:
    try:
        return cfg.computed_steps_for(num_steps)
    except ValueError as exc:
        raise MethodError(f"--method schedule: {exc}") from None


register(
    Method(
        name="schedule",
        help="a static skip mask from --schedule FILE (`magcache-videosys search` writes one, for any model); the "
        "run must have the mask's step count",
        make_config=lambda knobs, settings: StaticScheduleConfig.load(knobs["schedule"]),
        apply=enable_schedule,
        knobs=("schedule",),
        required=("schedule",),
        plan=_schedule_plan,
        stats=get_stats,
    )
)
