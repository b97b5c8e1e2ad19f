"""The baselines on VideoSys's own Open-Sora pipeline, STDiT3 and RFLOW (tiny random weights):
TeaCache on the shared runtime, and VideoSys's PAB made to run on upstream.

Run locally against each VideoSys copy, e.g.
``PYTHONPATH=/path/to/VideoSys python -m pytest -m videosys``; skipped where VideoSys is absent.
"""

from __future__ import annotations

import importlib
import pickle
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import pytest
import torch
from videosys_helpers import GEN, bare_engine, generate, manifest, run_cli

from magcache_videosys import (
    CachedPipeline,
    TeaCacheConfig,
    disable_pab,
    disable_teacache,
    enable_magcache,
    enable_pab,
    enable_teacache,
    get_stats,
)
from magcache_videosys.hooks import get_cache

pytestmark = pytest.mark.videosys

# Random weights change the modulated input far more per step than trained ones: the published
# thresholds (0.1, 0.2) skip nothing here; 0.5 skips 13 steps (the reference agrees, see
# test_reference_teacache.py).
SKIPPING = TeaCacheConfig(threshold=0.5)
COMPUTED = [0, 2, 4, 6, 8, 10, 11, 13, 15, 17, 19, 21, 23, 25, 26, 28, 29]
SKIPPED = [1, 3, 5, 7, 9, 12, 14, 16, 18, 20, 22, 24, 27]


@pytest.fixture
def pab_manager():
    """VideoSys keeps the latest PAB pipeline's settings in a process-wide manager, read by every
    pipeline built later; forget it after each PAB test."""
    from magcache_videosys.videosys_compat import import_videosys

    import_videosys()
    try:
        module = importlib.import_module("videosys.core.pab.pab_mgr")
    except ModuleNotFoundError:  # the older copy's layout
        module = importlib.import_module("videosys.core.pab_mgr")
    yield module
    module.PAB_MANAGER = None


def run_timesteps(pipe) -> list[int]:
    seen = []
    handle = pipe.transformer.register_forward_pre_hook(
        lambda m, a, k: seen.append(k["all_timesteps"] if "all_timesteps" in k else a[2]), with_kwargs=True
    )
    try:
        generate(pipe)
    finally:
        handle.remove()
    return seen[0]


# --- TeaCache ---------------------------------------------------------------------------------
def test_schedule_and_statistics_through_the_pipeline(make_pipeline):
    pipe = make_pipeline()
    plain, _ = generate(pipe)
    enable_teacache(pipe, SKIPPING)
    cached, video = generate(pipe)
    stats = get_stats(pipe)
    assert stats.method == "TeaCache" and stats.num_steps == 30 and stats.complete
    assert stats.computed_steps == COMPUTED and stats.skipped_steps == SKIPPED
    assert stats.acc_err[0] == 0.0
    assert all(stats.acc_err[s] < 0.5 for s in SKIPPED) and all(stats.acc_err[s] >= 0.5 for s in COMPUTED[1:])
    assert video.shape[1] == 17 and not torch.equal(plain, cached) and torch.isfinite(cached).all()


def test_threshold_zero_is_bitwise_plain_videosys_and_disabling_restores_it(make_pipeline):
    pipe = make_pipeline()
    plain, plain_video = generate(pipe)
    enable_teacache(pipe, TeaCacheConfig(threshold=0.0, compute_last_step=True))
    hooked, hooked_video = generate(pipe)
    assert get_stats(pipe).skipped_steps == []
    assert torch.equal(plain, hooked) and torch.equal(plain_video, hooked_video)
    disable_teacache(pipe)
    enable_teacache(pipe, SKIPPING)
    generate(pipe)
    disable_teacache(pipe)
    again, _ = generate(pipe)
    assert torch.equal(plain, again) and get_cache(pipe.transformer) is None


def test_every_run_starts_afresh(make_pipeline):
    pipe = make_pipeline()
    enable_teacache(pipe, SKIPPING)
    first, _ = generate(pipe)
    second, _ = generate(pipe)
    assert get_stats(pipe).skipped_steps == SKIPPED and torch.equal(first, second)
    per_run = []
    sample = pipe.scheduler.sample

    def recording_sample(*args, **kwargs):
        out = sample(*args, **kwargs)
        per_run.append(get_stats(pipe))
        return out

    pipe.scheduler.sample = recording_sample
    generate(pipe, loop=2)  # the second loop conditions on the first: other data, its own run
    assert [s.complete and s.computed_steps[0] == 0 and s.acc_err[0] == 0.0 for s in per_run] == [True, True]
    assert per_run[0].skipped_steps == SKIPPED


