"""TeaCache: skip block-stack passes while the accumulated, rescaled change of the first block's
timestep-modulated input stays below a threshold.

Liu et al., "Timestep Embedding Tells: It's Time to Cache for Video Diffusion Model" (arXiv 2411.19108),
the baseline MagCache's paper compares with. It runs on the shared runtime (``hooks.py``); the
signal, block 0's modulated input, comes from the model's family (``models/``).

Unlike MagCache's, its schedule depends on the data: each step's decision reads one number from
the device (``.item()``), a host synchronisation per step.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Sequence

import torch
from torch import nn

from .hooks import BlockStackCache, get_cache
from .models import FAMILIES, UnsupportedModelError, find_family, teacache_coefficients
from .validation import check, check_num_steps, from_preset, is_real

METHOD = "TeaCache"

# Rescaling polynomials (highest power first) map the relative L1 change of the modulated input to
# an estimate of the change of the model output; each model family's file holds the published ones
# for its models (``ModelFamily.teacache_coefficients``).
#
# The TeaCache paper's Open-Sora 1.2 rows. They were made in bfloat16, VideoSys's default, where
# the reference's last-step test fires at the papers' size (see TeaCacheConfig): so the presets
# compute the last step.
PRESETS: dict[str, dict[str, Any]] = {
    "teacache-slow": dict(threshold=0.1, coefficients="opensora-v1.2", compute_last_step=True),
    "teacache-fast": dict(threshold=0.2, coefficients="opensora-v1.2", compute_last_step=True),
}


@dataclass(frozen=True)
class TeaCacheConfig:
    """TeaCache settings; every field is checked when the config is made.

    Step 0 of every run is computed and starts the sum at 0. From step 1 on, each step adds
    ``poly(|m_t - m_{t-1}|.mean() / |m_{t-1}|.mean())`` (``m``: block 0's modulated input, kept from
    every step, skipped ones included) and is skipped while the sum is below ``threshold``;
    otherwise it is computed and the sum restarts at 0.

    The reference meant to compute the first and last steps always, but tests it by comparing the
    model-dtype timestep with the int-truncated run list: in float32 only the first step matches
    (so the last step goes through the threshold, this class's default); in bfloat16 the last
    timestep rounds to an integer and matches too at 144p to 720p with 30 steps (143 at the
    papers' 480p, 51 frames), so it is computed (``compute_last_step=True``, the presets).

    Args:
        threshold: skip while the accumulated rescaled distance is below it (0 never skips: the
            Open-Sora polynomial stays above 0.048).
        coefficients: the rescaling polynomial, highest power first, or the name of a shipped one.
        compute_last_step: always compute the run's last step.
        num_steps: the run's step count; None follows each run (needed where calls do not say).
    """

    threshold: float = 0.1
    coefficients: Sequence[float] | str = "opensora-v1.2"
    compute_last_step: bool = False
    num_steps: int | None = None
    polynomial: tuple[float, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check(self.threshold, is_real, lambda v: v >= 0, "threshold must be a finite number >= 0")
        if not isinstance(self.compute_last_step, bool):
            raise ValueError(f"compute_last_step must be True or False, got {self.compute_last_step!r}.")
        check_num_steps(self.num_steps)
        object.__setattr__(self, "polynomial", _polynomial(self.coefficients))

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "TeaCacheConfig":
        """A named setting (``teacache-slow``, ``teacache-fast``), fields overridable."""
        return from_preset(cls, PRESETS, name, overrides)

    def replace(self, **changes: Any) -> "TeaCacheConfig":
        return replace(self, **changes)

    def rescale(self, distance: float) -> float:
        """The polynomial at ``distance``, by Horner's rule in float64 (as ``numpy.poly1d`` does)."""
        value = 0.0
        for c in self.polynomial:
            value = value * distance + c
        return value

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.init}
        if not isinstance(self.coefficients, str):
            data["coefficients"] = list(self.polynomial)
        return data


def _polynomial(coefficients: Any) -> tuple[float, ...]:
    if isinstance(coefficients, str):
        shipped = teacache_coefficients()
        if coefficients not in shipped:
            raise ValueError(
                f"unknown TeaCache coefficients {coefficients!r}; shipped: {', '.join(shipped)}, "
                "or give the polynomial's coefficients, highest power first."
            )
        return shipped[coefficients]
    try:
        values = tuple(coefficients)
    except TypeError:
        raise ValueError(
            f"coefficients must be a shipped name or a sequence of numbers, got {coefficients!r}."
        ) from None
    if not values or not all(is_real(c) for c in values):
        raise ValueError(f"coefficients must be one or more finite numbers, highest power first, got {coefficients!r}.")
    if not any(values):
        raise ValueError(
            "coefficients are all 0: nothing would accumulate and every step after the first would be skipped."
        )
    return tuple(float(c) for c in values)


class TeaCachePolicy:
    """TeaCache's per-transformer state: the accumulated distance and the last modulated input.

    ``signal`` returns block 0's modulated input from that block's call arguments; ``all_reduce``
    (optional) sums the two means over ranks that share one call, so every rank decides alike.
    """

    method = METHOD
    calibrating = False

    def __init__(
        self,
        config: TeaCacheConfig,
        signal: Callable[[tuple, dict], torch.Tensor],
        all_reduce: Callable[[torch.Tensor], None] | None = None,
    ) -> None:
        self.config = config
        self._signal = signal
        self._all_reduce = all_reduce
        self.begin_run(0)

    def begin_run(self, num_steps: int) -> None:
        self.last_step = num_steps - 1 if self.config.compute_last_step else -1
        self.accumulated = 0.0
        self.compared = 0.0
        self.previous: torch.Tensor | None = None

    def wants_skip(self, step: int, hidden: torch.Tensor, args: tuple, kwargs: dict) -> bool:
        current = self._signal(args, kwargs)
        previous, self.previous = self.previous, current
        if step == 0 or step == self.last_step or previous is None or previous.shape != current.shape:
            self.accumulated = self.compared = 0.0
            return False
        self.accumulated += self.config.rescale(self._relative_l1(current, previous))
        self.compared = self.accumulated
        if self.accumulated < self.config.threshold:
            return True
        self.accumulated = 0.0
        return False

    def _relative_l1(self, current: torch.Tensor, previous: torch.Tensor) -> float:
        # The one host transfer of the step; computed in the model's dtype, as the reference does.
        change, size = (current - previous).abs().mean(), previous.abs().mean()
        if self._all_reduce is not None:
            both = torch.stack((change, size))
            self._all_reduce(both)
            change, size = both
        return (change / size).item()

    def computed_anyway(self, step: int) -> None:
        self.accumulated = 0.0

    def step_error(self) -> float:
        return self.compared

    def observe_residual(self, step: int, residual: torch.Tensor) -> None:
        return None


def apply_teacache(module: nn.Module, config: TeaCacheConfig, pipeline: Any = None) -> BlockStackCache:
    """Install TeaCache on a transformer whose family gives the modulated input; returns its runtime
    (``pipeline`` as for :func:`~magcache_videosys.apply_magcache`)."""
    if not isinstance(config, TeaCacheConfig):
        raise TypeError(
            f"expected a TeaCacheConfig, got {type(config).__name__}; try TeaCacheConfig.preset('teacache-slow')."
        )
    family = find_family(module)
    binding = family.bind(module)
    if binding.modulated_input is None:
        raise UnsupportedModelError(
            f"TeaCache reads the first block's timestep-modulated input, which the {family.description} "
            f"family does not provide; TeaCache supports: "
            + "; ".join(f.description for f in FAMILIES if f.teacache_coefficients)
            + "."
        )
    return BlockStackCache(
        module,
        binding,
        lambda: TeaCachePolicy(config, binding.modulated_input, binding.all_reduce),
        config.num_steps,
        pipeline,
    )


def remove_teacache(module: nn.Module) -> None:
    """Undo :func:`apply_teacache`; a module without TeaCache is left as it is."""
    cache = get_cache(module)
    if cache is not None and cache.policy.method == METHOD:
        cache.detach()
