"""The block-stack hooks on a real third-party DiT (diffusers PixArt), without VideoSys."""

import pytest
import torch
from pixart_helpers import sample, tiny_pixart

from magcache_videosys import (
    MagCacheConfig,
    UnsupportedModelError,
    apply_magcache,
    disable_magcache,
    enable_magcache,
    get_stats,
    remove_magcache,
)
from magcache_videosys.hooks import CACHE_ATTR, get_cache

STEPS = 10
SKIPPING = MagCacheConfig(
    mag_ratios=[0.9] * (STEPS - 1), threshold=0.15, max_skip_steps=2, retention_ratio=0.2, num_steps=STEPS
)
NEVER = MagCacheConfig(
    mag_ratios=[0.9] * (STEPS - 1), threshold=0.0, max_skip_steps=3, retention_ratio=0.0, num_steps=STEPS
)


def test_never_skipping_is_bitwise_identical():
    model = tiny_pixart()
    plain = sample(model, STEPS)
    enable_magcache(model, NEVER)
    hooked = sample(model, STEPS)
    assert torch.equal(plain, hooked)
    assert get_stats(model).skipped_steps == []


def test_skips_follow_the_plan_and_change_the_output():
    model = tiny_pixart()
    plain = sample(model, STEPS)
    enable_magcache(model, SKIPPING)
    cached = sample(model, STEPS)
    stats = get_stats(model)
    assert stats.skipped_steps == [2, 4, 6, 8] == SKIPPING.plan().skipped_steps
    assert stats.computed_steps == [0, 1, 3, 5, 7, 9]
    assert stats.complete and stats.speedup == pytest.approx(10 / 6)
    assert stats.acc_err[2] == pytest.approx(0.1) and stats.acc_err[3] == pytest.approx(0.29)
    assert not torch.equal(plain, cached)
    assert (plain - cached).abs().max() < 10 * plain.abs().max()


def test_skipped_step_adds_the_cached_residual_exactly_once():
    model = tiny_pixart(num_layers=4)
    enable_magcache(model, SKIPPING)
    blocks = model.transformer_blocks
    seen = {}
    blocks[0].register_forward_pre_hook(lambda m, a, k: seen.__setitem__("in", a[0]), with_kwargs=True)
    blocks[-1].register_forward_hook(lambda m, a, out: seen.__setitem__("out", out))
    middles = []
    for b in blocks[1:-1]:
        b.register_forward_hook(lambda m, a, out: middles.append(out is a[0]))
    residuals = {}

    def record(step):
        if "in" in seen:
            residuals[step - 1] = (seen["in"], seen["out"])

    sample(model, STEPS, before_step=record)
    x1, out1 = residuals[1]  # step 1 computed, step 2 skipped
    x2, out2 = residuals[2]
    assert torch.equal(out2, x2 + (out1 - x1))
    # Middle blocks pass the input through untouched on skipped steps only.
    assert middles.count(True) == 4 * len(blocks[1:-1])


def test_second_run_repeats_the_schedule_and_output():
    model = tiny_pixart()
    enable_magcache(model, SKIPPING)
    first = sample(model, STEPS)
    second = sample(model, STEPS)
    assert torch.equal(first, second)
    assert get_stats(model).skipped_steps == [2, 4, 6, 8]


def test_batch_of_prompts_with_cfg():
    model = tiny_pixart()
    enable_magcache(model, SKIPPING)
    out = sample(model, STEPS, batch=3)
    assert out.shape[0] == 3 and torch.isfinite(out).all()
    assert get_stats(model).skipped_steps == [2, 4, 6, 8]
    assert get_cache(model).residual.shape[0] == 6  # [cond x3, uncond x3] share one residual


def test_activation_shape_change_computes_instead_of_crashing():
    model = tiny_pixart()
    cfg = MagCacheConfig(mag_ratios=[1.0] * 3, threshold=1.0, max_skip_steps=3, retention_ratio=0.0, num_steps=4)
    enable_magcache(model, cfg)
    sizes = iter([8, 8, 16, 16])

    def call(size):
        x = torch.randn(2, 4, size, size)
        return model(
            x,
            encoder_hidden_states=torch.randn(2, 5, 12),
            timestep=torch.tensor([500.0, 500.0]),
            added_cond_kwargs={"resolution": None, "aspect_ratio": None},
            return_dict=False,
        )[0]

    with torch.no_grad():
        outs = [call(next(sizes)) for _ in range(4)]
    stats = get_stats(model)
    assert stats.computed_steps == [0, 2] and stats.skipped_steps == [1, 3]
    assert outs[2].shape[-1] == 16


