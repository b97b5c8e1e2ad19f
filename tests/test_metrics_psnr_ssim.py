"""PSNR and SSIM equal straightforward implementations of the reference definitions.

SSIM is checked against ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1)``: skimage filters the whole frame with reflected
borders, then averages the map after cropping ``(win_size - 1) // 2 = 5`` pixels from every side,
where ``win_size = 2 * int(3.5 * 1.5 + 0.5) + 1 = 11``. That crop is exactly the 'valid' region of
an 11x11 window, so no border value enters and the comparison can be exact.

Every check runs twice: with the fused kernels ``torch.compile`` builds on CPU, and eagerly.
"""

from __future__ import annotations

import os
import subprocess
import sys

import imageio
import numpy as np
import pytest
import torch
from metrics_reference import skimage_ssim, straightforward_psnr

from magcache_videosys.metrics import fused as fused_module
from magcache_videosys.metrics.psnr import psnr_frames
from magcache_videosys.metrics.ssim import gaussian_window, ssim_frames
from magcache_videosys.metrics.video_io import read_video

TOL = 1e-5


@pytest.fixture(scope="module")
def decoded_pair(tmp_path_factory) -> tuple[np.ndarray, np.ndarray]:
    """A real mp4 pair: smooth random content, and the same with Gaussian noise, both decoded."""
    rng = np.random.default_rng(1)
    coarse = torch.from_numpy(rng.random((6, 3, 6, 8)) * 255)
    smooth = torch.nn.functional.interpolate(coarse, size=(40, 56), mode="bicubic", align_corners=False)
    reference = smooth.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    generated = np.clip(reference + rng.normal(0, 12, reference.shape), 0, 255).astype(np.uint8)
    folder = tmp_path_factory.mktemp("videos")
    for name, video in (("ref.mp4", reference), ("gen.mp4", generated)):
        imageio.mimwrite(folder / name, list(video), fps=8, macro_block_size=1)
    return read_video(folder / "ref.mp4"), read_video(folder / "gen.mp4")


@pytest.fixture(params=[True, False], ids=["fused", "eager"])
def fused(request) -> bool:
    return request.param


def test_gaussian_window_is_the_normalised_11_tap_sigma_1_5_kernel():
    g = gaussian_window(torch.float64)
    x = np.arange(11) - 5
    expected = np.exp(-(x**2) / (2 * 1.5**2))
    np.testing.assert_allclose(g.numpy(), expected / expected.sum(), rtol=1e-12)


def test_psnr_equals_straightforward_on_decoded_video(decoded_pair, fused):
    ref, gen = decoded_pair
    ours = psnr_frames(torch.from_numpy(ref), torch.from_numpy(gen), fused=fused).numpy()
    expected = straightforward_psnr(ref, gen)
    assert 15 < min(expected) < max(expected) < 40  # a real, noisy comparison
    np.testing.assert_allclose(ours, expected, rtol=0, atol=TOL)


def test_ssim_equals_skimage_on_decoded_video(decoded_pair, fused):
    ref, gen = decoded_pair
    ours = ssim_frames(torch.from_numpy(ref), torch.from_numpy(gen), fused=fused).numpy()
    expected = skimage_ssim(ref, gen)
    assert 0.2 < min(expected) < max(expected) < 0.95
    np.testing.assert_allclose(ours, expected, rtol=0, atol=TOL)


def test_float_frames_in_unit_range_give_the_same_values(decoded_pair, fused):
    ref, gen = (torch.from_numpy(v[:3]) for v in decoded_pair)
    for as_float in ((ref.double() / 255, gen.double() / 255), (ref.float() / 255, gen.float() / 255)):
        np.testing.assert_allclose(psnr_frames(*as_float, fused=fused), psnr_frames(ref, gen), atol=TOL)
        np.testing.assert_allclose(ssim_frames(*as_float, fused=fused), ssim_frames(ref, gen), atol=TOL)


