"""Fitting TeaCache's rescaling polynomial for a model, the way the TeaCache authors fit theirs.

TeaCache estimates how much the model output changes from one step to the next from how much the
first block's timestep-modulated input changes: both as relative L1 distances between consecutive
steps (``|a - b|.mean() / |b|.mean()``), mapped by a polynomial fitted with ``numpy.polyfit``
(degree 4) over the steps of uncached runs (the TeaCache repository's README, "Instructions for
Supporting Other Models", and its issues 18 and 20). :class:`ChangeRecorder` records those pairs
while a pipeline generates uncached; :func:`fit_polynomial` fits them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from .models import find_family

DEGREE = 4


def relative_l1(current: torch.Tensor, previous: torch.Tensor) -> float:
    """TeaCache's distance between two steps' tensors."""
    return float((current - previous).abs().mean() / previous.abs().mean())


@dataclass
class ChangeRecorder:
    """Hooks a transformer to record, per step after the first of each run, the relative L1 change of
    block 0's modulated input (``x``) and of the transformer's output (``y``). Call :meth:`new_run`
    before each video; :meth:`close` removes the hooks."""

    transformer: nn.Module
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        binding = find_family(self.transformer).bind(self.transformer)
        if binding.modulated_input is None:
            raise ValueError(
                f"{type(self.transformer).__name__}: its family gives no modulated input to fit TeaCache on."
            )
        signal = binding.modulated_input
        self._input: torch.Tensor | None = None
        self._output: torch.Tensor | None = None
        self._current: torch.Tensor | None = None

        def block_input(_: nn.Module, args: tuple, kwargs: dict) -> None:
            self._current = signal(args, kwargs).detach().float()

        def output(_: nn.Module, args: tuple, kwargs: dict, out: Any) -> None:
            out = (out[0] if isinstance(out, (tuple, list)) else getattr(out, "sample", out)).detach().float()
            if self._input is not None and self._output is not None:
                self.x.append(relative_l1(self._current, self._input))
                self.y.append(relative_l1(out, self._output))
            self._input, self._output = self._current, out

        self._hooks = [
            binding.blocks[0].register_forward_pre_hook(block_input, with_kwargs=True),
            self.transformer.register_forward_hook(output, with_kwargs=True),
        ]

    def new_run(self) -> None:
        """The next transformer call starts a new sampling run (nothing to compare it with)."""
        self._input = self._output = None

    def close(self) -> None:
        for hook in self._hooks:
            hook.remove()


def fit_polynomial(x: Sequence[float], y: Sequence[float], degree: int = DEGREE) -> tuple[float, ...]:
    """``numpy.polyfit(x, y, degree)``: the coefficients, highest power first (as TeaCacheConfig takes them)."""
    import numpy as np

    if len(x) != len(y) or len(x) <= degree:
        raise ValueError(f"a degree-{degree} fit needs more than {degree} (x, y) pairs of equal count, got {len(x)}.")
    return tuple(float(c) for c in np.polyfit(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), degree))
