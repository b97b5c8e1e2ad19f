"""``benchmarks/gpu_check.py --small``: the GPU check's code path on the CPU at a tiny size, run once
per module, its JSON and Markdown checked against the schedules and against each other; and the
stand-in VAE's latent shape against VideoSys's own Open-Sora 1.2 VAE code.

Run locally against each VideoSys copy, e.g.
``PYTHONPATH=/path/to/VideoSys python -m pytest tests/test_gpu_check.py``; skipped where VideoSys is absent.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import pytest
import torch

from magcache_videosys import MagCacheConfig

pytestmark = pytest.mark.videosys

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
STEPS = 30
DEPTH, HIDDEN = 2, 64  # the --small STDiT3
TOKENS = 5 * 12 * 12  # 144p 1:1 (192x192) x 17 frames: 5 latent frames of 24x24, patches of 2x2
NAMES = [
    "plain VideoSys",
    "MagCache never-skip",
    "MagCache slow",
    "MagCache fast",
    "MagCache turbo",
    "TeaCache slow",
    "TeaCache fast",
    "PAB",
]
PRESET_OF = {"MagCache slow": "opensora-slow", "MagCache fast": "opensora-fast", "MagCache turbo": "opensora-turbo"}


@pytest.fixture(scope="module")
def benchmarks_on_path():
    """The check's scripts import their sibling modules, as they do when run from the folder."""
    sys.path.insert(0, str(BENCHMARKS))
    yield
    sys.path.remove(str(BENCHMARKS))


