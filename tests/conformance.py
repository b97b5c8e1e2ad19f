"""The conformance suite every model family passes, on the family's own tiny pipeline.

A family's test class inherits :class:`Conformance` and fills in the fixture layer (``family``,
``make_config``, ``make_pipeline``, ``generate``, ``teacache``, and for blocks that return several
streams ``other_streams`` / ``streams_on_skip``). Each test builds fresh pipelines (their own tiny
models, same weights every time), runs a few sampling steps and reads the final latent. A test that
does not apply to a family is switched off in its class by setting it to None, with the reason.

A step is one iteration of the pipeline's sampling loop (``len(scheduler.timesteps)`` of them;
PNDM's warm-up makes that more than the ``num_inference_steps`` asked for). Runs have ``steps``
steps (``STEPS`` unless the family says otherwise) and use a constant ratio table of matching
length, so the schedules are known by hand: at 6 steps ``skipping()`` computes steps 0 2 4 and skips
1 3 5, ``other()`` computes 0 3 and skips 1 2 4 5, and K = 0 (``never()``) computes everything.
"""

from __future__ import annotations

import importlib
import math
from typing import Any

import torch
from torch import nn

from magcache_videosys import (
    CachedPipeline,
    MagCacheConfig,
    TeaCacheConfig,
    UnsupportedModelError,
    disable_magcache,
    enable_magcache,
    enable_pab,
    enable_teacache,
    get_stats,
)
from magcache_videosys.hooks import CACHE_ATTR, get_cache
from magcache_videosys.models import ModelFamily, StackBinding

STEPS = 6
INTERRUPT_AT_CALL = 3  # mid-run: step 3, or step 1's second call where CFG runs as two calls


def skipping(steps: int = STEPS) -> MagCacheConfig:
    """A schedule that skips every other step after the retained ones."""
    return MagCacheConfig(mag_ratios=[0.9] * (steps - 1), threshold=0.15, max_skip_steps=2, retention_ratio=0.2)


def other(steps: int = STEPS) -> MagCacheConfig:
    """Another schedule: skips two steps in three."""
    return skipping(steps).replace(threshold=0.3, max_skip_steps=3)


def never(steps: int = STEPS) -> MagCacheConfig:
    """K = 0: computes every step."""
    return skipping(steps).replace(max_skip_steps=0)


