"""TeaCache without VideoSys: config validation, the skip rule on hand-checkable signals through the
shared runtime (a toy block stack whose family hands over a controlled "modulated input"), runs,
ranks, and the experiments registry entries."""

from __future__ import annotations

import pickle
from multiprocessing import get_context
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from pixart_helpers import tiny_pixart
from torch import nn

from magcache_videosys import (
    TEACACHE_PRESETS,
    MagCacheConfig,
    TeaCacheConfig,
    UnsupportedModelError,
    apply_magcache,
    apply_teacache,
    disable_teacache,
    enable_teacache,
    get_stats,
    remove_teacache,
)
from magcache_videosys.experiments.methods import MethodError, build_config, get_method
from magcache_videosys.hooks import get_cache
from magcache_videosys.models import FAMILIES, ModelFamily, StackBinding
from magcache_videosys.teacache import TeaCachePolicy

OPENSORA = (2.17546007e02, -1.18329252e02, 2.68662585e01, -4.59364272e-02, 4.84426240e-02)
# Signal levels: relative L1 changes 0.25, 0.2, 0, 1, 0.25, 0.2, 0 from step 1 on.
LEVELS = [1.0, 1.25, 1.5, 1.5, 3.0, 3.75, 4.5, 4.5]
IDENTITY = (1.0, 0.0)  # rescale(x) = x: the accumulated sum is the plain sum of the changes


class ToyBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, signal: torch.Tensor) -> torch.Tensor:
        return x + torch.tanh(self.lin(x))


class ToyDiT(nn.Module):
    """Blocks in a row; each call carries the run's timestep list and a signal for the binding."""

    def __init__(self, depth: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.ModuleList(ToyBlock() for _ in range(depth))

    def forward(self, x: torch.Tensor, signal: torch.Tensor, all_timesteps: list[int]) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, signal)
        return x


class ToyFamily(ModelFamily):
    name = "toy"
    description = "toy block stack"
    model_classes = ("ToyDiT",)

    def bind(self, module: nn.Module) -> StackBinding:
        return StackBinding(
            blocks=list(module.blocks),
            run_info=lambda args, kwargs: (kwargs["all_timesteps"], len(kwargs["all_timesteps"])),
            hidden_name="x",
            modulated_input=lambda args, kwargs: args[1],
        )


@pytest.fixture(autouse=True)
def toy_family():
    family = ToyFamily()
    FAMILIES.insert(0, family)
    yield
    FAMILIES.remove(family)


@torch.no_grad()
def sample(model: nn.Module, levels=LEVELS, stop_after: int | None = None) -> list[torch.Tensor]:
    """One run: step t feeds the signal ``levels[t]`` everywhere; returns every step's output."""
    run = list(range(len(levels)))  # a fresh list: a new run
    x = torch.linspace(-1, 1, 24).reshape(2, 3, 4)
    outs = []
    for step, level in enumerate(levels[:stop_after]):
        out = model(x, torch.full((2, 3, 4), level), all_timesteps=run)
        outs.append(out)
        x = 0.9 * x + 0.1 * out
    return outs


# --- config -----------------------------------------------------------------------------------
def test_presets_are_the_papers_open_sora_rows():
    slow, fast = TeaCacheConfig.preset("teacache-slow"), TeaCacheConfig.preset("teacache-fast")
    assert (slow.threshold, fast.threshold) == (0.1, 0.2)
    assert slow.polynomial == fast.polynomial == OPENSORA
    assert slow.compute_last_step and fast.compute_last_step
    # the other families' presets carry their names: teacache-slow|fast stay Open-Sora's
    assert {name for name in TEACACHE_PRESETS if name.count("-") == 1} == {"teacache-slow", "teacache-fast"}
    default = TeaCacheConfig()
    assert default.threshold == 0.1 and not default.compute_last_step and default.num_steps is None
    assert TeaCacheConfig.preset("teacache-fast", threshold=0.3).threshold == 0.3