@pytest.fixture(scope="module")
def script(benchmarks_on_path):
    """``benchmarks/gpu_check.py`` loaded as a module."""
    spec = importlib.util.spec_from_file_location("gpu_check_script", BENCHMARKS / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def check(script, tmp_path_factory):
    """One ``--small`` run: (the JSON, the Markdown). A ninth variant that cannot be enabled shows
    that one failing variant is recorded and left out while the others are measured."""
    real = script.variants
    script.variants = lambda: real() + [script.Variant("broken", "magcache", "no-such-preset")]
    out = tmp_path_factory.mktemp("gpu_check")
    try:
        assert script.main(["--small", "--out", str(out)]) == 0
    finally:
        script.variants = real
    return json.loads((out / "gpu_check.json").read_text()), (out / "gpu_check.md").read_text()


def rows_by_name(data):
    return {row["variant"]: row for row in data["rows"]}


def test_the_run_completed_every_phase_with_the_small_setting(check):
    data, _ = check
    assert data["complete"] and data["phase"] == "done"
    assert list(data["phases_s"]) == ["build", "metrics", "block-stack share", "synchronisation", "round 1", "done"]
    assert list(data["phases_s"].values()) == sorted(data["phases_s"].values())
    s = data["setting"]
    assert (s["depth"], s["hidden_size"], s["steps"], s["device"], s["rounds_run"]) == (DEPTH, HIDDEN, STEPS, "cpu", 1)
    assert data["model"]["tokens_per_video"] == TOKENS and data["model"]["text_tokens"] > 0
    assert 0.0 < data["stack_share"] < 1.0


def test_a_failing_variant_is_recorded_and_left_out(check):
    data, markdown = check
    assert list(data["failed"]) == ["broken"]
    assert "no-such-preset" in data["failed"]["broken"] and "(at " in data["failed"]["broken"]
    assert "broken" not in data["sync"]["variants"] and "broken" not in rows_by_name(data)
    assert "## Failed variants" in markdown and "- broken: " in markdown


def test_passes_are_the_schedules(check):
    data, _ = check
    rows = rows_by_name(data)
    assert list(rows) == NAMES
    for name, preset in PRESET_OF.items():
        assert rows[name]["passes"] == len(MagCacheConfig.preset(preset).plan(STEPS).computed_steps)
    assert [rows[n]["passes"] for n in PRESET_OF] == [18, 12, 10]
    assert rows["MagCache never-skip"]["passes"] == STEPS and rows["plain VideoSys"]["passes"] == STEPS
    # Random weights change TeaCache's signal far more per step than trained ones: its presets skip nothing.
    assert rows["TeaCache slow"]["passes"] == rows["TeaCache fast"]["passes"] == STEPS
    assert rows["PAB"]["passes"] == STEPS


def test_speedups_and_ideals_follow_from_the_measured_times(check):
    data, _ = check
    rows, share = rows_by_name(data), data["stack_share"]
    plain = rows["plain VideoSys"]
    for row in rows.values():
        assert row["loop_s"] == min(row["loop_rounds_s"]) > 0 and row["call_s"] == min(row["call_rounds_s"])
        assert row["call_s"] > row["loop_s"]  # the whole call holds the loop
        assert row["speedup"] == pytest.approx(plain["loop_s"] / row["loop_s"])
        assert row["call_speedup"] == pytest.approx(plain["call_s"] / row["call_s"])
        if row["method"] == "pab":
            assert row["ideal_speedup"] is None and row["achieved_of_ideal"] is None
            continue
        ideal = 1.0 / ((1.0 - share) + share * row["passes"] / STEPS)
        assert row["ideal_speedup"] == pytest.approx(ideal)
        assert row["achieved_of_ideal"] == pytest.approx(row["speedup"] / ideal)
    assert plain["speedup"] == 1.0 and plain["ideal_speedup"] == 1.0
    assert rows["MagCache turbo"]["ideal_speedup"] > rows["MagCache fast"]["ideal_speedup"] > 1.0


def test_the_cache_holds_one_residual_and_cpu_memory_is_not_claimed(check):
    data, _ = check
    residual = 2 * TOKENS * HIDDEN * 4  # [cond, uncond] x tokens x hidden, float32
    for row in data["rows"]:
        cached = row["method"] in ("magcache", "teacache")
        assert row["cache_bytes"] == (residual if cached else None)
        assert row["peak_bytes"] is None and row["peak_bytes_over_plain"] is None


def test_the_sync_probe_covered_every_call_and_block_and_claims_nothing_on_the_cpu(check):
    data, _ = check
    sync = data["sync"]
    assert not sync["checked"] and "needs CUDA" in sync["note"]
    assert list(sync["variants"]) == NAMES
    for name, found in sync["variants"].items():
        assert found["plugin_regions_per_step"] == 1 + 2 * DEPTH  # the transformer call and every block
        assert found["plugin_per_step"] is None and found["videosys_per_step"] is None and found["error"] is None
        assert found["strict"] == name.startswith("MagCache")


def test_the_eager_path_cuda_runs_equals_the_fused_cpu_path(check):
    data, _ = check
    m = data["metrics"]
    assert (m["videos"], m["frames"], m["device"]) == (2, 5, "cpu") and m["cpu_path"] == "fused"
    assert m["equal_within_tolerance"] and m["tolerance"] == 1e-5
    assert m["max_abs_difference"]["psnr"] <= 1e-5 and m["max_abs_difference"]["ssim"] <= 1e-5
    assert 25.0 < m["mean"]["psnr"] < 40.0 and 0.5 < m["mean"]["ssim"] < 1.0  # noise of std 8/255
    rates = m["psnr_ssim"]
    assert rates["device_frame_pairs_per_s"] > 0 and rates["cpu_frame_pairs_per_s"] > 0
    assert (m["lpips"] is None) == (m["lpips_missing"] is not None)


def test_markdown_says_what_the_json_holds(check):
    data, markdown = check
    lines = markdown.splitlines()
    start = lines.index("## Transformer loop and whole call") + 2
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    table = {}
    for line in lines[start + 2 : start + 2 + len(data["rows"])]:
        cells = dict(zip(header, (c.strip() for c in line.strip("|").split("|"))))
        table[cells["variant"]] = cells
    assert list(table) == NAMES
    for row in data["rows"]:
        cells = table[row["variant"]]
        assert float(cells["loop s"]) == pytest.approx(row["loop_s"], abs=5e-4)
        assert float(cells["call s"]) == pytest.approx(row["call_s"], abs=5e-4)
        assert float(cells["speedup"].rstrip("x")) == pytest.approx(row["speedup"], abs=5e-3)
        assert int(cells["passes"]) == row["passes"]
        if row["ideal_speedup"] is None:
            assert cells["ideal"] == cells["of ideal"] == "-"
        else:
            assert float(cells["ideal"].rstrip("x")) == pytest.approx(row["ideal_speedup"], abs=5e-3)
            assert float(cells["of ideal"].rstrip("%")) == pytest.approx(100 * row["achieved_of_ideal"], abs=0.05)
        if row["cache_bytes"] is None:
            assert cells["cache MiB"] == "-"
        else:
            assert float(cells["cache MiB"]) == pytest.approx(row["cache_bytes"] / 2**20, abs=5e-3)
        assert cells["peak MiB over plain"] == "-"
    assert f"Block-stack share of the plain loop: {100 * data['stack_share']:.2f}%." in markdown
    assert "values equal within 1e-05: yes" in markdown


def test_the_stand_in_vae_has_open_soras_latent_shape(benchmarks_on_path, videosys):
    """Against VideoSys's own size arithmetic: the pipeline's micro-batching over its temporal VAE
    (built here with random weights) and its spatial VAE's 8x (whose weights would be a download)."""
    from gpu_check_model import OpenSoraLatentVAE
    from videosys.models.autoencoders.autoencoder_kl_open_sora import (
        VAE_Temporal_SD,
        VideoAutoencoderKL,
        VideoAutoencoderPipeline,
    )

    eight_x = SimpleNamespace(patch_size=(1, 8, 8))
    spatial = SimpleNamespace(get_latent_size=functools.partial(VideoAutoencoderKL.get_latent_size, eight_x))
    real = SimpleNamespace(micro_frame_size=17, temporal_vae=VAE_Temporal_SD(), spatial_vae=spatial)
    vae = OpenSoraLatentVAE()
    for frames in (1, 4, 16, 17, 18, 34, 51, 102):
        size = [frames, 480, 854]
        assert vae.get_latent_size(size) == VideoAutoencoderPipeline.get_latent_size(real, size), frames
    assert vae.get_latent_size([51, 480, 854]) == [15, 60, 106]
    assert vae.out_channels == real.temporal_vae.out_channels == 4
    with torch.no_grad():
        video = vae.decode(torch.randn(1, 4, 15, 4, 4), num_frames=51)
    assert tuple(video.shape) == (1, 3, 51, 32, 32)


class SyncDebugStandIn:
    """What ``torch.cuda.set_sync_debug_mode`` makes a synchronising call do (warn, raise, or
    nothing), for the CPU: ``sync()`` stands for an ``.item()`` on a CUDA tensor."""

    def __init__(self) -> None:
        self.mode = "default"
        self.modes: list[str] = []

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        self.modes.append(mode)

    def sync(self) -> None:
        from gpu_check_probes import SYNC_MESSAGE

        if self.mode == "error":
            raise RuntimeError(SYNC_MESSAGE)
        if self.mode == "warn":
            warnings.warn(SYNC_MESSAGE, UserWarning, stacklevel=2)

    def syncing(self, function: Callable) -> Callable:
        """``function`` that synchronises first (its signature kept: the adapter reads it)."""

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.sync()
            return function(*args, **kwargs)

        return wrapper


def test_the_sync_probe_puts_each_sync_where_it_happened(script, monkeypatch):
    """Every VideoSys block body and TeaCache's signal read synchronise here, as they would on CUDA:
    the probe counts the first as elsewhere and the second as the plugin's, MagCache's code runs in
    mode "error", and a synchronising MagCache decision is caught and located."""
    from gpu_check_model import SMALL, Bench, Variant

    from magcache_videosys.magcache import MagCachePolicy
    from magcache_videosys.teacache import TeaCachePolicy

    debug = SyncDebugStandIn()
    bench = Bench(SMALL)
    block_class = type(bench.blocks(Variant("plain", "plain"))[0])
    for cls, name in ((block_class, "forward"), (TeaCachePolicy, "_relative_l1")):
        monkeypatch.setattr(cls, name, debug.syncing(getattr(cls, name)))
    stack = 2 * DEPTH
    plain = script.inspect_syncs(bench, Variant("plain", "plain"), debug.set_mode)
    assert (plain["plugin_per_step"], plain["videosys_per_step"], plain["error"]) == (0.0, stack, None)
    tea = script.inspect_syncs(bench, script.variants()[5], debug.set_mode)
    assert tea["plugin_per_step"] * STEPS == STEPS - 2  # steps 0 and 29 are computed without reading it
    assert tea["videosys_per_step"] == stack and tea["error"] is None  # random weights: nothing skipped
    assert "error" not in debug.modes
    fast = script.inspect_syncs(bench, script.variants()[3], debug.set_mode)
    assert fast["strict"] and fast["error"] is None and fast["plugin_per_step"] == 0.0
    assert fast["videosys_per_step"] * STEPS == 12 * stack and "error" in debug.modes
    assert debug.mode == "default" and fast["plugin_regions_per_step"] == 1 + stack

    monkeypatch.setattr(MagCachePolicy, "wants_skip", debug.syncing(MagCachePolicy.wants_skip))
    failing = script.inspect_syncs(bench, script.variants()[3], debug.set_mode)
    assert failing["error"].startswith("called a synchronizing CUDA operation at ")
    assert "magcache_videosys/hooks.py" in failing["error"] and "(_head)" in failing["error"]
    assert debug.mode == "default"
