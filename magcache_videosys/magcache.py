"""MagCache: skip whole block-stack passes while the accumulated magnitude-ratio error stays small.

Ma et al., "MagCache: Fast Video Generation with Magnitude-Aware Cache" (arXiv 2506.09045).
This file holds the validated config and its presets, the per-run policy, and ``apply_magcache``;
the hooks are shared with the other methods (``hooks.py``), model knowledge is in ``models/``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields, replace
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .hooks import BlockStackCache, get_cache
from .models import find_family, magcache_presets
from .ratios import RESAMPLE_METHODS, RatioTable, load_ratio_table
from .schedule import MagCacheDecider, SchedulePlan, plan_schedule
from .validation import check, check_num_steps, from_preset, is_int, is_real

logger = logging.getLogger("magcache_videosys")

METHOD = "MagCache"

# The presets of the built-in model families (each family's file defines its own).
PRESETS: dict[str, dict[str, Any]] = magcache_presets()

_told_resampled: set[tuple[str, int, int]] = set()


@dataclass(frozen=True)
class MagCacheConfig:
    """MagCache settings; every field is checked when the config is made.

    Args:
        threshold: skip while the accumulated error ``sum |1 - prod(ratios)|`` stays at or below it.
        max_skip_steps: K, the most consecutive steps reusing one residual.
        retention_ratio: the first ``int(num_steps * retention_ratio)`` steps are always computed.
        mag_ratios: the per-step magnitude ratios, a sequence or the name of a shipped table
            (``python -m magcache_videosys ratios`` lists them) or a path to a table file.
        ratio_power: exponent applied to the ratios before use; None (the default) takes the table's
            own ``ratio_power``: 0.5 for the shipped Open-Sora 1.2 table (the reference's square-root
            smoothing), 1 for a table that states none and for a plain list of ratios.
        num_steps: the run's step count; None follows each run (tables are resampled to fit).
        calibrate: compute every step and record ratio, std and cosine distance instead of skipping.
        resample: how a table is fitted to another step count, ``nearest`` (reference) or ``linear``.
    """

    threshold: float = 0.12
    max_skip_steps: int = 3
    retention_ratio: float = 0.2
    mag_ratios: Sequence[float] | str | None = None
    ratio_power: float | None = None
    num_steps: int | None = None
    calibrate: bool = False
    resample: str = "nearest"
    table: RatioTable | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check(self.threshold, is_real, lambda v: v >= 0, "threshold must be a finite number >= 0")
        check(self.max_skip_steps, is_int, lambda v: v >= 0, "max_skip_steps (K) must be an integer >= 0")
        check(self.retention_ratio, is_real, lambda v: 0 <= v < 1, "retention_ratio must be in [0, 1)")
        if self.ratio_power is not None:
            check(
                self.ratio_power,
                is_real,
                lambda v: v > 0,
                "ratio_power must be a finite number > 0, or None for the table's own",
            )
        check_num_steps(self.num_steps)
        if self.resample not in RESAMPLE_METHODS:
            raise ValueError(f"resample must be one of {', '.join(RESAMPLE_METHODS)}, got {self.resample!r}.")
        if not isinstance(self.calibrate, bool):
            raise ValueError(f"calibrate must be True or False, got {self.calibrate!r}.")
        if self.mag_ratios is None:
            if not self.calibrate:
                raise ValueError(
                    "MagCacheConfig needs mag_ratios (a list, a shipped table name such as 'opensora-v1.2', "
                    "or a table file), or calibrate=True to measure them; or use "
                    "MagCacheConfig.preset('opensora-fast')."
                )
            return
        if isinstance(self.mag_ratios, (str, bytes)) or hasattr(self.mag_ratios, "__fspath__"):
            table = load_ratio_table(self.mag_ratios)
        elif isinstance(self.mag_ratios, RatioTable):
            table = self.mag_ratios
        else:
            table = RatioTable(ratios=tuple(self.mag_ratios), name="mag_ratios")
        object.__setattr__(self, "table", table)
        if self.num_steps is not None:
            self.ratios_for(self.num_steps)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "MagCacheConfig":
        """A named setting (``opensora-fast``, ``opensora-slow``, ``opensora-turbo``), fields overridable."""
        return from_preset(cls, magcache_presets(), name, overrides)

    def replace(self, **changes: Any) -> "MagCacheConfig":
        return replace(self, **changes)

    @property
    def effective_ratio_power(self) -> float:
        """The power applied: ``ratio_power`` when given, else the table's own (1 without a table)."""
        if self.ratio_power is not None:
            return self.ratio_power
        return self.table.ratio_power if self.table is not None else 1.0

    def ratios_for(self, num_steps: int) -> tuple[float, ...]:
        """The ratios the rule reads for a run of ``num_steps`` steps (resampled, then powered)."""
        if self.table is None:
            raise ValueError("this MagCacheConfig has no ratio table (calibrate=True without mag_ratios).")
        table = self.table
        if table.num_steps != num_steps:
            key = (table.name, table.num_steps, num_steps)
            if key not in _told_resampled:
                _told_resampled.add(key)
                logger.warning(
                    "MagCache: ratio table %r is for %d steps; resampled (%s) to this run's %d steps.",
                    table.name,
                    table.num_steps,
                    self.resample,
                    num_steps,
                )
            table = table.resample(num_steps, self.resample)
        return table.powered(self.ratio_power)

    def plan(self, num_steps: int | None = None) -> SchedulePlan:
        """The schedule this config executes for a run of ``num_steps`` steps (default: the table's)."""
        steps = num_steps or self.num_steps or (self.table.num_steps if self.table is not None else None)
        if steps is None:
            raise ValueError("give num_steps: this config has no ratio table to take it from.")
        if self.calibrate:
            return _all_computed(steps)
        return plan_schedule(self.ratios_for(steps), self.threshold, self.max_skip_steps, self.retention_ratio)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.init}
        data["ratio_power"] = self.effective_ratio_power  # what ran, whichever way it was chosen
        if self.table is not None:
            data["mag_ratios"] = self.table.name if isinstance(self.mag_ratios, str) else list(self.table.ratios)
        return data