def test_rescale_is_numpys_poly1d_bit_for_bit_and_never_below_0_048():
    cfg = TeaCacheConfig()
    reference = np.poly1d(list(OPENSORA))
    for x in (0.0, 0.00086, 0.01, 0.0371, 0.1, 0.25, 1.7):
        assert cfg.rescale(x) == float(reference(x))
    assert min(cfg.rescale(i / 10000) for i in range(30000)) > 0.048


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(threshold=-0.1), "threshold must be a finite number >= 0"),
        (dict(threshold=float("inf")), "threshold must be a finite number >= 0"),
        (dict(threshold="0.1"), "threshold must be a finite number >= 0"),
        (dict(threshold=True), "threshold must be a finite number >= 0"),
        (dict(coefficients=[]), "coefficients must be one or more finite numbers"),
        (dict(coefficients=[1.0, float("nan")]), "coefficients must be one or more finite numbers"),
        (dict(coefficients=[1.0, "2"]), "coefficients must be one or more finite numbers"),
        (dict(coefficients=[True, 0.5]), "coefficients must be one or more finite numbers"),
        (dict(coefficients=[0.0, 0]), "coefficients are all 0"),
        (dict(coefficients=3.0), "coefficients must be a shipped name or a sequence of numbers"),
        (dict(coefficients="wan-2.1"), "unknown TeaCache coefficients 'wan-2.1'; shipped: opensora-v1.2"),
        (dict(compute_last_step="yes"), "compute_last_step must be True or False"),
        (dict(num_steps=1), r"num_steps must be None \(follow the run\) or an int >= 2"),
        (dict(num_steps=30.0), r"num_steps must be None \(follow the run\) or an int >= 2"),
    ],
)
def test_bad_settings_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TeaCacheConfig(**kwargs)


def test_bad_preset_and_fields():
    with pytest.raises(ValueError, match="unknown TeaCache preset 'opensora-fast'; choose one of teacache-slow"):
        TeaCacheConfig.preset("opensora-fast")
    with pytest.raises(ValueError, match="unknown TeaCacheConfig field"):
        TeaCacheConfig.preset("teacache-slow", max_skip_steps=3)
    with pytest.raises(TypeError, match="expected a TeaCacheConfig, got MagCacheConfig"):
        apply_teacache(ToyDiT(), MagCacheConfig.preset("opensora-fast"))


def test_config_pickles_and_records():
    for cfg in (TeaCacheConfig.preset("teacache-fast"), TeaCacheConfig(threshold=0.5, coefficients=[0.5, 0.1])):
        again = pickle.loads(pickle.dumps(cfg))
        assert again == cfg and again.polynomial == cfg.polynomial
    assert TeaCacheConfig(coefficients=(2, 1)).to_dict() == {
        "threshold": 0.1,
        "coefficients": [2.0, 1.0],
        "compute_last_step": False,
        "num_steps": None,
    }
    assert TeaCacheConfig.preset("teacache-slow").to_dict()["coefficients"] == "opensora-v1.2"


# --- the rule, through the runtime ------------------------------------------------------------
def test_skip_rule_on_hand_checkable_signals():
    model = ToyDiT()
    enable_teacache(model, TeaCacheConfig(threshold=0.5, coefficients=IDENTITY))
    sample(model)
    stats = get_stats(model)
    # 0.25, +0.2 = 0.45, +0 = 0.45 stay below 0.5; +1 = 1.45 computes and restarts; 0.25, 0.45, 0.45.
    assert stats.computed_steps == [0, 4] and stats.skipped_steps == [1, 2, 3, 5, 6, 7]
    assert stats.acc_err == pytest.approx([0, 0.25, 0.45, 0.45, 1.45, 0.25, 0.45, 0.45])
    assert stats.complete and stats.speedup == 4.0


def test_rescaling_and_the_last_step_option():
    model = ToyDiT()
    cfg = TeaCacheConfig(threshold=0.5, coefficients=(0.5, 0.1))  # rescale(x) = 0.5 x + 0.1
    enable_teacache(model, cfg)
    sample(model)
    stats = get_stats(model)
    # 0.225, 0.425, then 0.525 computes; 0.6 computes; 0.225, 0.425, 0.525 computes.
    assert stats.computed_steps == [0, 3, 4, 7] and stats.skipped_steps == [1, 2, 5, 6]
    assert stats.acc_err == pytest.approx([0, 0.225, 0.425, 0.525, 0.6, 0.225, 0.425, 0.525])
    disable_teacache(model)
    enable_teacache(model, TeaCacheConfig(threshold=0.5, coefficients=IDENTITY, compute_last_step=True))
    sample(model)
    stats = get_stats(model)
    assert stats.computed_steps == [0, 4, 7] and stats.acc_err[7] == 0.0


