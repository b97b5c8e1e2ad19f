"""batch_eval.py: one table for every folder pair, latency and speedup from manifests, the plot."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import imageio
import numpy as np
import pytest
from metrics_scripts import REPO, run_script

from magcache_videosys.metrics.errors import MetricsError
from magcache_videosys.metrics.evaluate import evaluate
from magcache_videosys.metrics.report import batch_pairs, build_rows, markdown_table, read_manifest

NAMES = ("p0-0.mp4", "p1-0.mp4")


def write_manifest(folder: Path, method: str, total: float, transformer: float, names=NAMES) -> None:
    lines = [
        json.dumps({"video": name, "method": method, "latency_total_s": total, "latency_transformer_s": transformer})
        for name in names
    ]
    (folder / "manifest.jsonl").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("samples")
    rng = np.random.default_rng(0)
    for index, name in enumerate(NAMES):
        base = rng.integers(60, 200, (4, 32, 40, 3)).astype(np.uint8)
        for folder, noise in (("base", 0), ("magcache_fast", 12), ("magcache_slow", 5), ("teacache", 9)):
            frames = np.clip(base + rng.normal(0, noise, base.shape), 0, 255).astype(np.uint8) if noise else base
            (root / folder).mkdir(exist_ok=True)
            imageio.mimwrite(root / folder / name, list(frames), fps=8, macro_block_size=1)
    write_manifest(root / "base", "original", 40.0, 36.0)
    write_manifest(root / "magcache_fast", "magcache", 20.0, 16.0)
    write_manifest(root / "magcache_slow", "magcache", 30.0, 24.0)
    (root / "notes.txt").write_text("not a folder\n")
    return root


def test_rows_carry_latency_and_speedup_from_manifests(samples):
    results = evaluate(
        samples / "base", [samples / "magcache_fast", samples / "teacache"], metrics="psnr", progress=False
    )
    fast, teacache = build_rows(results)
    assert fast.method == "magcache" and fast.videos == 2
    assert fast.latency == {"latency_total_s": 20.0, "latency_transformer_s": 16.0}
    assert fast.speedup == {"latency_total_s": 2.0, "latency_transformer_s": 2.25}
    assert fast.means["psnr"] == pytest.approx(results[0].mean("psnr"))
    # no manifest: the folder name stands for the method, latency stays empty
    assert teacache.method == "teacache" and teacache.speedup["latency_total_s"] is None
    table = markdown_table([fast, teacache], ["psnr"])
    assert "| magcache | 2 |" in table and "| 20.00 | 16.00 | 2.00x | 2.25x |" in table
    assert table.splitlines()[-1].endswith("|  |  |  |  |")


def test_speedup_uses_only_videos_both_manifests_time(samples, tmp_path):
    folder = tmp_path / "partial"
    folder.mkdir()
    for name in NAMES:
        (folder / name).write_bytes((samples / "magcache_fast" / name).read_bytes())
    write_manifest(folder, "magcache", 10.0, 8.0, names=NAMES[:1])
    (row,) = build_rows(evaluate(samples / "base", [folder], metrics="psnr", progress=False))
    assert row.speedup["latency_total_s"] == 4.0 and row.latency["latency_total_s"] == 10.0


def test_warmup_videos_and_other_settings_are_left_out_of_latency(samples, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in NAMES:
        (folder / name).write_bytes((samples / "magcache_fast" / name).read_bytes())
    records = [
        {
            "video": NAMES[0],
            "method": "magcache",
            "latency_total_s": 99.0,
            "latency_transformer_s": 99.0,
            "warmup": True,
        },
        {"video": NAMES[1], "method": "magcache", "latency_total_s": 10.0, "latency_transformer_s": 8.0},
    ]
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (row,) = build_rows(evaluate(samples / "base", [folder], metrics="psnr", progress=False))
    assert row.latency["latency_total_s"] == 10.0 and row.speedup["latency_total_s"] == 4.0
    records[1]["settings"] = {"resolution": "240p"}
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    base_records = [
        {
            "video": n,
            "method": "base",
            "latency_total_s": 40.0,
            "latency_transformer_s": 36.0,
            "settings": {"resolution": "480p"},
        }
        for n in NAMES
    ]
    (tmp_path / "base").mkdir()
    for name in NAMES:
        (tmp_path / "base" / name).write_bytes((samples / "base" / name).read_bytes())
    (tmp_path / "base" / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in base_records))
    (row,) = build_rows(evaluate(tmp_path / "base", [folder], metrics="psnr", progress=False))
    assert row.latency["latency_total_s"] == 10.0 and row.speedup["latency_total_s"] is None


def test_bad_manifest_line_is_named(tmp_path):
    (tmp_path / "manifest.jsonl").write_text('{"video": "a.mp4"}\n{"video": \n')
    with pytest.raises(MetricsError, match=r"manifest\.jsonl:2 is not JSON"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.jsonl").write_text('{"method": "x"}\n')
    with pytest.raises(MetricsError, match=r"manifest\.jsonl:1 has no \"video\" field"):
        read_manifest(tmp_path)
    assert read_manifest(tmp_path / "absent") == {}


def test_glob_style_folder_lists_skip_the_reference_and_files(samples):
    generated = sorted(str(p) for p in samples.iterdir())
    pairs, notes = batch_pairs([samples / "base"], generated)
    assert pairs == [(samples / "base", [samples / n for n in ("magcache_fast", "magcache_slow", "teacache")])]
    assert notes == [f"skipping {samples / 'notes.txt'}: not a folder"]
    with pytest.raises(MetricsError, match="no generated folder"):
        batch_pairs([samples / "base"], [str(samples / "base")])


def test_folders_without_videos_are_passed_over_with_a_note(samples, tmp_path):
    (tmp_path / "empty").mkdir()  # a run that has not started writing
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "run.log").write_text("started\n")
    pairs, notes = batch_pairs([samples / "base"], [tmp_path / "empty", samples / "teacache", tmp_path / "logs"])
    assert pairs == [(samples / "base", [samples / "teacache"])]
    assert notes == [
        f"skipping {tmp_path / 'empty'}: no .mp4 videos in it",
        f"skipping {tmp_path / 'logs'}: no .mp4 videos in it",
    ]
    with pytest.raises(MetricsError, match="no generated folder with videos"):
        batch_pairs([samples / "base"], [tmp_path / "empty"])


def batch_eval(*args: str, env: dict[str, str] | None = None, wrapper: str = ""):
    """``batch_eval.py ARGS`` (PSNR and SSIM on CPU); ``wrapper`` is Python run first in the same process."""
    script = ["eval/common_metrics/batch_eval.py", *args, "--metrics", "psnr,ssim", "--device", "cpu"]
    if wrapper:
        runner = (
            f"{wrapper}\nimport runpy, sys\nsys.argv = sys.argv[1:]\nrunpy.run_path(sys.argv[0], run_name='__main__')"
        )
        script = ["-c", runner, *script]
    return run_script(*script, env=env)


def test_batch_eval_script(samples, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    generated = [*sorted(str(p) for p in samples.iterdir()), str(empty)]
    run = batch_eval(
        "--gt_video_dirs", str(samples / "base"), "--gen_video_dirs", *generated, "--out", str(tmp_path / "table")
    )
    assert run.returncode == 0, run.stderr
    assert f"skipping {empty}: no .mp4 videos in it" in run.stdout
    rows = list(csv.DictReader((tmp_path / "table.csv").open()))
    assert [Path(r["generated"]).name for r in rows] == ["magcache_fast", "magcache_slow", "teacache"]
    assert [r["speedup total"] for r in rows] == ["2.00x", "1.33x", ""]
    assert float(rows[1]["PSNR"]) > float(rows[0]["PSNR"])  # less noise, higher PSNR
    assert (tmp_path / "table.md").read_text() in run.stdout
    assert (tmp_path / "table.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_batch_eval_writes_next_to_the_reference_folder_by_default(samples, tmp_path):
    shutil.copytree(samples, tmp_path / "samples")
    run = batch_eval(
        "--gt_video_dirs",
        str(tmp_path / "samples" / "base"),
        "--gen_video_dirs",
        str(tmp_path / "samples" / "teacache"),
    )
    assert run.returncode == 0, run.stderr
    assert f"wrote {tmp_path / 'samples' / 'batch_eval.md'}" in run.stdout
    assert (tmp_path / "samples" / "batch_eval.csv").is_file()
    assert not list(REPO.glob("batch_eval.*"))  # not into the current folder


def test_batch_eval_without_matplotlib_says_so_first_and_writes_the_tables(samples, tmp_path):
    run = batch_eval(
        "--gt_video_dirs",
        str(samples / "base"),
        "--gen_video_dirs",
        str(samples / "magcache_fast"),
        "--out",
        str(tmp_path / "table"),
        wrapper="import sys; sys.modules['matplotlib'] = None  # as where it is not installed",
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr.startswith(
        f"warning: {tmp_path / 'table.png'} will not be drawn: matplotlib is not installed "
        "(pip install matplotlib, or pip install -e '.[eval]'); the tables will be"
    )
    assert "Traceback" not in run.stderr and not (tmp_path / "table.png").exists()
    assert (tmp_path / "table.md").is_file() and (tmp_path / "table.csv").is_file()
    assert run.stderr.strip().endswith(
        f"{tmp_path / 'table.png'} was not drawn: matplotlib is not installed "
        "(pip install matplotlib, or pip install -e '.[eval]')"
    )
