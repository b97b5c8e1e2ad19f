"""Metric kernels fused by ``torch.compile`` on CPU, with a safe fallback to eager torch.

Eager torch runs each elementwise step of SSIM as its own pass over memory; inductor's C++
backend fuses them into a few vectorised OpenMP loops, about three times as fast on CPU
(``benchmarks/bench_metrics.py``). The fused kernels compute the same formulas in the same
precision as the eager code, and the tests hold both to the same references.

Compiling needs a working C++ compiler and takes seconds per frame size (inductor caches the
result on disk for later runs). Where it fails, a warning says why and every metric runs eagerly
for the rest of the process, with the same values. ``MAGCACHE_VIDEOSYS_COMPILE=0`` turns the fused
kernels off. On CUDA the eager code runs: the fused kernels have not been tried on a GPU.
"""

from __future__ import annotations

import os
import warnings
from typing import Callable

import torch

ENV_SWITCH = "MAGCACHE_VIDEOSYS_COMPILE"
_failure: list[str] = []  # why compiling failed in this process, once it has


class FusedKernel:
    """``fn`` compiled on first use, the leading (frames or planes) dimension of its tensors dynamic.

    Calling it returns None when compiling is unavailable, so the caller runs its eager path.
    """

    def __init__(self, fn: Callable[..., torch.Tensor]):
        self._fn = fn
        self._compiled: Callable[..., torch.Tensor] | None = None  # made on first use: importing dynamo takes seconds
        self._built: set[tuple] = set()

    def __call__(self, *args: torch.Tensor | float) -> torch.Tensor | None:
        if _failure:
            return None
        if self._compiled is None:
            self._compiled = torch.compile(self._fn)
        key = tuple((a.dtype, tuple(a.shape[1:])) if isinstance(a, torch.Tensor) else a for a in args)
        mark_dynamic = getattr(torch._dynamo, "maybe_mark_dynamic", None)  # absent from older torch
        for arg in args:
            if isinstance(arg, torch.Tensor) and mark_dynamic is not None:
                mark_dynamic(arg, 0)  # one kernel for every batch size
        if key in self._built:
            return self._compiled(*args)
        try:
            result = self._compiled(*args)
        except Exception as error:  # a first call compiles; inputs were checked, so this is the compiler
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            _failure.append(reason)
            warnings.warn(
                f"could not compile the fused CPU metric kernels ({reason}); computing the metrics with eager "
                f"torch instead, same values, about a third of the speed. Install a C++ compiler (g++) for the fast "
                f"kernels, or set {ENV_SWITCH}=0 to skip compiling.",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
        self._built.add(key)
        return result


def fused_enabled(device: torch.device | str) -> bool:
    """Whether metrics on ``device`` run fused kernels by default (until compiling fails)."""
    switched_off = os.environ.get(ENV_SWITCH, "1").strip() == "0"
    return torch.device(device).type == "cpu" and not switched_off and not _failure


def use_fused(tensor: torch.Tensor, fused: bool | None = None) -> bool:
    """Whether a metric on ``tensor`` tries its fused kernel: ``fused=None`` follows ``fused_enabled``;
    ``True`` compiles on CPU even when switched off by the environment; ``False`` never compiles."""
    if fused is False or tensor.device.type != "cpu" or _failure:
        return False
    return fused is True or fused_enabled(tensor.device)
