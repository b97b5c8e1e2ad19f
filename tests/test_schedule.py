"""The skip rule, checked against hand-derived schedules."""

import pytest

from magcache_videosys import MagCacheConfig
from magcache_videosys.schedule import MagCacheDecider, plan_schedule, reaching_target, sweep

FAST_SKIPS = [6, 7, 8, 10, 11, 12, 14, 15, 16, 18, 19, 20, 22, 23, 24, 26, 27, 28]


@pytest.mark.parametrize(
    "preset, skipped",
    [
        ("opensora-fast", FAST_SKIPS),
        ("opensora-slow", list(range(6, 30, 2))),
        ("opensora-turbo", [6, 7, 8, 9, 10, 12, 13, 14, 15, 16, 18, 19, 20, 21, 22, 24, 25, 26, 27, 28]),
    ],
)
def test_presets_reproduce_hand_derived_schedules(preset, skipped):
    plan = MagCacheConfig.preset(preset).plan()
    assert plan.num_steps == 30
    assert plan.skipped_steps == skipped
    assert plan.num_computed == 30 - len(skipped)
    assert plan.predicted_speedup == pytest.approx(30 / (30 - len(skipped)))


def test_toy_schedule_by_hand():
    # ratios 0.9: step 2 err 0.1 (skip), step 3 err 0.1 + 0.19 = 0.29 > 0.15 (compute), and so on.
    plan = plan_schedule([0.9] * 9, threshold=0.15, max_skip_steps=2, retention_ratio=0.2)
    assert plan.computed_steps == [0, 1, 3, 5, 7, 9]
    assert plan.skipped_steps == [2, 4, 6, 8]
    step2, step3 = plan.steps[2], plan.steps[3]
    assert step2.acc_ratio == pytest.approx(0.9) and step2.acc_err == pytest.approx(0.1)
    # A computed step reports what the rule compared before it reset.
    assert step3.acc_ratio == pytest.approx(0.81) and step3.acc_err == pytest.approx(0.29)


def test_k_limits_consecutive_skips():
    plan = plan_schedule([1.0] * 9, threshold=1.0, max_skip_steps=2, retention_ratio=0.0)
    assert plan.skipped_steps == [1, 2, 4, 5, 7, 8]


def test_ratios_above_one_count_as_error():
    # |1 - 1.1| accumulates like |1 - 0.9|: the error is absolute.
    up = plan_schedule([1.1] * 4, threshold=0.15, max_skip_steps=5, retention_ratio=0.0)
    down = plan_schedule([0.9] * 4, threshold=0.15, max_skip_steps=5, retention_ratio=0.0)
    assert up.skipped_steps == down.skipped_steps == [1, 3]


def test_step_zero_is_always_computed_and_k0_never_skips():
    assert plan_schedule([1.0] * 5, 10.0, 3, 0.0).computed_steps[0] == 0
    assert plan_schedule([1.0] * 5, 10.0, 0, 0.0).skipped_steps == []


def test_decider_resets_for_a_new_run_and_beyond_the_table():
    decider = MagCacheDecider([1.0] * 3, threshold=1.0, max_skip_steps=5, retention_ratio=0.0)
    assert [decider.decide(s) for s in range(4)] == [False, True, True, True]
    assert decider.decide(4) is False  # past the last step: computed, never an index error
    assert decider.acc_steps == 0


def test_plan_to_dict_matches_plan():
    data = MagCacheConfig.preset("opensora-fast").plan().to_dict()
    assert data["skipped_steps"] == FAST_SKIPS
    assert [s["step"] for s in data["steps"] if s["action"] == "skip"] == FAST_SKIPS
    assert data["num_computed"] == 12


def test_settings_reaching_a_target_come_closest_first_then_most_conservative():
    plans = sweep([0.99**0.5] * 29, [0.02, 0.06, 0.12], [1, 2, 3], [0.1, 0.2])
    best = [(p.num_computed, p.threshold, p.max_skip_steps, p.retention_ratio) for p in reaching_target(plans, 14)]
    assert all(passes <= 14 for passes, *_ in best) and len(best) == len({b[1:] for b in best})
    assert best[:3] == [(14, 0.02, 2, 0.2), (14, 0.02, 3, 0.2), (14, 0.06, 2, 0.2)]
    assert [b[0] for b in best] == sorted((b[0] for b in best), reverse=True)
    assert reaching_target(plans, 5) == []