def test_skipped_steps_add_the_last_computed_residual():
    model = ToyDiT()
    plain = sample(model)
    enable_teacache(model, TeaCacheConfig(threshold=0.5, coefficients=IDENTITY))
    cached = sample(model)
    xs = [torch.linspace(-1, 1, 24).reshape(2, 3, 4)]
    for out in cached[:-1]:
        xs.append(0.9 * xs[-1] + 0.1 * out)
    assert torch.equal(cached[0], plain[0])
    for step in (1, 2, 3):  # computed 0, skipped 1-3: step 0's residual, added once
        assert torch.equal(cached[step], xs[step] + (cached[0] - xs[0]))
    for step in (5, 6, 7):
        assert torch.equal(cached[step], xs[step] + (cached[4] - xs[4]))


def test_threshold_zero_never_skips_and_is_bitwise_identical():
    model = ToyDiT()
    plain = sample(model)
    enable_teacache(model, TeaCacheConfig(threshold=0.0))
    hooked = sample(model)
    assert get_stats(model).skipped_steps == []
    assert all(torch.equal(a, b) for a, b in zip(plain, hooked))
    remove_teacache(model)
    assert get_cache(model) is None and all(torch.equal(a, b) for a, b in zip(plain, sample(model)))


def test_each_run_starts_afresh_also_after_an_interrupted_one():
    model = ToyDiT()
    enable_teacache(model, TeaCacheConfig(threshold=0.5, coefficients=IDENTITY))
    first = sample(model)
    schedule = get_stats(model).skipped_steps
    sample(model, stop_after=3)  # an interrupted run: three steps, then a new run begins
    assert get_stats(model).steps_seen == 3
    again = sample(model)
    assert get_stats(model).skipped_steps == schedule
    assert all(torch.equal(a, b) for a, b in zip(first, again))


def test_a_new_shape_within_a_run_computes_and_restarts_the_sum():
    policy = TeaCachePolicy(TeaCacheConfig(threshold=0.5, coefficients=IDENTITY), lambda a, k: a[0])
    signals = [torch.full(shape, level) for shape, level in [((3,), 1.0), ((3,), 1.25), ((5,), 1.5), ((5,), 1.5)]]
    assert _decide(policy, signals) == [False, True, False, True]
    assert policy.step_error() == 0.0


def test_counted_steps_need_num_steps_and_honour_it():
    class Uncounted(ToyFamily):
        def bind(self, module):
            return StackBinding(
                blocks=list(module.blocks),
                run_info=lambda a, k: None,
                hidden_name="x",
                modulated_input=lambda a, k: a[1],
            )

    FAMILIES.insert(0, Uncounted())
    try:
        model = ToyDiT()
        enable_teacache(model, TeaCacheConfig(threshold=0.5, coefficients=IDENTITY, num_steps=8))
        sample(model)
        sample(model)
        assert get_stats(model).skipped_steps == [1, 2, 3, 5, 6, 7]
        disable_teacache(model)
        enable_teacache(model, TeaCacheConfig(threshold=0.5))
        with pytest.raises(RuntimeError, match="set num_steps in the TeaCache config"):
            sample(model)
    finally:
        FAMILIES.pop(0)


def test_one_cache_per_transformer_and_models_without_the_signal():
    model = ToyDiT()
    apply_magcache(model, MagCacheConfig(mag_ratios=[0.9] * 7))
    with pytest.raises(RuntimeError, match=r"MagCache is already enabled on this ToyDiT; call disable_magcache"):
        enable_teacache(model, "teacache-slow")
    with pytest.raises(TypeError, match="enable_teacache takes a TeaCacheConfig or a preset name, got float"):
        enable_teacache(ToyDiT(), 0.1)
    with pytest.raises(UnsupportedModelError, match="PixArt.*does not provide; TeaCache supports: Open-Sora 1.2"):
        enable_teacache(tiny_pixart(), "teacache-slow")


