"""Block-stack caching runtime shared by every method.

One :class:`BlockStackCache` lives on one transformer instance. A forward pre-hook on the
transformer tells which sampling run and step each call belongs to; thin forward wrappers on the
blocks either run them or, on a skipped step, pass the first block's input through the stack
untouched and add the cached residual once, at the last block. Methods only decide *whether* to
skip (a :class:`SkipPolicy`); model knowledge comes from an adapter's :class:`StackBinding`.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import torch
from torch import nn

from .adapters import StackBinding
from .stats import RunStats

CACHE_ATTR = "_magcache_videosys_cache"


class SkipPolicy(Protocol):
    """The method-specific part: a skip rule and, optionally, per-step measurements."""

    method: str
    calibrating: bool

    def begin_run(self, num_steps: int) -> None:
        """A new sampling run of ``num_steps`` steps starts."""

    def wants_skip(self, step: int, hidden: torch.Tensor, args: tuple, kwargs: dict) -> bool:
        """Called at the first block of every step; True to reuse the cached residual."""

    def computed_anyway(self, step: int) -> None:
        """A skip the rule wanted could not happen (no usable residual); the step is computed."""

    def step_error(self) -> float:
        """The accumulated error the rule compared at the current step, for the statistics."""

    def observe_residual(self, step: int, residual: torch.Tensor) -> Any:
        """Called after each computed step; returns per-step measurements to keep, or None."""


class BlockStackCache:
    """Run tracking, the one cached residual, and the block wrappers for one transformer."""

    def __init__(self, module: nn.Module, binding: StackBinding, policy: SkipPolicy, num_steps: int | None) -> None:
        if getattr(module, CACHE_ATTR, None) is not None:
            other = getattr(module, CACHE_ATTR).policy.method
            raise RuntimeError(
                f"{other} is already enabled on this {type(module).__name__}; call "
                f"disable_{other.lower()}(...) first, then enable the new configuration."
            )
        self.module = module
        self.binding = binding
        self.policy = policy
        self.num_steps = num_steps
        self.residual: torch.Tensor | None = None
        self.last_stats: RunStats | None = None
        self.reset()
        self._wrapped: list[tuple[nn.Module, Any]] = []
        blocks = list(binding.blocks)
        self._single = len(blocks) == 1
        self._wrap(blocks[0], self._head)
        for block in blocks[1:-1]:
            self._wrap(block, self._middle)
        if not self._single:
            self._wrap(blocks[-1], self._tail)
        self._pre_hook = module.register_forward_pre_hook(self._on_call, with_kwargs=True)
        setattr(module, CACHE_ATTR, self)

    # --- lifecycle -------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the current run: the next call starts a new one."""
        self.run_key: Any = _NO_RUN
        self.run_steps = 0
        self.step = -1
        self.skipping = False
        self.head_ran = False
        self.residual_ok = False
        self.stats: RunStats | None = None

    def detach(self) -> None:
        """Remove every hook and wrapper and free the cached residual."""
        self._pre_hook.remove()
        for block, previous in reversed(self._wrapped):
            if previous is _NO_FORWARD:
                del block.forward
            else:
                block.forward = previous
        self._wrapped.clear()
        self.residual = None
        if getattr(self.module, CACHE_ATTR, None) is self:
            delattr(self.module, CACHE_ATTR)

    def latest_stats(self) -> RunStats | None:
        """The run in progress if it has seen a step, else the last finished run."""
        if self.stats is not None and self.stats.steps_seen:
            return self.stats
        return self.last_stats

    # --- run tracking ----------------------------------------------------------------------
    def _on_call(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        info = self.binding.run_info(args, kwargs)
        if info is None:
            if self.num_steps is None:
                raise RuntimeError(
                    f"this {type(module).__name__} call does not say which sampling run it belongs to; set "
                    f"num_steps in the {self.policy.method} config so steps can be counted."
                )
            key, steps = None, self.num_steps
        else:
            key, steps = info
            if self.num_steps is not None and steps != self.num_steps:
                raise ValueError(
                    f"{self.policy.method} is configured for num_steps={self.num_steps} but this sampling run "
                    f"has {steps} steps; set num_steps=None to follow the run, or match the sampler."
                )
        if key is not self.run_key or self.step + 1 >= self.run_steps:
            self._begin_run(key, steps)
        else:
            self.step += 1
        self.skipping = False
        self.head_ran = False

    def _begin_run(self, key: Any, steps: int) -> None:
        if self.stats is not None and self.stats.steps_seen:
            self.last_stats = self.stats
        self.run_key, self.run_steps, self.step = key, steps, 0
        self.residual_ok = False
        self.policy.begin_run(steps)
        self.stats = RunStats(method=self.policy.method, num_steps=steps, calibrating=self.policy.calibrating)

    # --- block wrappers --------------------------------------------------------------------
    def _wrap(self, block: nn.Module, wrapper: Callable[..., torch.Tensor]) -> None:
        previous = block.__dict__.get("forward", _NO_FORWARD)
        forward = block.forward

        def wrapped(*args: Any, **kwargs: Any) -> torch.Tensor:
            return wrapper(forward, *args, **kwargs)

        block.forward = wrapped
        self._wrapped.append((block, previous))

    def _residual_fits(self, x: torch.Tensor) -> bool:
        r = self.residual
        return self.residual_ok and r is not None and r.shape == x.shape and r.dtype == x.dtype and r.device == x.device

    def _head(self, forward: Callable[..., torch.Tensor], *args: Any, **kwargs: Any) -> torch.Tensor:
        x = self.binding.hidden(args, kwargs)
        step = self.step
        skip = self.policy.wants_skip(step, x, args, kwargs)
        if skip and not self._residual_fits(x):
            self.policy.computed_anyway(step)
            skip = False
        self.skipping = skip
        stats = self.stats
        (stats.skipped_steps if skip else stats.computed_steps).append(step)
        stats.acc_err.append(self.policy.step_error())
        if skip:
            return x + self.residual if self._single else x
        # The residual buffer starts as -input and receives the last output in place:
        # out + (-in) is bitwise out - in, and no second activation-sized tensor is held.
        r = self.residual
        if self.policy.calibrating or r is None or r.shape != x.shape or r.dtype != x.dtype or r.device != x.device:
            self.residual = torch.neg(x)
        else:
            torch.neg(x, out=r)
        self.residual_ok = False
        self.head_ran = True
        out = forward(*args, **kwargs)
        if self._single:
            self._finish(out)
        return out

    def _middle(self, forward: Callable[..., torch.Tensor], *args: Any, **kwargs: Any) -> torch.Tensor:
        if self.skipping:
            return self.binding.hidden(args, kwargs)
        return forward(*args, **kwargs)

    def _tail(self, forward: Callable[..., torch.Tensor], *args: Any, **kwargs: Any) -> torch.Tensor:
        if self.skipping:
            return self.binding.hidden(args, kwargs) + self.residual
        out = forward(*args, **kwargs)
        self._finish(out)
        return out

    def _finish(self, out: torch.Tensor) -> None:
        if not self.head_ran:
            return
        self.head_ran = False
        if out.dtype == self.residual.dtype:
            self.residual.add_(out)
        else:
            self.residual = torch.add(out, self.residual)
        self.residual_ok = True
        measured = self.policy.observe_residual(self.step, self.residual)
        if measured is not None:
            self.stats._measured.append(measured)


class _Sentinel:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


_NO_RUN = _Sentinel("<no run>")
_NO_FORWARD = _Sentinel("<class forward>")


def get_cache(module: nn.Module) -> BlockStackCache | None:
    """The caching runtime installed on ``module``, if any."""
    return getattr(module, CACHE_ATTR, None)
