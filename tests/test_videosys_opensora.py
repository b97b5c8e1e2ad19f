"""MagCache on VideoSys's own Open-Sora pipeline, STDiT3 and RFLOW scheduler (tiny random weights).

Run locally against each VideoSys copy, e.g.
``PYTHONPATH=/path/to/VideoSys python -m pytest -m videosys``; skipped where VideoSys is absent.
"""

from __future__ import annotations

import pickle
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from types import SimpleNamespace

import pytest
import torch
from videosys_helpers import FAST_SKIPS, GEN, bare_engine, generate

from magcache_videosys import (
    CachedPipeline,
    MagCacheConfig,
    UnsupportedModelError,
    disable_magcache,
    enable_magcache,
    get_stats,
)
from magcache_videosys.hooks import get_cache

pytestmark = pytest.mark.videosys

# The shipped table has exact 1.0 ratios, which even threshold 0 skips on; K = 0 never skips.
NEVER = MagCacheConfig.preset("opensora-fast", threshold=0.0, max_skip_steps=0)


def test_fast_preset_schedule_through_the_pipeline(make_pipeline):
    pipe = make_pipeline()
    plain, _ = generate(pipe)
    enable_magcache(pipe, "opensora-fast")
    cached, video = generate(pipe)
    stats = get_stats(pipe)
    assert stats.num_steps == 30 and stats.complete
    assert stats.skipped_steps == FAST_SKIPS
    assert stats.computed_steps == [0, 1, 2, 3, 4, 5, 9, 13, 17, 21, 25, 29]
    assert video.shape[1] == 17 and video.dtype == torch.uint8
    assert not torch.equal(plain, cached) and torch.isfinite(cached).all()


def test_never_skipping_and_disabling_are_bitwise_identical(make_pipeline):
    pipe = make_pipeline()
    plain, plain_video = generate(pipe)
    enable_magcache(pipe, NEVER)
    hooked, hooked_video = generate(pipe)
    assert get_stats(pipe).skipped_steps == []
    assert torch.equal(plain, hooked) and torch.equal(plain_video, hooked_video)
    disable_magcache(pipe)
    enable_magcache(pipe, "opensora-fast")
    generate(pipe)
    disable_magcache(pipe)
    again, _ = generate(pipe)
    assert torch.equal(plain, again)
    assert get_cache(pipe.transformer) is None


def test_each_sampling_run_of_generate_loop_gets_the_full_schedule(make_pipeline):
    pipe = make_pipeline()
    enable_magcache(pipe, "opensora-fast")
    per_run = []
    sample = pipe.scheduler.sample

    def recording_sample(*args, **kwargs):
        out = sample(*args, **kwargs)
        per_run.append(get_stats(pipe).skipped_steps)
        return out

    pipe.scheduler.sample = recording_sample
    generate(pipe, loop=2)
    assert per_run == [FAST_SKIPS, FAST_SKIPS]


def test_interrupted_run_then_new_run(make_pipeline):
    pipe = make_pipeline()
    enable_magcache(pipe, "opensora-fast")
    reference, _ = generate(pipe, seed=3)
    calls = {"n": 0}

    def fail_at_step_ten(module, args):
        calls["n"] += 1
        if calls["n"] == 11:
            raise KeyboardInterrupt("user pressed Ctrl-C")

    handle = pipe.transformer.register_forward_pre_hook(fail_at_step_ten)
    with pytest.raises(KeyboardInterrupt):
        generate(pipe, seed=3)
    handle.remove()
    # Step 10 was interrupted before its first block: ten steps went through.
    assert get_stats(pipe).steps_seen == 10 and not get_stats(pipe).complete
    again, _ = generate(pipe, seed=3)
    assert get_stats(pipe).skipped_steps == FAST_SKIPS
    assert torch.equal(again, reference)


def test_two_pipelines_in_one_process_keep_their_own_state(make_pipeline):
    fast, slow = make_pipeline(), make_pipeline()
    enable_magcache(fast, "opensora-fast")
    enable_magcache(slow, "opensora-slow")
    for _ in range(2):
        generate(fast)
        generate(slow)
        assert get_stats(fast).skipped_steps == FAST_SKIPS
        assert get_stats(slow).skipped_steps == list(range(6, 30, 2))