def test_one_frame_at_a_time_equals_the_whole_batch(decoded_pair, fused):
    ref, gen = (torch.from_numpy(v) for v in decoded_pair)
    for metric in (psnr_frames, ssim_frames):
        batched = metric(ref, gen, fused=fused)
        single = torch.cat([metric(ref[i : i + 1], gen[i : i + 1], fused=fused) for i in range(ref.shape[0])])
        torch.testing.assert_close(batched, single, rtol=0, atol=1e-9)


def test_fused_and_eager_agree_closely(decoded_pair):
    ref, gen = (torch.from_numpy(v) for v in decoded_pair)
    for metric in (psnr_frames, ssim_frames):
        torch.testing.assert_close(metric(ref, gen, fused=True), metric(ref, gen, fused=False), rtol=0, atol=1e-7)


def test_strips_give_the_same_values_as_whole_frames(decoded_pair):
    ref, gen = (torch.from_numpy(v) for v in decoded_pair)
    whole = ssim_frames(ref, gen, strip_pixels=1 << 30, fused=False)
    for pixels in (1, 6 * 56 * 7, 6 * 56 * 13):  # one row per strip, 7 rows, 13 rows (ragged last strip)
        torch.testing.assert_close(ssim_frames(ref, gen, strip_pixels=pixels, fused=False), whole, rtol=0, atol=1e-7)


def _frames(*values: int, size: tuple[int, int] = (32, 48)) -> torch.Tensor:
    return torch.stack([torch.full((*size, 3), v, dtype=torch.uint8) for v in values])


@pytest.mark.parametrize(
    "ref_values, gen_values",
    [
        ((128, 0, 255), (128, 0, 255)),  # identical constant frames
        ((100, 30), (120, 31)),  # different constants
        ((0, 255), (255, 0)),  # black vs white
        ((255, 0), (254, 1)),  # one grey level apart at both ends of the range
    ],
)
def test_constant_frames_match_skimage_and_numpy(ref_values, gen_values, fused):
    ref, gen = _frames(*ref_values), _frames(*gen_values)
    np.testing.assert_allclose(ssim_frames(ref, gen, fused=fused), skimage_ssim(ref.numpy(), gen.numpy()), atol=TOL)
    expected_psnr = straightforward_psnr(ref.numpy(), gen.numpy())
    np.testing.assert_allclose(psnr_frames(ref, gen, fused=fused), expected_psnr, atol=TOL)


def test_hard_content_matches_skimage(fused):
    """Uniform noise (large variances, SSIM near 0), a black/white checkerboard against noise, and bright
    frames with tiny differences (variances cancelling against large means)."""
    rng = np.random.default_rng(3)
    bright = rng.integers(200, 256, (2, 40, 56, 3))
    checker = np.where(np.indices((40, 56)).sum(0) % 2 == 0, 0, 255)[None, :, :, None].repeat(2, 0).repeat(3, 3)
    cases = [
        (rng.integers(0, 256, (2, 40, 56, 3)), rng.integers(0, 256, (2, 40, 56, 3))),
        (checker, rng.integers(0, 256, (2, 40, 56, 3))),
        (bright, np.clip(bright + rng.integers(-2, 3, bright.shape), 0, 255)),
    ]
    for ref, gen in cases:
        ref, gen = ref.astype(np.uint8), gen.astype(np.uint8)
        ours = ssim_frames(torch.from_numpy(ref), torch.from_numpy(gen), fused=fused).numpy()
        np.testing.assert_allclose(ours, skimage_ssim(ref, gen), rtol=0, atol=TOL)


def test_identical_videos_give_psnr_100_and_ssim_1(decoded_pair, fused):
    ref = torch.from_numpy(decoded_pair[0])
    assert psnr_frames(ref, ref.clone(), fused=fused).tolist() == [100.0] * ref.shape[0]
    np.testing.assert_allclose(ssim_frames(ref, ref.clone(), fused=fused), 1.0, atol=1e-6)


def test_black_vs_white_values(fused):
    black, white = _frames(0), _frames(255)
    assert psnr_frames(black, white, fused=fused).item() == 0.0
    c1 = 0.01**2
    assert ssim_frames(black, white, fused=fused).item() == pytest.approx(c1 / (1 + c1), abs=1e-7)


