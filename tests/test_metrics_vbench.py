"""VBench scoring (normalisation, weights, missing dimensions) and run_vbench's checks before any GPU work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from magcache_videosys.metrics import vbench_run
from magcache_videosys.metrics.errors import MetricsError
from magcache_videosys.metrics.vbench_scores import DIMENSIONS, compute_scores, read_results

REPO = Path(__file__).resolve().parents[1]
QUALITY = [n for n, d in DIMENSIONS.items() if d.group == "quality"]
SEMANTIC = [n for n, d in DIMENSIONS.items() if d.group == "semantic"]


def at_fraction(fraction: dict[str, float]) -> dict[str, float]:
    """Raw scores placed at the given fraction of each dimension's min-max range."""
    return {n: DIMENSIONS[n].low + f * (DIMENSIONS[n].high - DIMENSIONS[n].low) for n, f in fraction.items()}


def test_the_sixteen_dimensions_and_their_groups():
    assert len(QUALITY) == 7 and len(SEMANTIC) == 9
    assert set(DIMENSIONS) == set(vbench_run.VBENCH_DIMENSIONS) == set(vbench_run.MODEL_FILES)
    assert DIMENSIONS["dynamic_degree"].weight == 0.5


def test_extremes_map_to_zero_and_one():
    assert compute_scores(at_fraction({n: 1.0 for n in DIMENSIONS})).total == pytest.approx(1.0)
    assert compute_scores(at_fraction({n: 0.0 for n in DIMENSIONS})).total == pytest.approx(0.0, abs=1e-9)


def test_weights_and_total():
    fractions = {n: 0.5 for n in QUALITY} | {"dynamic_degree": 1.0} | {n: 0.25 for n in SEMANTIC}
    scores = compute_scores({n: round(v, 4) for n, v in at_fraction(fractions).items()})
    quality = (6 * 0.5 + 0.5 * 1.0) / 6.5  # dynamic degree weighs half
    assert scores.quality == pytest.approx(quality, abs=1e-3)
    assert scores.semantic == pytest.approx(0.25, abs=1e-3)
    assert scores.total == pytest.approx((4 * quality + 0.25) / 5, abs=1e-3)


def test_raw_scores_are_rounded_to_four_decimals_like_the_reference():
    raw = at_fraction({n: 0.5 for n in DIMENSIONS}) | {"color": 0.80004}
    assert compute_scores(raw).normalized["color"] == 0.8


def test_missing_dimensions_are_named_and_scored_only_when_allowed():
    raw = at_fraction({n: 0.5 for n in DIMENSIONS if n not in ("scene", "color")})
    with pytest.raises(MetricsError, match=r"2 of 16 VBench dimensions have no result: color, scene.*--allow-missing"):
        compute_scores(raw)
    partial = compute_scores(raw, allow_missing=True)
    assert partial.missing == ["color", "scene"] and partial.to_dict()["partial"] is True
    assert partial.total == pytest.approx(0.5, abs=1e-4)  # raw scores are rounded to 4 decimals
    only_quality = compute_scores(at_fraction({n: 0.5 for n in QUALITY}), allow_missing=True)
    assert only_quality.semantic is None and only_quality.total is None


def write_results(folder: Path, name: str, scores: dict[str, float], videos: list[str] | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}_eval_results.json").write_text(json.dumps({d: [s, []] for d, s in scores.items()}))
    info = [{"prompt_en": "p", "dimension": list(scores), "video_list": ["p-0.mp4"] if videos is None else videos}]
    (folder / f"{name}_full_info.json").write_text(json.dumps(info))


def test_read_results(tmp_path):
    with pytest.raises(MetricsError, match="no \\*_eval_results.json files"):
        read_results(tmp_path)
    write_results(tmp_path, "color", {"color": 0.7})
    write_results(tmp_path, "scene", {"scene": 0.3})
    assert read_results(tmp_path) == {"color": 0.7, "scene": 0.3}
    write_results(tmp_path, "scene_again", {"scene": 0.4})
    os.utime(tmp_path / "scene_again_eval_results.json", (2e9, 2e9))  # newest file wins
    assert read_results(tmp_path)["scene"] == 0.4


def test_results_from_no_video_are_rejected(tmp_path):
    write_results(tmp_path, "color", {"color": 0.0}, videos=[])
    with pytest.raises(MetricsError, match=r"lists no video for color.*\{prompt\}-\{index\}\.mp4"):
        read_results(tmp_path)


