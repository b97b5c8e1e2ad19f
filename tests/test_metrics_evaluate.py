"""The batched driver and eval.py: reference averaging, alignment, bad input, result files."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import imageio
import numpy as np
import pytest
import torch
from metrics_reference import skimage_ssim, straightforward_psnr
from metrics_scripts import run_script

from magcache_videosys.metrics.errors import MetricsError, MetricsWarning
from magcache_videosys.metrics.evaluate import evaluate, format_summary, parse_metrics, scoring_context, write_results
from magcache_videosys.metrics.fused import ENV_SWITCH
from magcache_videosys.metrics.lpips import TAP_CHANNELS, LPIPSAlex, alexnet_features
from magcache_videosys.metrics.video_io import read_video

LENGTHS = {"a.mp4": 5, "b.mp4": 7, "c.mp4": 6}
# the references of the shared folders are two frames longer on purpose (the definitions cut them), which
# is worth a warning in a real run; the tests of that warning catch it themselves
pytestmark = pytest.mark.filterwarnings("ignore::magcache_videosys.metrics.errors.MetricsWarning")


def write_video(path: Path, frames: np.ndarray, fps: float = 8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimwrite(path, list(frames), fps=fps, macro_block_size=1)
    return path


def content(frames: int, height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.random((frames, 3, 4, 5)) * 255)
    smooth = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    return smooth.round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def noisy(frames: np.ndarray, std: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(frames + rng.normal(0, std, frames.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("samples")
    for index, (name, length) in enumerate(LENGTHS.items()):
        frames = content(length + 2, 32, 40, seed=index)  # the reference is 2 frames longer
        write_video(root / "base" / name, frames)
        write_video(root / "fast" / name, noisy(frames[:length], 14, seed=10 + index))
        write_video(root / "slow" / name, noisy(frames[:length], 6, seed=20 + index))
    return {name: root / name for name in ("base", "fast", "slow")}


def per_frame_index_mean(per_video: list[np.ndarray]) -> float:
    longest = max(len(v) for v in per_video)
    return float(np.mean([np.mean([v[t] for v in per_video if len(v) > t]) for t in range(longest)]))


def straightforward(ref_dir: Path, gen_dir: Path) -> dict[str, list[np.ndarray]]:
    """Per-frame PSNR (numpy) and SSIM (skimage) of decoded videos, reference cut to the generated length."""
    out: dict[str, list[np.ndarray]] = {"psnr": [], "ssim": []}
    for name in sorted(LENGTHS):
        gen = read_video(gen_dir / name)
        ref = read_video(ref_dir / name)[: len(gen)]
        out["psnr"].append(np.array(straightforward_psnr(ref, gen)))
        out["ssim"].append(np.array(skimage_ssim(ref, gen)))
    return out


def random_lpips() -> LPIPSAlex:
    torch.manual_seed(0)
    heads = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate(TAP_CHANNELS)}
    return LPIPSAlex(alexnet_features().state_dict(), heads)


def test_means_average_per_frame_index_then_over_frames(folders):
    (result,) = evaluate(folders["base"], [folders["fast"]], metrics="psnr,ssim", device="cpu", progress=False)
    expected = straightforward(folders["base"], folders["fast"])
    assert [v.name for v in result.videos] == sorted(LENGTHS)
    assert [v.frames for v in result.videos] == [LENGTHS[n] for n in sorted(LENGTHS)]
    for metric in ("psnr", "ssim"):
        for video, values in zip(result.videos, expected[metric]):
            np.testing.assert_allclose(video.values[metric], values, atol=1e-5)
        assert result.mean(metric) == pytest.approx(per_frame_index_mean(expected[metric]), abs=1e-5)
    # the videos have 5, 6 and 7 frames, so the definition matters: the plain mean of all frames differs
    plain = float(np.mean(np.concatenate(expected["psnr"])))
    assert abs(result.mean("psnr") - plain) > 1e-3


def test_one_pass_scores_several_generated_folders(folders):
    fast, slow = evaluate(folders["base"], [folders["fast"], folders["slow"]], metrics="psnr", progress=False)
    (fast_alone,) = evaluate(folders["base"], [folders["fast"]], metrics="psnr", progress=False)
    assert fast.mean("psnr") == fast_alone.mean("psnr")
    assert slow.mean("psnr") > fast.mean("psnr") + 3  # less noise


def test_threads_batch_size_and_workers_do_not_change_values(folders):
    (a,) = evaluate(folders["base"], [folders["fast"]], metrics="psnr,ssim", batch_size=1, workers=0, progress=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        (b,) = evaluate(
            folders["base"], [folders["fast"]], metrics="psnr,ssim", batch_size=4, workers=3, progress=False
        )
    finally:
        torch.set_num_threads(threads)
    for va, vb in zip(a.videos, b.videos):
        for metric in ("psnr", "ssim"):
            np.testing.assert_allclose(va.values[metric], vb.values[metric], rtol=0, atol=1e-9)


def test_eager_scoring_with_a_thread_pool_gives_the_fused_values(folders, monkeypatch):
    (fused,) = evaluate(folders["base"], [folders["fast"]], metrics="psnr,ssim", progress=False)
    with scoring_context("cpu") as pool:
        assert pool is None  # the fused kernels use every core themselves
    monkeypatch.setenv(ENV_SWITCH, "0")
    threads = torch.get_num_threads()
    with scoring_context("cpu") as pool:
        assert (pool is None) == (threads == 1)  # eager: one single-threaded scorer per thread
    (eager,) = evaluate(folders["base"], [folders["fast"]], metrics="psnr,ssim", batch_size=1, progress=False)
    for vf, ve in zip(fused.videos, eager.videos):
        np.testing.assert_allclose(vf.values["psnr"], ve.values["psnr"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(vf.values["ssim"], ve.values["ssim"], rtol=0, atol=1e-7)


def test_lpips_runs_with_an_explicit_model(folders):
    model = random_lpips()
    (same,) = evaluate(folders["base"], [folders["base"]], metrics="lpips", lpips_model=model, progress=False)
    (fast,) = evaluate(folders["base"], [folders["fast"]], metrics="lpips", lpips_model=model, progress=False)
    assert same.mean("lpips") == 0.0
    assert fast.mean("lpips") > 0


def test_a_larger_reference_is_resized_and_cropped(tmp_path):
    frames = content(4, 48, 80, seed=3)
    write_video(tmp_path / "ref" / "v.mp4", frames)
    write_video(tmp_path / "gen" / "v.mp4", content(4, 24, 32, seed=4))
    (result,) = evaluate(tmp_path / "ref", [tmp_path / "gen"], metrics="psnr", progress=False)
    ref = torch.from_numpy(read_video(tmp_path / "ref" / "v.mp4")).permute(0, 3, 1, 2).float()
    resized = torch.nn.functional.interpolate(ref, size=(24, 40), mode="bilinear", antialias=True, align_corners=False)
    ref = resized.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)[:, :, 4:36].numpy()
    gen = read_video(tmp_path / "gen" / "v.mp4")
    np.testing.assert_allclose(result.videos[0].values["psnr"], straightforward_psnr(ref, gen), atol=1e-5)


def test_frames_too_small_for_a_metric_are_an_input_error(tmp_path):
    write_video(tmp_path / "ref" / "tiny.mp4", content(2, 24, 32, seed=1))
    write_video(tmp_path / "gen" / "tiny.mp4", content(2, 24, 32, seed=2))
    with pytest.raises(MetricsError, match=r"tiny\.mp4: frames are 32x24, LPIPS needs at least 31x31"):
        evaluate(tmp_path / "ref", [tmp_path / "gen"], metrics="psnr,lpips", lpips_model=random_lpips(), progress=False)


@pytest.fixture
def with_problems(tmp_path, folders) -> Path:
    """base / gen where gen has a corrupt video and one longer than its reference."""
    for name in LENGTHS:
        (tmp_path / "gen").mkdir(exist_ok=True)
        (tmp_path / "gen" / name).write_bytes((folders["fast"] / name).read_bytes())
    (tmp_path / "gen" / "b.mp4").write_bytes(b"\x00" * 100)
    write_video(tmp_path / "gen" / "c.mp4", content(12, 32, 40, seed=9))  # the reference has 8 frames
    return tmp_path / "gen"


def test_bad_videos_stop_the_run_with_their_names(folders, with_problems):
    with pytest.raises(MetricsError, match=r"cannot decode .*b\.mp4.*; or pass --skip-bad to evaluate the other"):
        evaluate(folders["base"], [with_problems], metrics="psnr", progress=False, workers=0)


def test_skip_bad_evaluates_the_rest_and_reports_why(folders, with_problems):
    (result,) = evaluate(folders["base"], [with_problems], metrics="psnr", skip_bad=True, progress=False)
    assert [v.name for v in result.videos] == ["a.mp4"]
    assert set(result.skipped) == {"b.mp4", "c.mp4"}
    assert "cannot decode" in result.skipped["b.mp4"]
    assert "8 frames, fewer than the generated video's 12" in result.skipped["c.mp4"]
    assert not any("--skip-bad" in reason for reason in result.skipped.values())  # it is in use already
    summary = format_summary(result)
    assert "skipped (--skip-bad): b.mp4" in summary and "skipped (--skip-bad): c.mp4" in summary


def test_videos_scored_despite_another_length_size_or_frame_rate_are_flagged(tmp_path):
    """The reference definitions score them (first frames; resize and crop; frame by frame), but each
    usually means the two runs used other settings: a warning at the first of each kind, all in the summary."""
    frames = content(7, 48, 80, seed=1)
    for name in ("short.mp4", "small.mp4", "slow.mp4", "same.mp4"):
        write_video(tmp_path / "ref" / name, frames)
    write_video(tmp_path / "gen" / "short.mp4", noisy(frames[:5], 6, seed=2))
    write_video(tmp_path / "gen" / "small.mp4", content(7, 24, 32, seed=3))
    write_video(tmp_path / "gen" / "slow.mp4", noisy(frames, 6, seed=4), fps=4)
    write_video(tmp_path / "gen" / "same.mp4", noisy(frames, 6, seed=5))
    with pytest.warns(MetricsWarning) as caught:
        (result,) = evaluate(tmp_path / "ref", [tmp_path / "gen"], metrics="psnr", progress=False)
    expected = {"frames": ["short.mp4 (5 of 7 frames)"], "size": ["small.mp4 (32x24, reference 80x48)"]}
    expected["fps"] = ["slow.mp4 (4 fps, reference 8)"]
    assert result.mismatches == expected and result.to_dict()["mismatches"] == expected
    messages = sorted(str(w.message) for w in caught if issubclass(w.category, MetricsWarning))
    assert len(messages) == 3
    assert messages[0].endswith(
        "short.mp4 (5 of 7 frames) has fewer frames than the reference video: scored "
        "against the reference's first frames; the summary lists all such"
    )
    assert "slow.mp4 (4 fps, reference 8) has another frame rate than the reference video" in messages[1]
    assert (
        "small.mp4 (32x24, reference 80x48) has smaller frames than the reference video: the reference is "
        "resized (aspect kept) and centre-cropped" in messages[2]
    )
    summary = format_summary(result)
    assert "note: 1 video with fewer frames than the reference video: scored against the reference's first" in summary
    assert "note: 1 video with another frame rate than the reference video" in summary
    assert len(result.videos) == 4  # all scored, as the reference tools do


def test_a_folder_compared_with_itself_or_with_a_copy_is_flagged(tmp_path, folders):
    with pytest.warns(MetricsWarning, match="is the reference folder itself: every video is compared with itself"):
        (same,) = evaluate(folders["base"], [folders["base"]], metrics="psnr", progress=False)
    assert same.mean("psnr") == 100.0 and same.all_identical
    assert "note: every video is identical to its reference" in format_summary(same)
    shutil.copytree(folders["base"], tmp_path / "copy")  # e.g. generated with the plugin not turned on
    with pytest.warns(MetricsWarning, match=r"copy: every video is identical to its reference: is this the refer"):
        (copy,) = evaluate(folders["base"], [tmp_path / "copy"], metrics="psnr", progress=False)
    assert copy.to_dict()["identical_videos"] == 3
    (fast,) = evaluate(folders["base"], [folders["fast"]], metrics="psnr", progress=False)
    assert fast.identical == 0 and not fast.all_identical and "identical" not in format_summary(fast)


def test_allow_missing_reports_what_was_left_out(tmp_path, folders):
    for name in ("a.mp4", "b.mp4"):
        (tmp_path / "gen").mkdir(exist_ok=True)
        (tmp_path / "gen" / name).write_bytes((folders["fast"] / name).read_bytes())
    write_video(tmp_path / "gen" / "extra.mp4", content(3, 32, 40, seed=5))
    with pytest.raises(MetricsError, match="--allow-missing"):
        evaluate(folders["base"], [tmp_path / "gen"], metrics="psnr", progress=False)
    (result,) = evaluate(folders["base"], [tmp_path / "gen"], metrics="psnr", allow_missing=True, progress=False)
    assert [v.name for v in result.videos] == ["a.mp4", "b.mp4"]
    assert result.to_dict()["left_out"] == {"missing_in_generated": ["c.mp4"], "missing_in_reference": ["extra.mp4"]}


def test_unknown_metric_and_bad_batch_size(folders):
    with pytest.raises(MetricsError, match="unknown metric 'fid'"):
        parse_metrics("psnr,fid")
    assert parse_metrics(" SSIM, psnr,ssim") == ("ssim", "psnr")
    with pytest.raises(MetricsError, match="at least 1"):
        evaluate(folders["base"], [folders["fast"]], metrics="psnr", batch_size=0, progress=False)


def test_result_files(tmp_path, folders):
    (result,) = evaluate(folders["base"], [folders["fast"]], metrics="psnr,ssim", progress=False)
    json_path, csv_path = write_results(result, tmp_path / "out" / "fast.json", {"device": "cpu"})
    assert (json_path.name, csv_path.name) == ("fast.json", "fast.csv")
    data = json.loads(json_path.read_text())
    assert data["mean"]["psnr"] == pytest.approx(result.mean("psnr"))
    assert len(data["per_frame_index_mean"]["ssim"]) == 7
    assert [v["frames"] for v in data["videos"]] == [5, 7, 6]
    assert data["settings"] == {"device": "cpu"}
    rows = list(csv.DictReader(csv_path.open()))
    assert [r["video"] for r in rows] == sorted(LENGTHS)
    assert float(rows[1]["psnr"]) == pytest.approx(result.videos[1].mean("psnr"), abs=1e-6)
    assert sorted(p.name for p in json_path.parent.iterdir()) == ["fast.csv", "fast.json"]  # no temp files
    into_folder = write_results(result, f"{tmp_path / 'results'}/")
    assert into_folder == (tmp_path / "results" / "fast.json", tmp_path / "results" / "fast.csv")


def test_eval_script_end_to_end(tmp_path, folders):
    run = run_script(
        "eval/common_metrics/eval.py",
        "--gt_video_dir",
        str(folders["base"]),
        "--generated_video_dir",
        str(folders["slow"]),
        "--metrics",
        "psnr,ssim",
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "slow"),
    )
    assert run.returncode == 0, run.stderr
    data = json.loads((tmp_path / "slow.json").read_text())
    assert f"PSNR {data['mean']['psnr']:.4f} dB" in run.stdout
    assert "worst by PSNR" in run.stdout and (tmp_path / "slow.csv").is_file()


def test_eval_script_errors_are_one_clear_line(tmp_path, folders):
    run = run_script(
        "eval/common_metrics/eval.py",
        "--gt_video_dir",
        str(folders["base"]),
        "--generated_video_dir",
        str(folders["fast"]),
        "--device",
        "cpu",
        env={"TORCH_HOME": str(tmp_path)},
    )
    assert run.returncode != 0
    assert run.stderr.startswith("error: LPIPS needs AlexNet's ImageNet weights")
    assert "Traceback" not in run.stderr