class StackTrace:
    """Records, per transformer call, the first block's call, the last block's call and output,
    and whether the block stack ran (a submodule of a block after the first was called)."""

    def __init__(self, model: nn.Module, binding: StackBinding) -> None:
        self.heads: list[tuple[tuple, dict]] = []
        self.tails: list[tuple[tuple, dict, Any]] = []
        self.ran: list[bool] = []
        blocks = list(binding.blocks)
        self._handles = [
            model.register_forward_pre_hook(lambda m, a: self.ran.append(False)),
            blocks[0].register_forward_pre_hook(lambda m, a, k: self.heads.append(_cloned((a, k))), with_kwargs=True),
            blocks[-1].register_forward_hook(
                lambda m, a, k, out: self.tails.append(_cloned((a, k, out))), with_kwargs=True
            ),
        ]
        # TeaCache's signal calls the first block's norm on every step: watch the blocks after it.
        for block in blocks[1:] or blocks:
            for child in block.children():
                self._handles.append(child.register_forward_pre_hook(self._body_ran))

    def _body_ran(self, module: nn.Module, args: tuple) -> None:
        self.ran[-1] = True

    def ran_steps(self, calls_per_step: int, branch: int = 0) -> list[int]:
        """The steps whose block stack ran, for one call position (branch) of each step."""
        return [call // calls_per_step for call, ran in enumerate(self.ran) if ran and call % calls_per_step == branch]

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def _cloned(value: Any) -> Any:
    if torch.is_tensor(value):
        return value.clone()
    if isinstance(value, (tuple, list)):
        return type(value)(_cloned(v) for v in value)
    if isinstance(value, dict):
        return {k: _cloned(v) for k, v in value.items()}
    return value


def reset_pab_manager() -> None:
    """VideoSys keeps the latest PAB pipeline's settings in a process-wide manager that every
    pipeline built later reads; forget them."""
    for name in ("videosys.core.pab.pab_mgr", "videosys.core.pab_mgr"):  # upstream, the older copy
        try:
            importlib.import_module(name).PAB_MANAGER = None
        except ModuleNotFoundError:
            continue


class Conformance:
    """The tests; the fixture layer below is the family's part."""

    family: ModelFamily
    #: Steps (sampling-loop iterations) of every run.
    steps: int = STEPS
    #: A TeaCache config that skips some steps and computes others on the tiny model; None where
    #: the family gives no TeaCache signal.
    teacache: TeaCacheConfig | None = None

    def make_config(self) -> Any:
        """The family's VideoSys config, set for ``steps`` steps where the config holds the count."""
        raise NotImplementedError

    def make_pipeline(self, config: Any = None) -> Any:
        """A fresh tiny pipeline with its own models (same weights every time), built from ``config``."""
        raise NotImplementedError

    def generate(self, pipeline: Any, seed: int = 0, decode: bool = False) -> tuple[torch.Tensor, Any]:
        """One sampling run of ``steps`` steps: the final latent and, with ``decode``, the video."""
        raise NotImplementedError

    def other_streams(self, out: Any) -> tuple:
        """The streams other than the hidden one in a last block's output."""
        return ()

    def streams_on_skip(self, head_args: tuple, head_kwargs: dict) -> tuple:
        """What :meth:`other_streams` must be on a skipped step, from the first block's call."""
        return ()

    # --- helpers ----------------------------------------------------------------------------------
    def transformer(self, pipeline: Any) -> nn.Module:
        return pipeline.transformer

    def binding(self, pipeline: Any) -> StackBinding:
        cache = get_cache(self.transformer(pipeline))
        return cache.binding if cache is not None else self.family.bind(self.transformer(pipeline))

    def traced(self, pipeline: Any, seed: int = 0) -> tuple[torch.Tensor, StackTrace]:
        trace = StackTrace(self.transformer(pipeline), self.binding(pipeline))
        try:
            latent, _ = self.generate(pipeline, seed)
        finally:
            trace.remove()
        return latent, trace

    # --- the tests ------------------------------------------------------------------------------
    def test_the_schedules_are_non_trivial_at_this_step_count(self):
        plans = [config(self.steps).plan(self.steps) for config in (skipping, other)]
        assert all(plan.skipped_steps and len(plan.computed_steps) > 1 for plan in plans)
        assert plans[0].skipped_steps != plans[1].skipped_steps

    def test_never_skipping_is_bitwise_plain_videosys(self):
        pipeline = self.make_pipeline()
        plain, plain_video = self.generate(pipeline, decode=True)
        enable_magcache(pipeline, never(self.steps))
        hooked, hooked_video = self.generate(pipeline, decode=True)
        stats = get_stats(pipeline)
        assert stats.complete and stats.num_steps == self.steps and stats.skipped_steps == []
        assert torch.equal(plain, hooked) and torch.equal(plain_video, hooked_video)

    def test_skipped_step_restores_every_stream_once(self):
        pipeline = self.make_pipeline()
        config = skipping(self.steps)
        enable_magcache(pipeline, config)
        binding = self.binding(pipeline)
        cps = binding.calls_per_step
        _, trace = self.traced(pipeline)
        skipped = get_stats(pipeline).skipped_steps
        assert skipped == config.plan(self.steps).skipped_steps
        after_computed = [step for step in skipped if step - 1 not in skipped]
        assert after_computed
        for step in after_computed:
            for branch in range(cps):
                now, before = step * cps + branch, (step - 1) * cps + branch
                assert trace.ran[before] and not trace.ran[now], "the block stack ran on a skipped step"
                base_now, base_before = (self._base(binding, trace, call) for call in (now, before))
                hidden_now = binding.output_hidden(trace.tails[now][2])
                hidden_before = binding.output_hidden(trace.tails[before][2])
                residual = hidden_before - base_before
                assert residual.abs().max() > 0
                assert torch.equal(hidden_now, base_now + residual)  # added once, to the stack's input
                expected = self.streams_on_skip(*trace.heads[now])
                assert _same(self.other_streams(trace.tails[now][2]), expected)

    @staticmethod
    def _base(binding: StackBinding, trace: StackTrace, call: int) -> torch.Tensor:
        """The first block's input of a call, in the last block's output layout."""
        head_args, head_kwargs = trace.heads[call]
        x = binding.hidden(head_args, head_kwargs)
        if binding.to_tail is None:
            return x
        tail_args, tail_kwargs, _ = trace.tails[call]
        return binding.to_tail(x, tail_args, tail_kwargs)

    def test_executed_schedule_is_the_plan_on_every_branch(self):
        pipeline = self.make_pipeline()
        config = skipping(self.steps)
        enable_magcache(pipeline, config)
        _, trace = self.traced(pipeline)
        stats, plan = get_stats(pipeline), config.plan(self.steps)
        assert stats.complete and stats.num_steps == self.steps
        assert stats.computed_steps == plan.computed_steps and stats.skipped_steps == plan.skipped_steps
        cache = get_cache(self.transformer(pipeline))
        cps = cache.binding.calls_per_step
        assert len(trace.ran) == self.steps * cps and len(cache.branches) == cps
        assert [trace.ran_steps(cps, b) for b in range(cps)] == [plan.computed_steps] * cps
        assert stats.branch_disagreements == []
        residuals = {id(branch.residual) for branch in cache.branches}
        assert len(residuals) == cps and all(branch.residual is not None for branch in cache.branches)

    def test_interrupted_run_then_a_clean_run_gets_the_full_schedule(self):
        pipeline = self.make_pipeline()
        config = skipping(self.steps)
        enable_magcache(pipeline, config)
        reference, _ = self.generate(pipeline, seed=3)
        calls = []

        def interrupt(module: nn.Module, args: tuple) -> None:
            calls.append(1)
            if len(calls) == INTERRUPT_AT_CALL + 1:
                raise KeyboardInterrupt("user pressed Ctrl-C")

        handle = self.transformer(pipeline).register_forward_pre_hook(interrupt)
        try:
            self.generate(pipeline, seed=3)
        except KeyboardInterrupt:
            pass
        else:
            raise AssertionError("the run was not interrupted")
        finally:
            handle.remove()
        assert not get_stats(pipeline).complete
        again, _ = self.generate(pipeline, seed=3)
        stats = get_stats(pipeline)
        assert stats.complete and stats.skipped_steps == config.plan(self.steps).skipped_steps
        assert torch.equal(again, reference)

    def test_two_pipelines_in_one_process_keep_their_own_state(self):
        first, second = self.make_pipeline(), self.make_pipeline()
        configs = skipping(self.steps), other(self.steps)
        enable_magcache(first, configs[0])
        enable_magcache(second, configs[1])
        latents = []
        for _ in range(2):
            latents.append(self.generate(first)[0])
            assert get_stats(first).skipped_steps == configs[0].plan(self.steps).skipped_steps
            self.generate(second)
            assert get_stats(second).skipped_steps == configs[1].plan(self.steps).skipped_steps
        assert torch.equal(latents[0], latents[1])
        ours, theirs = (get_cache(self.transformer(p)) for p in (first, second))
        assert ours.residual is not theirs.residual

    def test_disable_restores_the_model_exactly(self):
        pipeline = self.make_pipeline()
        model = self.transformer(pipeline)
        plain, plain_video = self.generate(pipeline, decode=True)
        hooks = dict(model._forward_pre_hooks)
        enable_magcache(pipeline, skipping(self.steps))
        cached, _ = self.generate(pipeline)
        assert not torch.equal(cached, plain)
        disable_magcache(pipeline)
        again, again_video = self.generate(pipeline, decode=True)
        assert torch.equal(again, plain) and torch.equal(again_video, plain_video)
        assert get_cache(model) is None and not hasattr(model, CACHE_ATTR)
        assert dict(model._forward_pre_hooks) == hooks
        assert all("forward" not in block.__dict__ for block in self.family.bind(model).blocks)

    def test_calibration_records_finite_positive_ratios_for_every_step(self):
        pipeline = self.make_pipeline()
        plain, _ = self.generate(pipeline)
        enable_magcache(pipeline, MagCacheConfig(calibrate=True))
        calibrated, _ = self.generate(pipeline)
        stats = get_stats(pipeline)
        assert stats.calibrating and stats.complete and stats.skipped_steps == []
        assert torch.equal(calibrated, plain)
        measured = stats.measured
        assert sorted(measured) == ["cosine_distance", "ratio", "ratio_std"]
        assert all(len(values) == self.steps - 1 for values in measured.values())
        assert all(math.isfinite(r) and r > 0 for r in measured["ratio"])
        assert all(math.isfinite(s) and s >= 0 for s in measured["ratio_std"])
        assert all(0 <= c <= 2 for c in measured["cosine_distance"])

    def test_teacache_runs_and_its_statistics_say_what_ran(self):
        pipeline = self.make_pipeline()
        if self.teacache is None:
            try:
                enable_teacache(pipeline, TeaCacheConfig())
            except UnsupportedModelError as exc:
                assert "TeaCache reads the first block's timestep-modulated input" in str(exc)
                return
            raise AssertionError("TeaCache was enabled on a family without a signal")
        enable_teacache(pipeline, self.teacache)
        latent, trace = self.traced(pipeline)
        stats = get_stats(pipeline)
        cps = self.binding(pipeline).calls_per_step
        assert stats.method == "TeaCache" and stats.complete and torch.isfinite(latent).all()
        assert trace.ran_steps(cps) == stats.computed_steps
        assert stats.skipped_steps and len(stats.computed_steps) > 1, "choose a threshold that skips some steps"
        for branch in range(1, cps):
            assert set(trace.ran_steps(cps, branch)) ^ set(stats.computed_steps) == set(stats.branch_disagreements)

    def test_enabled_on_the_config_every_rank_builds_it_in(self):
        config = self.make_config()
        magcache = skipping(self.steps)
        enable_magcache(config, magcache)
        assert isinstance(config.pipeline_cls, CachedPipeline) and config.enable_magcache
        pipeline = self.make_pipeline(config)
        self.generate(pipeline)
        assert get_stats(pipeline).skipped_steps == magcache.plan(self.steps).skipped_steps

    def test_pab_runs(self):
        plain, _ = self.generate(self.make_pipeline())
        config = enable_pab(self.make_config())
        assert type(config.pab_config) is type(self.family.default_pab_config(config))
        try:
            broadcast, _ = self.generate(self.make_pipeline(config))
        finally:
            reset_pab_manager()
        assert torch.isfinite(broadcast).all() and not torch.equal(broadcast, plain)


def _same(got: tuple, expected: tuple) -> bool:
    return len(got) == len(expected) and all(
        (g is None and e is None) or (g is not None and e is not None and torch.equal(g, e))
        for g, e in zip(got, expected)
    )
