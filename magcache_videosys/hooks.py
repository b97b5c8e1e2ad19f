"""Block-stack caching runtime shared by every method.

One :class:`BlockStackCache` lives on one transformer instance. A forward pre-hook on the
transformer tells which sampling run, step and branch each call belongs to; thin forward wrappers on
the blocks either run them or, on a skipped step, pass the first block's input through the stack
untouched and add the cached residual once, at the last block. Methods only decide *whether* to
skip (a :class:`SkipPolicy`); model knowledge comes from a model family's :class:`StackBinding` (``models/``).

Which run a call belongs to comes, in this order, from the call itself (the binding's ``run_info``,
e.g. the ``all_timesteps`` list VideoSys's samplers pass), from the pipeline's scheduler (its
``timesteps`` tensor, which ``set_timesteps`` replaces at the start of every run), or, for a bare
transformer that tells nothing, from counting calls up to ``num_steps``. A step is one iteration of
the sampling loop; where CFG runs as separate calls, each call position of a step is a branch with
its own policy state and residual.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, Protocol

import torch
from torch import nn

from .models import StackBinding
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


class _Branch:
    """One call position of a step: its policy and its cached residual.

    ``residual`` holds minus the first block's input while the stack runs, then the residual; it is
    usable for a skip only when ``head_key`` (shape, dtype and device of the first block's input it
    was taken from) matches the current input.
    """

    def __init__(self, policy: SkipPolicy) -> None:
        self.policy = policy
        self.residual: torch.Tensor | None = None
        self.residual_ok = False
        self.head_key: tuple | None = None


class BlockStackCache:
    """Run tracking, the cached residuals, and the block wrappers for one transformer."""

    def __init__(
        self,
        module: nn.Module,
        binding: StackBinding,
        make_policy: Callable[[], SkipPolicy],
        num_steps: int | None,
        pipeline: Any = None,
    ) -> None:
        if getattr(module, CACHE_ATTR, None) is not None:
            other = getattr(module, CACHE_ATTR).policy.method
            raise RuntimeError(
                f"{other} is already enabled on this {type(module).__name__}; call "
                f"disable_{other.lower()}(...) first, then enable the new configuration."
            )
        self.module = module
        self.binding = binding
        self.branches = [_Branch(make_policy()) for _ in range(binding.calls_per_step)]
        self.num_steps = num_steps
        self._pipeline = weakref.ref(pipeline) if pipeline is not None else None
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

    @property
    def policy(self) -> SkipPolicy:
        """The policy of the first (or only) branch."""
        return self.branches[0].policy

    @property
    def residual(self) -> torch.Tensor | None:
        """The cached residual of the first (or only) branch."""
        return self.branches[0].residual

    # --- lifecycle -------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the current run: the next call starts a new one."""
        self.run_key: Any = _NO_RUN
        self.run_calls = 0
        self.call = -1
        self.step = -1
        self.current = self.branches[0]
        self.skipping = False
        self.head_ran = False
        self.head_in: torch.Tensor | None = None
        self.branch0_skipped = False
        for branch in self.branches:
            branch.residual_ok = False
        self.stats: RunStats | None = None

    def detach(self) -> None:
        """Remove every hook and wrapper and free the cached residuals."""
        self._pre_hook.remove()
        for block, previous in reversed(self._wrapped):
            if previous is _NO_FORWARD:
                del block.forward
            else:
                block.forward = previous
        self._wrapped.clear()
        for branch in self.branches:
            branch.residual = None
        if getattr(self.module, CACHE_ATTR, None) is self:
            delattr(self.module, CACHE_ATTR)

    def latest_stats(self) -> RunStats | None:
        """The run in progress if it has seen a step, else the last finished run."""
        if self.stats is not None and self.stats.steps_seen:
            return self.stats
        return self.last_stats

    # --- run tracking ----------------------------------------------------------------------
    def _scheduler_run(self) -> tuple[Any, int] | None:
        """The run as the pipeline's scheduler knows it: ``set_timesteps`` makes a new tensor."""
        pipeline = self._pipeline() if self._pipeline is not None else None
        timesteps = getattr(getattr(pipeline, "scheduler", None), "timesteps", None)
        if timesteps is None or len(timesteps) == 0:
            return None
        return timesteps, len(timesteps)

    def _on_call(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        info = self.binding.run_info(args, kwargs) or self._scheduler_run()
        if info is None:
            if self.num_steps is None:
                raise RuntimeError(
                    f"this {type(module).__name__} call does not say which sampling run it belongs to; set "
                    f"num_steps in the {self.policy.method} config so steps can be counted, or enable "
                    f"{self.policy.method} on the pipeline, whose scheduler tells."
                )
            key, steps = None, self.num_steps
        else:
            key, steps = info
            if self.num_steps is not None and steps != self.num_steps:
                raise ValueError(
                    f"{self.policy.method} is configured for num_steps={self.num_steps} but this sampling run "
                    f"has {steps} steps; set num_steps=None to follow the run, or match the sampler."
                )
        if key is not self.run_key or self.call + 1 >= self.run_calls:
            self._begin_run(key, steps)
        else:
            self.call += 1
        self.step, index = divmod(self.call, len(self.branches))
        self.current = self.branches[index]
        self.skipping = False
        self.head_ran = False

    def _begin_run(self, key: Any, steps: int) -> None:
        if self.stats is not None and self.stats.steps_seen:
            self.last_stats = self.stats
        self.run_key, self.run_calls, self.call = key, steps * len(self.branches), 0
        for branch in self.branches:
            branch.residual_ok = False
            branch.policy.begin_run(steps)
        self.stats = RunStats(method=self.policy.method, num_steps=steps, calibrating=self.policy.calibrating)

    # --- block wrappers --------------------------------------------------------------------
    def _wrap(self, block: nn.Module, wrapper: Callable[..., Any]) -> None:
        previous = block.__dict__.get("forward", _NO_FORWARD)
        forward = block.forward

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            return wrapper(forward, *args, **kwargs)

        block.forward = wrapped
        self._wrapped.append((block, previous))

    def _record(self, skip: bool) -> None:
        """Branch 0's decision goes into the run's statistics; other branches are checked against it."""
        stats, step = self.stats, self.step
        if self.current is self.branches[0]:
            self.branch0_skipped = skip
            (stats.skipped_steps if skip else stats.computed_steps).append(step)
            stats.acc_err.append(self.policy.step_error())
        elif skip != self.branch0_skipped and step not in stats.branch_disagreements:
            stats.branch_disagreements.append(step)

    def _restored(self, base: torch.Tensor, args: tuple, kwargs: dict) -> Any:
        """The last block's output on a skipped step: the stack's input plus the residual, once."""
        if self.binding.to_tail is not None:
            base = self.binding.to_tail(self.head_in, args, kwargs)
            self.head_in = None
        return self.binding.tail_output(args, kwargs, base + self.current.residual)

    def _head(self, forward: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        binding, branch = self.binding, self.current
        x = binding.hidden(args, kwargs)
        key = (x.shape, x.dtype, x.device)
        skip = branch.policy.wants_skip(self.step, x, args, kwargs)
        if skip and not (branch.residual_ok and branch.head_key == key):
            branch.policy.computed_anyway(self.step)
            skip = False
        self.skipping = skip
        self._record(skip)
        if skip:
            self.head_in = x if binding.to_tail is not None else None
            return self._restored(x, args, kwargs) if self._single else binding.skipped_output(args, kwargs)
        # The residual buffer starts as -input and receives the last output in place:
        # out + (-in) is bitwise out - in, and no second activation-sized tensor is held.
        r = branch.residual
        if self.policy.calibrating or r is None or (r.shape, r.dtype, r.device) != key:
            branch.residual = torch.neg(x)
        else:
            torch.neg(x, out=r)
        branch.residual_ok = False
        branch.head_key = key
        self.head_ran = True
        out = forward(*args, **kwargs)
        if self._single:
            self._finish(out, args, kwargs)
        return out

    def _middle(self, forward: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.skipping:
            return self.binding.skipped_output(args, kwargs)
        return forward(*args, **kwargs)

    def _tail(self, forward: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.skipping:
            return self._restored(self.binding.hidden(args, kwargs), args, kwargs)
        out = forward(*args, **kwargs)
        self._finish(out, args, kwargs)
        return out

    def _finish(self, out: Any, args: tuple, kwargs: dict) -> None:
        if not self.head_ran:
            return
        self.head_ran = False
        branch = self.current
        hidden = self.binding.output_hidden(out)
        minus_in = branch.residual
        if self.binding.to_tail is not None:
            branch.residual = torch.add(hidden, self.binding.to_tail(minus_in, args, kwargs))
        elif hidden.dtype == minus_in.dtype:
            minus_in.add_(hidden)
        else:
            branch.residual = torch.add(hidden, minus_in)
        branch.residual_ok = True
        measured = branch.policy.observe_residual(self.step, branch.residual)
        if measured is not None and branch is self.branches[0]:
            self.stats.add_measurement(measured)


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
