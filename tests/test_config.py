"""MagCacheConfig: presets, validation and table fitting."""

import logging

import pytest

from magcache_videosys import PRESETS, MagCacheConfig, RatioTableError


def test_fast_preset_is_the_reference_setting():
    cfg = MagCacheConfig.preset("opensora-fast")
    assert (cfg.threshold, cfg.max_skip_steps, cfg.retention_ratio, cfg.effective_ratio_power) == (0.12, 3, 0.2, 0.5)
    assert cfg.ratio_power is None  # the 0.5 is the shipped table's own
    assert cfg.table.name == "opensora-v1.2"
    assert cfg.ratios_for(30)[0] == pytest.approx(0.93359**0.5)
    assert set(PRESETS) == {"opensora-fast", "opensora-slow", "opensora-turbo"}
    slow, turbo = MagCacheConfig.preset("opensora-slow"), MagCacheConfig.preset("opensora-turbo")
    assert (slow.threshold, slow.max_skip_steps, turbo.threshold, turbo.max_skip_steps) == (0.06, 1, 0.24, 5)


def test_preset_overrides_and_to_dict():
    cfg = MagCacheConfig.preset("opensora-fast", threshold=0.2)
    assert cfg.threshold == 0.2 and cfg.max_skip_steps == 3
    data = cfg.to_dict()
    assert data["mag_ratios"] == "opensora-v1.2" and data["threshold"] == 0.2 and "table" not in data


def test_the_ratio_power_defaults_to_the_tables_own(tmp_path):
    path = tmp_path / "t.json"
    path.write_text('{"ratios": [0.81, 0.64], "ratio_power": 0.5}')
    assert MagCacheConfig(mag_ratios=str(path)).ratios_for(3) == pytest.approx((0.9, 0.8))
    assert MagCacheConfig(mag_ratios=str(path), ratio_power=1.0).ratios_for(3) == (0.81, 0.64)
    assert MagCacheConfig(mag_ratios=[0.81, 0.64]).effective_ratio_power == 1.0  # a list is used as given
    path.write_text('{"ratios": [0.81, 0.64]}')
    assert MagCacheConfig(mag_ratios=str(path)).ratios_for(3) == (0.81, 0.64)  # a table that states none: 1
    # a preset with another table, or a config given another table, follows that table's power
    fast_with_file = MagCacheConfig.preset("opensora-fast", mag_ratios=str(path))
    assert fast_with_file.effective_ratio_power == 1.0
    assert fast_with_file.replace(mag_ratios="opensora-v1.2").effective_ratio_power == 0.5
    assert MagCacheConfig.preset("opensora-fast").to_dict()["ratio_power"] == 0.5  # recorded as it ran


def test_sequence_ratios_are_accepted():
    cfg = MagCacheConfig(mag_ratios=[0.9] * 9, threshold=0.15, max_skip_steps=2)
    assert cfg.plan().skipped_steps == [2, 4, 6, 8]
    assert cfg.to_dict()["mag_ratios"] == [0.9] * 9


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(threshold=-0.1), "threshold must be a finite number >= 0"),
        (dict(threshold=float("nan")), "threshold must be a finite number >= 0"),
        (dict(max_skip_steps=-1), r"max_skip_steps \(K\) must be an integer >= 0"),
        (dict(max_skip_steps=2.5), r"max_skip_steps \(K\) must be an integer >= 0"),
        (dict(max_skip_steps=True), r"max_skip_steps \(K\) must be an integer >= 0"),
        (dict(retention_ratio=1.0), r"retention_ratio must be in \[0, 1\)"),
        (dict(retention_ratio=-0.1), r"retention_ratio must be in \[0, 1\)"),
        (dict(ratio_power=0), "ratio_power must be a finite number > 0"),
        (dict(num_steps=1), r"num_steps must be None \(follow the run\) or an int >= 2"),
        (dict(resample="cubic"), "resample must be one of nearest, linear"),
        (dict(calibrate="yes"), "calibrate must be True or False"),
    ],
)
def test_bad_knobs_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MagCacheConfig.preset("opensora-fast", **kwargs)


@pytest.mark.parametrize(
    "ratios, message",
    [
        ([], "is empty"),
        ([0.9, float("inf")], "every value must be positive finite"),
        ([0.9, float("nan")], "every value must be positive finite"),
        ("no-such-table", "unknown ratio table 'no-such-table'"),
    ],
)
def test_bad_ratio_tables_are_clear_errors(ratios, message):
    with pytest.raises(RatioTableError, match=message):
        MagCacheConfig(mag_ratios=ratios)


def test_missing_ratios_need_calibrate():
    with pytest.raises(ValueError, match="needs mag_ratios"):
        MagCacheConfig()
    cfg = MagCacheConfig(calibrate=True)
    assert cfg.plan(10).skipped_steps == []


def test_unknown_preset_and_field():
    with pytest.raises(ValueError, match="unknown MagCache preset 'fastest'; choose one of opensora-fast"):
        MagCacheConfig.preset("fastest")
    with pytest.raises(ValueError, match="unknown MagCacheConfig field"):
        MagCacheConfig.preset("opensora-fast", thresh=0.1)


def test_other_step_counts_resample_and_say_so_once(caplog):
    cfg = MagCacheConfig.preset("opensora-fast", threshold=0.1234)
    with caplog.at_level(logging.WARNING, logger="magcache_videosys"):
        first = cfg.ratios_for(47)
        second = cfg.ratios_for(47)
    told = [r for r in caplog.records if "resampled" in r.getMessage()]
    assert len(told) == 1 and "47 steps" in told[0].getMessage()
    assert first == second and len(first) == 46
    assert cfg.plan(47).num_steps == 47


def test_fixed_num_steps_must_fit():
    assert MagCacheConfig.preset("opensora-fast", num_steps=30).plan().num_steps == 30