def test_psnr_is_100_below_the_reference_mse_floor_only(fused):
    # 3 x 256 x 256 values, one off by 1/255: MSE 7.8e-11 < 1e-10, so the reference says 100
    ref = torch.zeros((1, 256, 256, 3), dtype=torch.uint8)
    gen = ref.clone()
    gen[0, 7, 9, 1] = 1
    assert psnr_frames(ref, gen, fused=fused).item() == 100.0 == straightforward_psnr(ref.numpy(), gen.numpy())[0]
    # twice the error: MSE 1.6e-10, a finite PSNR
    gen[0, 8, 9, 1] = 1
    expected = straightforward_psnr(ref.numpy(), gen.numpy())[0]
    assert expected < 100 and psnr_frames(ref, gen, fused=fused).item() == pytest.approx(expected, abs=TOL)


def test_ssim_rejects_frames_smaller_than_the_window():
    small = torch.zeros((1, 10, 30, 3), dtype=torch.uint8)
    with pytest.raises(ValueError, match="11x11"):
        ssim_frames(small, small)


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match="shapes differ"):
        psnr_frames(_frames(0), _frames(0, size=(32, 40)))


def test_environment_switch_turns_the_fused_kernels_off(monkeypatch):
    frames = _frames(0)
    assert fused_module.use_fused(frames)
    monkeypatch.setenv(fused_module.ENV_SWITCH, "0")
    assert not fused_module.use_fused(frames) and not fused_module.fused_enabled("cpu")
    assert fused_module.use_fused(frames, fused=True)  # asked for explicitly
    assert not fused_module.use_fused(frames, fused=False)


_WITHOUT_COMPILER = """
import warnings
import torch
from magcache_videosys.metrics import fused, psnr_frames, ssim_frames
g = torch.Generator().manual_seed(0)
ref = torch.randint(0, 256, (2, 24, 40, 3), dtype=torch.uint8, generator=g)
gen = torch.randint(0, 256, (2, 24, 40, 3), dtype=torch.uint8, generator=g)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    values = ssim_frames(ref, gen), psnr_frames(ref, gen), ssim_frames(ref, gen)
ours = [str(w.message) for w in caught if "could not compile" in str(w.message)]
assert len(ours) == 1, ours
print(ours[0])
assert not fused.fused_enabled("cpu")
torch.testing.assert_close(values[0], ssim_frames(ref, gen, fused=False), rtol=0, atol=0)
torch.testing.assert_close(values[1], psnr_frames(ref, gen, fused=False), rtol=0, atol=0)
"""


def test_without_a_compiler_the_metrics_warn_once_and_run_eagerly(tmp_path):
    env = {**os.environ, "CXX": str(tmp_path / "no-such-g++"), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "cache")}
    run = subprocess.run([sys.executable, "-c", _WITHOUT_COMPILER], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "could not compile the fused CPU metric kernels" in run.stdout and "g++" in run.stdout


def test_fused_kernels_compile_once_per_frame_size_not_per_batch_size():
    """Chunks of any frame count reuse the kernels (a recompile costs seconds per video); only a
    single frame, which torch specialises, gets its own."""
    from torch._dynamo.utils import counters

    g = torch.Generator().manual_seed(5)
    ref = torch.randint(0, 256, (6, 29, 43, 3), dtype=torch.uint8, generator=g)
    gen = torch.randint(0, 256, (6, 29, 43, 3), dtype=torch.uint8, generator=g)
    for n in (2, 1):
        ssim_frames(ref[:n], gen[:n], fused=True)
        psnr_frames(ref[:n], gen[:n], fused=True)
    compiled = counters["frames"]["total"]
    for n in (3, 6, 4, 5):
        expected = ssim_frames(ref[:n], gen[:n], fused=False)
        torch.testing.assert_close(ssim_frames(ref[:n], gen[:n], fused=True), expected, rtol=0, atol=1e-7)
        psnr_frames(ref[:n], gen[:n], fused=True)
    assert counters["frames"]["total"] == compiled