def test_cal_vbench_script(tmp_path):
    for name, score in at_fraction({n: 0.6 for n in DIMENSIONS}).items():
        write_results(tmp_path, name, {name: score})
    run = subprocess.run(
        [sys.executable, "eval/vbench/cal_vbench.py", "--score_dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "total score     60.00%" in run.stdout
    saved = json.loads((tmp_path / "vbench_scores.json").read_text())
    assert saved["total_score"] == pytest.approx(0.6, abs=1e-4) and saved["partial"] is False


# ----- run_vbench: everything checked before the GPU work -----------------------------------------


@pytest.fixture
def video_setup(tmp_path, monkeypatch):
    """A prompt list, a video folder with correctly named videos and a manifest, an empty model cache."""
    info = tmp_path / "VBench_full_info.json"
    info.write_text(
        json.dumps(
            [
                {"prompt_en": "a cat", "dimension": ["subject_consistency", "color"]},
                {"prompt_en": "a dog", "dimension": ["temporal_flickering"]},
            ]
        )
    )
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("a cat-0.mp4", "a dog-0.mp4", "a dog-3.mp4"):
        (videos / name).write_bytes(b"")
    (videos / "manifest.jsonl").write_text("{}\n")
    monkeypatch.setenv("VBENCH_CACHE_DIR", str(tmp_path / "cache"))
    return info, videos


def test_expected_names_follow_vbench_standard_mode(video_setup):
    info, _ = video_setup
    assert vbench_run.expected_videos(info, ["color"]) == {f"a cat-{i}.mp4" for i in range(5)}
    assert len(vbench_run.expected_videos(info, ["color", "temporal_flickering"])) == 10


def test_wrongly_named_videos_are_reported(video_setup, tmp_path):
    info, _ = video_setup
    other = tmp_path / "other"
    other.mkdir()
    (other / "video_0001.mp4").write_bytes(b"")
    with pytest.raises(MetricsError, match=r"none of the 1 videos .* e\.g\. 'a cat-0\.mp4'"):
        vbench_run.run_vbench(other, tmp_path / "out", ["color"], full_info=info)


def test_missing_model_files_are_listed_with_their_source(video_setup, tmp_path):
    info, videos = video_setup
    missing = vbench_run.missing_model_files(["subject_consistency", "color", "temporal_flickering"])
    assert [(d, p.relative_to(tmp_path / "cache").as_posix()) for d, p, _ in missing] == [
        ("subject_consistency", "dino_model/facebookresearch_dino_main"),
        ("subject_consistency", "dino_model/dino_vitbase16_pretrain.pth"),
        ("color", "grit_model/grit_b_densecap_objectdet.pth"),
    ]
    with pytest.raises(MetricsError) as error:
        vbench_run.run_vbench(videos, tmp_path / "out", ["color"], full_info=info)
    message = str(error.value)
    assert "grit_b_densecap_objectdet.pth" in message and "datarelease.blob.core.windows.net" in message
    assert "--allow-download" in message and "VBENCH_CACHE_DIR" in message


def test_missing_vbench_package_is_a_clear_error(video_setup, tmp_path, monkeypatch):
    info, videos = video_setup

    def no_vbench(name):
        raise ModuleNotFoundError(f"No module named '{name}'")

    monkeypatch.setattr(vbench_run.importlib, "import_module", no_vbench)
    with pytest.raises(MetricsError, match=r"VBench cannot run: importing vbench failed \(No module named 'vbench'\)"):
        vbench_run.run_vbench(videos, tmp_path / "out", ["temporal_flickering"], full_info=info)
    monkeypatch.setattr(vbench_run.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MetricsError, match="the vbench package is not installed"):
        vbench_run.default_full_info()


def test_unknown_dimension(video_setup, tmp_path):
    with pytest.raises(MetricsError, match="unknown VBench dimensions \\['sharpness'\\]"):
        vbench_run.run_vbench(tmp_path, tmp_path / "out", ["sharpness"])


def test_vbench_runs_on_a_folder_holding_only_the_named_videos(video_setup, tmp_path, monkeypatch):
    """VBench guesses the suffix from the first directory entry: the manifest must not be visible."""
    info, videos = video_setup
    calls = []

    class FakeVBench:
        def __init__(self, device, full_info, output_path):
            calls.append(("init", full_info, output_path))

        def evaluate(self, videos_path, name, **kwargs):
            calls.append(("evaluate", sorted(p.name for p in Path(videos_path).iterdir()), name, kwargs))

    fake = type(sys)("vbench")
    fake.VBench = FakeVBench
    monkeypatch.setattr(vbench_run.importlib, "import_module", lambda name: fake)
    written = vbench_run.run_vbench(
        videos, tmp_path / "out", ["temporal_flickering"], device="cpu", full_info=info, log=lambda _: None
    )
    assert written == [tmp_path / "out" / "temporal_flickering_eval_results.json"]
    (_, info_arg, out_arg), (_, listed, name, kwargs) = calls
    assert (info_arg, out_arg) == (str(info), str(tmp_path / "out"))
    assert listed == ["a dog-0.mp4", "a dog-3.mp4"] and name == "temporal_flickering"
    assert kwargs["mode"] == "vbench_standard" and kwargs["local"] is True