def _all_computed(num_steps: int) -> SchedulePlan:
    return plan_schedule([1.0] * (num_steps - 1), 0.0, 0, 0.0)


class MagCachePolicy:
    """MagCache's per-transformer state: the skip rule of the current run, or calibration."""

    method = METHOD

    def __init__(self, config: MagCacheConfig) -> None:
        self.config = config
        self.calibrating = config.calibrate
        self.decider: MagCacheDecider | None = None
        self._deciders: dict[int, MagCacheDecider] = {}
        self.reset()

    def reset(self) -> None:
        """Forget everything run-specific."""
        self._prev: torch.Tensor | None = None
        self._prev_norm: torch.Tensor | None = None
        if self.decider is not None:
            self.decider.reset()

    def begin_run(self, num_steps: int) -> None:
        self.reset()
        if self.calibrating:
            return
        decider = self._deciders.get(num_steps)
        if decider is None:
            cfg = self.config
            decider = MagCacheDecider(cfg.ratios_for(num_steps), cfg.threshold, cfg.max_skip_steps, cfg.retention_ratio)
            self._deciders[num_steps] = decider
        decider.reset()
        self.decider = decider

    def wants_skip(self, step: int, hidden: torch.Tensor, args: tuple, kwargs: dict) -> bool:
        return not self.calibrating and self.decider.decide(step)

    def computed_anyway(self, step: int) -> None:
        self.decider.reset()

    def step_error(self) -> float:
        return 0.0 if self.calibrating else self.decider.seen_err

    def observe_residual(self, step: int, residual: torch.Tensor) -> Any:
        if not self.calibrating:
            return None
        current = residual.float()
        norm = current.norm(dim=-1)
        measured = None
        if self._prev is not None and self._prev.shape == current.shape:
            token_ratio = norm / self._prev_norm
            cosine = 1.0 - F.cosine_similarity(current, self._prev, dim=-1, eps=1e-8)
            measured = {"ratio": token_ratio.mean(), "ratio_std": token_ratio.std(), "cosine_distance": cosine.mean()}
        self._prev, self._prev_norm = current, norm
        return measured


def apply_magcache(module: nn.Module, config: MagCacheConfig, pipeline: Any = None) -> BlockStackCache:
    """Install MagCache on a transformer (any model of a known family); returns its runtime.

    ``pipeline``, the pipeline the transformer belongs to, lets runs be told apart by its
    scheduler where the transformer's calls do not say which run they belong to."""
    if not isinstance(config, MagCacheConfig):
        raise TypeError(
            f"expected a MagCacheConfig, got {type(config).__name__}; try MagCacheConfig.preset('opensora-fast')."
        )
    binding = find_family(module).bind(module)
    return BlockStackCache(module, binding, lambda: MagCachePolicy(config), config.num_steps, pipeline)


def remove_magcache(module: nn.Module) -> None:
    """Undo :func:`apply_magcache`; a module without MagCache is left as it is."""
    cache = get_cache(module)
    if cache is not None and cache.policy.method == METHOD:
        cache.detach()