def test_other_resolution_between_runs_and_other_step_count(make_pipeline, caplog):
    pipe = make_pipeline(num_sampling_steps=20)
    enable_magcache(pipe, "opensora-fast")
    generate(pipe, resolution="144p", aspect_ratio="1:1")
    first = get_stats(pipe).skipped_steps
    generate(pipe, resolution="240p", aspect_ratio="16:9")
    stats = get_stats(pipe)
    assert stats.num_steps == 20 and stats.skipped_steps == first
    assert first == MagCacheConfig.preset("opensora-fast").plan(20).skipped_steps


def test_shape_change_within_a_run_computes_the_step(make_pipeline):
    pipe = make_pipeline()
    model = pipe.transformer
    enable_magcache(model, MagCacheConfig(mag_ratios=[1.0] * 3, threshold=1.0, max_skip_steps=3, retention_ratio=0.0))
    run = [1000, 750, 500, 250]  # one list per run, as RFLOW builds it

    def call(t_frames):
        x = torch.randn(2, 4, t_frames, 4, 4)
        kwargs = dict(
            y=torch.randn(2, 1, 300, 32),
            mask=torch.ones(1, 300, dtype=torch.long),
            all_timesteps=run,
            fps=torch.tensor([24.0]),
            height=torch.tensor([32.0]),
            width=torch.tensor([32.0]),
        )
        with torch.no_grad():
            return model(x, torch.tensor([500.0, 500.0]), **kwargs)

    outs = [call(t) for t in (2, 2, 3, 3)]
    stats = get_stats(model)
    assert stats.computed_steps == [0, 2] and stats.skipped_steps == [1, 3]
    assert outs[2].shape[2] == 3