def test_disable_restores_the_model_exactly():
    model = tiny_pixart()
    plain = sample(model, STEPS)
    enable_magcache(model, SKIPPING)
    sample(model, STEPS)
    disable_magcache(model)
    assert not hasattr(model, CACHE_ATTR)
    assert all("forward" not in b.__dict__ for b in model.transformer_blocks)
    assert len(model._forward_pre_hooks) == 0
    assert torch.equal(sample(model, STEPS), plain)
    disable_magcache(model)  # disabling again is a no-op


def test_enabling_twice_is_an_error_that_says_what_to_do():
    model = tiny_pixart()
    enable_magcache(model, SKIPPING)
    already = r"MagCache is already enabled on this PixArtTransformer2DModel; call disable_magcache"
    with pytest.raises(RuntimeError, match=already):
        enable_magcache(model, NEVER)
    remove_magcache(model)
    apply_magcache(model, NEVER)  # after removal a new config goes on


def test_two_models_keep_separate_state():
    a, b = tiny_pixart(seed=1), tiny_pixart(seed=2)
    enable_magcache(a, SKIPPING)
    enable_magcache(b, NEVER)
    sample(a, STEPS)
    sample(b, STEPS)
    assert get_stats(a).skipped_steps == [2, 4, 6, 8] and get_stats(b).skipped_steps == []
    assert get_cache(a).residual.data_ptr() != get_cache(b).residual.data_ptr()


def test_one_residual_buffer_is_reused_across_steps():
    model = tiny_pixart()
    enable_magcache(model, SKIPPING)
    pointers = set()
    sample(model, STEPS, before_step=lambda i: i and pointers.add(get_cache(model).residual.data_ptr()))
    assert len(pointers) == 1


def test_counting_steps_needs_num_steps():
    model = tiny_pixart()
    enable_magcache(model, MagCacheConfig(mag_ratios=[0.9] * 9, threshold=0.15))
    with pytest.raises(RuntimeError, match="set num_steps in the MagCache config"):
        sample(model, STEPS)


def test_calibration_records_ratios_that_drive_a_run(tmp_path):
    from magcache_videosys import RatioTable, load_ratio_table

    model = tiny_pixart()
    enable_magcache(model, MagCacheConfig(calibrate=True, num_steps=STEPS))
    sample(model, STEPS)
    stats = get_stats(model)
    assert stats.skipped_steps == [] and stats.calibrating
    ratios, std, cos = (stats.measured[k] for k in ("ratio", "ratio_std", "cosine_distance"))
    assert len(ratios) == len(std) == len(cos) == STEPS - 1
    assert all(r > 0 for r in ratios) and all(s >= 0 for s in std) and all(0 <= c <= 2 for c in cos)
    path = RatioTable(ratios=ratios, std=std, cosine_distance=cos, name="pixart-tiny").save(tmp_path / "t.json")
    disable_magcache(model)
    cfg = MagCacheConfig(mag_ratios=str(path), threshold=0.3, max_skip_steps=2, num_steps=STEPS)
    assert load_ratio_table(path).ratios == pytest.approx(ratios)
    enable_magcache(model, cfg)
    sample(model, STEPS)
    assert get_stats(model).skipped_steps == cfg.plan().skipped_steps


def test_unsupported_targets_name_the_supported_models():
    with pytest.raises(UnsupportedModelError, match=r"cannot hook a Linear.*STDiT3.*PixArt"):
        enable_magcache(torch.nn.Linear(2, 2), SKIPPING)
    with pytest.raises(UnsupportedModelError, match="expected a VideoSys config, engine or pipeline"):
        enable_magcache(object(), SKIPPING)
    with pytest.raises(TypeError, match="takes a MagCacheConfig or a preset name"):
        enable_magcache(tiny_pixart(), {"threshold": 0.1})
    with pytest.raises(RuntimeError, match="no caching method is enabled"):
        get_stats(tiny_pixart())


def test_preset_name_is_accepted():
    model = tiny_pixart()
    enable_magcache(model, "opensora-fast")
    assert get_cache(model).policy.config == MagCacheConfig.preset("opensora-fast")