def test_interrupted_run_then_new_run(make_pipeline):
    pipe = make_pipeline()
    enable_teacache(pipe, SKIPPING)
    reference, _ = generate(pipe, seed=3)
    schedule = get_stats(pipe).skipped_steps
    calls = {"n": 0}

    def fail_at_step_ten(module, args):
        calls["n"] += 1
        if calls["n"] == 11:
            raise KeyboardInterrupt("user pressed Ctrl-C")

    handle = pipe.transformer.register_forward_pre_hook(fail_at_step_ten)
    with pytest.raises(KeyboardInterrupt):
        generate(pipe, seed=3)
    handle.remove()
    assert get_stats(pipe).steps_seen == 10 and not get_stats(pipe).complete
    again, _ = generate(pipe, seed=3)
    assert get_stats(pipe).skipped_steps == schedule and torch.equal(again, reference)


def test_config_carries_teacache_to_every_rank(videosys, make_pipeline):
    from videosys_helpers import generate_with_config

    from magcache_videosys.configs import OpenSoraConfig
    from magcache_videosys.videosys_compat import import_videosys

    config = videosys.OpenSoraConfig()
    assert enable_teacache(config, SKIPPING) is config and isinstance(config.pipeline_cls, CachedPipeline)
    pipe = make_pipeline(config)
    generate(pipe)
    assert get_stats(pipe).skipped_steps == SKIPPED
    disable_teacache(config)
    assert config.pipeline_cls is videosys.OpenSoraPipeline and not config.enable_teacache

    config = OpenSoraConfig(enable_teacache=True, teacache_config=SKIPPING)
    assert pickle.loads(pickle.dumps(config)).teacache_config == SKIPPING
    assert OpenSoraConfig(enable_teacache=True).teacache_config == TeaCacheConfig.preset("teacache-slow")
    # VideoSysEngine starts ranks 1..N-1 with spawn and builds config.pipeline_cls(config) there.
    with ProcessPoolExecutor(1, mp_context=get_context("spawn"), initializer=import_videosys) as pool:
        result = pool.submit(generate_with_config, config, "a cat on a sofa", **GEN).result(timeout=300)
    assert result["pipeline_cls"].startswith("CachedPipeline(")
    assert result["stats"]["method"] == "TeaCache" and result["stats"]["skipped_steps"] == SKIPPED


def test_engine_with_one_gpu(videosys, make_pipeline):
    engine = bare_engine(videosys, videosys.OpenSoraConfig(num_gpus=1), make_pipeline())
    enable_teacache(engine, SKIPPING)
    generate(engine.driver_worker)
    assert get_stats(engine).skipped_steps == SKIPPED
    disable_teacache(engine)
    assert get_cache(engine.driver_worker.transformer) is None


def test_teacache_magcache_and_pab_do_not_combine(videosys, make_pipeline):
    from magcache_videosys.configs import OpenSoraConfig

    pipe = make_pipeline()
    enable_magcache(pipe, "opensora-fast")
    with pytest.raises(RuntimeError, match="MagCache is already enabled on this STDiT3; call disable_magcache"):
        enable_teacache(pipe, SKIPPING)
    config = videosys.OpenSoraConfig()
    enable_teacache(config, SKIPPING)
    with pytest.raises(RuntimeError, match="TeaCache is already enabled on this config; call disable_teacache"):
        enable_magcache(config, "opensora-fast")
    with pytest.raises(ValueError, match="TeaCache is enabled on this config; PAB and step caching"):
        enable_pab(config)
    with pytest.raises(ValueError, match="PAB is enabled on this VideoSys config"):
        enable_teacache(videosys.OpenSoraConfig(enable_pab=True), SKIPPING)
    with pytest.raises(ValueError, match="enable_magcache and enable_teacache are both set"):
        OpenSoraConfig(enable_magcache=True, enable_teacache=True)
    with pytest.raises(ValueError, match="PAB is enabled on this VideoSys config"):
        OpenSoraConfig(enable_pab=True, enable_teacache=True)
    with pytest.raises(ValueError, match="teacache_config is given but enable_teacache is False"):
        OpenSoraConfig(teacache_config="teacache-fast")