def test_prompt_batch_of_two_matches_two_single_runs(make_pipeline):
    # VideoSys's RFLOW.sample cannot take more than one prompt (it calls .item() on the batch's
    # timestep tensor), so this drives STDiT3 with the same batched-CFG Euler loop by hand.
    from videosys.pipelines.open_sora.data_process import get_image_size, prepare_multi_resolution_info

    pipe = make_pipeline()
    enable_magcache(pipe, "opensora-fast")
    size = get_image_size("144p", "1:1")
    latent = pipe.vae.get_latent_size((17, *size))
    prompts = ["a red fox", "a big cat"]  # equal token counts: VideoSys's non-flash cross-attention needs them

    def run(batch):
        torch.manual_seed(7)
        z = torch.randn(2, 4, *latent)[batch]
        args = prepare_multi_resolution_info("OpenSora", len(batch), size, 17, 24, torch.device("cpu"), torch.float32)
        args.update(pipe.encode_prompt([prompts[i] for i in batch]))
        args["y"] = torch.cat([args["y"], pipe.null_embed(len(batch))])
        timesteps = [1000.0 * (1 - i / 30) for i in range(30)]
        args["all_timesteps"] = [int(t) for t in timesteps]
        with torch.no_grad():
            for i, t in enumerate(timesteps):
                out = pipe.transformer(torch.cat([z, z]), torch.full((2 * len(batch),), t), **args)
                cond, uncond = out.chunk(2, dim=1)[0].chunk(2)
                z = z + (uncond + 7.0 * (cond - uncond)) * ((t - (timesteps[i + 1] if i < 29 else 0)) / 1000)
        assert get_stats(pipe).skipped_steps == FAST_SKIPS
        return z

    both = run([0, 1])
    assert get_cache(pipe.transformer).residual.shape[0] == 4  # [cond x2, uncond x2], one residual
    torch.testing.assert_close(both[0:1], run([0]), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(both[1:2], run([1]), atol=1e-4, rtol=1e-4)


def test_calibration_through_the_pipeline(make_pipeline, tmp_path):
    from magcache_videosys import RatioTable

    pipe = make_pipeline()
    enable_magcache(pipe, MagCacheConfig(calibrate=True))
    generate(pipe)
    stats = get_stats(pipe)
    measured = stats.measured
    assert stats.skipped_steps == [] and len(measured["ratio"]) == 29
    table = RatioTable(
        ratios=measured["ratio"], std=measured["ratio_std"], cosine_distance=measured["cosine_distance"], name="tiny"
    )
    path = table.save(tmp_path / "tiny.json")
    disable_magcache(pipe)
    cfg = MagCacheConfig(mag_ratios=str(path), threshold=0.5, max_skip_steps=3)
    enable_magcache(pipe, cfg)
    generate(pipe)
    assert get_stats(pipe).skipped_steps == cfg.plan(30).skipped_steps != []


def test_enable_on_a_config_builds_every_rank_with_magcache(videosys, make_pipeline):
    config = videosys.OpenSoraConfig()
    assert enable_magcache(config, "opensora-fast") is config
    assert isinstance(config.pipeline_cls, CachedPipeline) and config.enable_magcache
    pipe = make_pipeline(config)
    generate(pipe)
    assert get_stats(pipe).skipped_steps == FAST_SKIPS
    disable_magcache(config)
    assert config.pipeline_cls is videosys.OpenSoraPipeline and not config.enable_magcache


def test_config_travels_into_a_spawned_process(videosys):
    from videosys_helpers import generate_with_config

    from magcache_videosys.configs import OpenSoraConfig
    from magcache_videosys.videosys_compat import import_videosys

    config = OpenSoraConfig(enable_magcache=True, magcache_config=MagCacheConfig.preset("opensora-turbo"))
    assert pickle.loads(pickle.dumps(config)).magcache_config == config.magcache_config
    # VideoSysEngine starts ranks 1..N-1 with spawn and builds config.pipeline_cls(config) there.
    with ProcessPoolExecutor(1, mp_context=get_context("spawn"), initializer=import_videosys) as pool:
        result = pool.submit(generate_with_config, config, "a cat", **GEN).result(timeout=300)
    assert result["pipeline_cls"].startswith("CachedPipeline(")
    assert result["stats"]["skipped_steps"] == MagCacheConfig.preset("opensora-turbo").plan().skipped_steps


def test_magcache_config_class_is_a_videosys_config(videosys):
    from magcache_videosys.configs import OpenSoraConfig

    config = OpenSoraConfig(num_sampling_steps=20, cfg_scale=5.0, enable_magcache=True)
    assert isinstance(config, videosys.OpenSoraConfig)
    assert (config.num_sampling_steps, config.cfg_scale) == (20, 5.0)
    assert config.magcache_config == MagCacheConfig.preset("opensora-fast")
    off = OpenSoraConfig()
    assert off.pipeline_cls is videosys.OpenSoraPipeline and off.enable_magcache is False
    with pytest.raises(ValueError, match="magcache_config is given but enable_magcache is False"):
        OpenSoraConfig(magcache_config="opensora-slow")


def test_bad_targets_and_combinations(videosys):
    with pytest.raises(ValueError, match="PAB is enabled on this VideoSys config"):
        enable_magcache(videosys.OpenSoraConfig(enable_pab=True), "opensora-fast")
    unsupported = "'OtherPipeline' is not a supported VideoSys pipeline; supported: OpenSoraPipeline, "
    with pytest.raises(UnsupportedModelError, match=unsupported):
        enable_magcache(SimpleNamespace(pipeline_cls=type("OtherPipeline", (), {}), num_gpus=1), "opensora-fast")
    config = videosys.OpenSoraConfig()
    enable_magcache(config, "opensora-fast")
    with pytest.raises(RuntimeError, match="MagCache is already enabled on this config"):
        enable_magcache(config, "opensora-slow")
    engine = bare_engine(videosys, videosys.OpenSoraConfig(num_gpus=2), None)
    with pytest.raises(ValueError, match=r"already runs 2 ranks.*before VideoSysEngine\(config\)"):
        enable_magcache(engine, "opensora-fast")
    with pytest.raises(TypeError, match="a config has not run anything"):
        get_stats(config)


def test_engine_with_one_gpu_uses_its_driver_pipeline(videosys, make_pipeline):
    engine = bare_engine(videosys, videosys.OpenSoraConfig(num_gpus=1), make_pipeline())
    enable_magcache(engine, "opensora-fast")
    generate(engine.driver_worker)
    assert get_stats(engine).skipped_steps == FAST_SKIPS
    disable_magcache(engine)
    assert get_cache(engine.driver_worker.transformer) is None