# --- ranks ------------------------------------------------------------------------------------
# Two ranks each see half of every call (as under sequence parallelism). Alone, each would decide
# differently; summed over both, they decide alike, as one process seeing the whole call does.
RANK_LEVELS = ([1.0, 1.25, 1.5, 1.5, 3.0], [1.0, 2.0, 2.0, 2.0, 2.0])
RANK_CONFIG = TeaCacheConfig(threshold=0.5, coefficients=IDENTITY)


def _decide(policy: TeaCachePolicy, signals: list[torch.Tensor]) -> list[bool]:
    policy.begin_run(len(signals))
    return [policy.wants_skip(step, signal, (signal,), {}) for step, signal in enumerate(signals)]


def _shard(rank: int) -> list[torch.Tensor]:
    return [torch.full((3,), level) for level in RANK_LEVELS[rank]]


def _rank_decisions(rank: int, init_method: str, queue) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=2)
    try:
        policy = TeaCachePolicy(RANK_CONFIG, lambda a, k: a[0], lambda values: dist.all_reduce(values))
        queue.put((rank, _decide(policy, _shard(rank))))
    finally:
        dist.destroy_process_group()


def test_ranks_that_split_a_call_decide_alike(tmp_path):
    alone = [_decide(TeaCachePolicy(RANK_CONFIG, lambda a, k: a[0]), _shard(rank)) for rank in (0, 1)]
    whole = _decide(TeaCachePolicy(RANK_CONFIG, lambda a, k: a[0]), [torch.cat(p) for p in zip(_shard(0), _shard(1))])
    assert alone == [[False, True, True, True, False], [False, False, True, True, True]]
    assert whole == [False, False, True, True, False]
    ctx = get_context("spawn")
    queue = ctx.Queue()
    init = f"file://{tmp_path / 'rendezvous'}"
    ranks = [ctx.Process(target=_rank_decisions, args=(rank, init, queue)) for rank in (0, 1)]
    for process in ranks:
        process.start()
    results = dict(queue.get(timeout=300) for _ in ranks)
    for process in ranks:
        process.join(timeout=60)
    assert results == {0: whole, 1: whole}


def test_stdit3_sums_over_its_sequence_and_cfg_groups(monkeypatch):
    from magcache_videosys.models.base import parallel_all_reduce  # what Open-Sora's binding uses

    calls = []
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda values, group: calls.append(group))
    manager = SimpleNamespace(sp_group="sp", cp_group=None)
    parallel_all_reduce(SimpleNamespace(parallel_manager=manager))(torch.zeros(2))
    manager.cp_group = "cp"
    parallel_all_reduce(SimpleNamespace(parallel_manager=manager))(torch.zeros(2))
    parallel_all_reduce(SimpleNamespace(parallel_manager=SimpleNamespace(sp_group=None, cp_group=None)))(torch.zeros(2))
    assert calls == ["sp", "sp", "cp"]


# --- experiments ------------------------------------------------------------------------------
def test_experiment_methods():
    slow = get_method("teacache-slow")
    assert build_config(slow, {}) == TeaCacheConfig.preset("teacache-slow")
    assert slow.plan(build_config(slow, {}), 30) is None
    assert build_config(get_method("teacache"), {"threshold": 0.3}) == TeaCacheConfig.preset(
        "teacache-slow", threshold=0.3
    )
    with pytest.raises(MethodError, match="--method teacache-fast is the preset teacache-fast.*use --method teacache"):
        build_config(get_method("teacache-fast"), {"threshold": 0.3})
    with pytest.raises(MethodError, match="--method teacache: threshold must be a finite number >= 0"):
        build_config(get_method("teacache"), {"threshold": -1.0})
    with pytest.raises(
        MethodError, match=r"--method teacache does not take --K \(it takes --threshold, --coefficients\)"
    ):
        build_config(get_method("teacache"), {"K": 2})
    pab, fast = get_method("pab"), get_method("pab-fast")
    assert pab.config_dict(build_config(pab, {})) == {"OpenSoraPABConfig": {}}
    assert fast.config_dict(build_config(fast, {})) == {
        "OpenSoraPABConfig": {"spatial_range": 5, "temporal_range": 7, "cross_range": 9}
    }
    with pytest.raises(MethodError, match=r"--method pab does not take --threshold \(it takes no knobs\)"):
        build_config(pab, {"threshold": 0.1})