# --- PAB --------------------------------------------------------------------------------------
def test_pab_runs_on_this_videosys_copy(videosys, make_pipeline, pab_manager):
    """Upstream's STDiT3 calls its blocks without all_timesteps, which PAB's MLP broadcast reads:
    VideoSys's own PAB fails there at the first step. Ours runs on both copies and, where
    VideoSys's own runs (the older copy), gives the same video."""
    ours_config = enable_pab(videosys.OpenSoraConfig())
    ours, _ = generate(make_pipeline(ours_config))
    assert torch.isfinite(ours).all()
    theirs_config = videosys.OpenSoraConfig(enable_pab=True, pab_config=videosys.OpenSoraPABConfig())
    try:
        theirs, _ = generate(make_pipeline(theirs_config))
    except TypeError as exc:  # upstream
        assert "argument of type 'NoneType' is not iterable" in str(exc)
    else:
        assert torch.equal(ours, theirs)


def test_pab_mlp_broadcast_reuses_stored_outputs(videosys, make_pipeline, pab_manager, monkeypatch):
    # VideoSys's MLP broadcast names timesteps of a 480p bf16 run; name three of this run instead.
    steps = run_timesteps(make_pipeline())
    mlp = {steps[5]: {"block": [0, 1], "skip_count": 2}}
    reads = []

    def pab_run(mlp_broadcast: bool):
        pab = videosys.OpenSoraPABConfig(
            mlp_broadcast=mlp_broadcast, mlp_spatial_broadcast_config=mlp, mlp_temporal_broadcast_config=mlp
        )
        latent, _ = generate(make_pipeline(enable_pab(videosys.OpenSoraConfig(), pab)))
        return latent, pab

    get = pab_manager.PABManager.get_mlp_output
    monkeypatch.setattr(
        pab_manager.PABManager,
        "get_mlp_output",
        lambda self, skip_range, timestep, *a: reads.append(timestep) or get(self, skip_range, timestep, *a),
    )

    broadcast, pab = pab_run(True)
    # Steps 6 and 7 reuse step 5's MLP output in 2 spatial and 2 temporal blocks; then it is freed.
    assert sorted(reads) == sorted([steps[6]] * 4 + [steps[7]] * 4)
    assert pab.mlp_spatial_outputs == {} and pab.mlp_temporal_outputs == {}
    attention_only, _ = pab_run(False)
    assert torch.isfinite(broadcast).all() and not torch.equal(broadcast, attention_only)


def test_pab_config_entry_points(videosys, make_pipeline, pab_manager):
    from magcache_videosys.configs import OpenSoraConfig

    config = OpenSoraConfig(enable_pab=True)
    assert config.enable_pab and isinstance(config.pipeline_cls, CachedPipeline)
    assert config.pab_config is not videosys.OpenSoraConfig().pab_config  # not VideoSys's shared default
    given = videosys.OpenSoraPABConfig(spatial_range=3)
    assert OpenSoraConfig(enable_pab=True, pab_config=given).pab_config is given
    disable_pab(config)
    assert not config.enable_pab and config.pipeline_cls is videosys.OpenSoraPipeline
    with pytest.raises(TypeError, match="enable_pab takes a VideoSys config, got OpenSoraPipeline"):
        enable_pab(make_pipeline())


# --- experiments ------------------------------------------------------------------------------
def test_experiments_teacache_and_pab_tiny_runs(cli, capsys, prompts, tmp_path, pab_manager):
    out = tmp_path / "teacache"
    text = run_cli(
        cli,
        capsys,
        "--method",
        "teacache",
        "--threshold",
        "0.5",
        "--tiny",
        "--prompts",
        prompts,
        "--num-samples",
        "1",
        "--out",
        out,
    )
    assert "decided during sampling" in text and "generated 1 videos" in text
    [record] = manifest(out)
    assert record["method"] == "teacache" and record["method_config"]["threshold"] == 0.5
    assert record["skipped_steps"] and record["computed_steps"][0] == 0 and record["computed_steps"][-1] == 29
    out = tmp_path / "pab"
    run_cli(
        cli,
        capsys,
        "--method",
        "pab-fast",
        "--tiny",
        "--steps",
        "10",
        "--prompts",
        prompts,
        "--num-samples",
        "1",
        "--out",
        out,
    )
    [record] = manifest(out)
    assert record["method"] == "pab-fast" and record["computed_steps"] == list(range(10))
    assert record["method_config"] == {"OpenSoraPABConfig": {"spatial_range": 5, "temporal_range": 7, "cross_range": 9}}
