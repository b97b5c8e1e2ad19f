"""The schedule, sweep, ratios and calibrate commands."""

import json
import subprocess
import sys

import pytest

from magcache_videosys.cli import main

FAST_SKIPS = [6, 7, 8, 10, 11, 12, 14, 15, 16, 18, 19, 20, 22, 23, 24, 26, 27, 28]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_schedule_preset_text(capsys):
    code, out, _ = run(capsys, "schedule", "--preset", "opensora-fast")
    assert code == 0
    assert "full transformer passes: 12 of 30 (computed: 0 1 2 3 4 5 9 13 17 21 25 29)" in out
    assert "skipped: " + " ".join(map(str, FAST_SKIPS)) in out
    assert "predicted transformer-loop speedup: 2.50x" in out
    assert "retention 0.2 (6 steps always computed), ratio power 0.5" in out
    # step 6 reads sqrt(ratio[5]) = sqrt(0.99609)
    assert "   6  skip     0.99804    0.99804  0.00196" in out


@pytest.mark.parametrize(
    "preset, skipped",
    [
        ("opensora-slow", list(range(6, 30, 2))),
        ("opensora-turbo", [6, 7, 8, 9, 10, 12, 13, 14, 15, 16, 18, 19, 20, 21, 22, 24, 25, 26, 27, 28]),
    ],
)
def test_schedule_json_for_each_preset(capsys, preset, skipped):
    code, out, _ = run(capsys, "schedule", "--preset", preset, "--json")
    data = json.loads(out)
    assert code == 0 and data["skipped_steps"] == skipped and data["table"] == "opensora-v1.2"
    assert data["num_computed"] == 30 - len(skipped)


def test_schedule_with_explicit_knobs_on_a_table_file(capsys, tmp_path):
    table = tmp_path / "mine.json"
    table.write_text(json.dumps({"ratios": [0.9] * 9, "name": "mine"}))
    code, out, _ = run(
        capsys,
        "schedule",
        "--ratios",
        str(table),
        "--threshold",
        "0.15",
        "--K",
        "2",
        "--retention-ratio",
        "0.2",
        "--json",
    )
    assert code == 0 and json.loads(out)["skipped_steps"] == [2, 4, 6, 8]


def test_schedule_on_another_step_count_needs_a_resampling_choice(capsys):
    argv = [
        "schedule",
        "--ratios",
        "opensora-v1.2",
        "--threshold",
        "0.12",
        "--K",
        "3",
        "--retention-ratio",
        "0.2",
        "--ratio-power",
        "0.5",
        "--steps",
        "50",
    ]
    code, _, err = run(capsys, *argv)
    assert code == 2 and "is for 30 steps but --steps is 50; add --resample nearest or --resample linear" in err
    code, out, _ = run(capsys, *argv, "--resample", "linear")
    assert code == 0 and "resampled (linear) from 30 steps" in out and "of 50 (computed" in out
    code, out, _ = run(capsys, *argv[:-2], "--steps", "30", "--json")
    assert json.loads(out)["skipped_steps"] == FAST_SKIPS  # same step count: no resampling asked


def test_sweep_agrees_with_schedule(capsys, tmp_path):
    code, out, _ = run(
        capsys,
        "sweep",
        "--thresholds",
        "0.06,0.12,0.24",
        "--K",
        "1,3,5",
        "--retention-ratios",
        "0.1,0.2",
        "--json",
        "--target-passes",
        "12",
        "--csv",
        str(tmp_path / "grid.csv"),
    )
    assert code == 0
    rows = json.loads(out)["rows"]
    assert len(rows) == 18
    for row in rows:
        _, sched, _ = run(
            capsys,
            "schedule",
            "--ratios",
            "opensora-v1.2",
            "--ratio-power",
            "0.5",
            "--threshold",
            str(row["threshold"]),
            "--K",
            str(row["K"]),
            "--retention-ratio",
            str(row["retention_ratio"]),
            "--json",
        )
        assert json.loads(sched)["num_computed"] == row["passes"]
    fast = [r for r in rows if (r["threshold"], r["K"], r["retention_ratio"]) == (0.12, 3, 0.2)]
    assert fast[0]["skipped_steps"] == " ".join(map(str, FAST_SKIPS))
    assert (tmp_path / "grid.csv").read_text().splitlines()[
        0
    ] == "retention_ratio,K,threshold,passes,predicted_speedup,skipped_steps"
    reach = json.loads(out)["reaching_target"]
    assert reach and all(r["passes"] <= 12 for r in reach) and reach[0]["passes"] == 12


def test_sweep_plot_is_a_png(capsys, tmp_path):
    path = tmp_path / "plots" / "sweep.png"
    code, out, _ = run(capsys, "sweep", "--thresholds", "0.02:0.1:0.04", "--K", "1:3", "--plot", str(path))
    assert code == 0 and "threshold" in out and f"wrote {path}" in out
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    import matplotlib.image

    height, width, _ = matplotlib.image.imread(path).shape
    assert height > 100 and width > 100
    assert [p.name for p in path.parent.iterdir()] == ["sweep.png"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["sweep", "--thresholds", "0.3:0.1:0.02"], "the grid has no points: --thresholds is empty"),
        (["sweep", "--K=-1,2"], "invalid grid values: K -1"),
        (["sweep", "--retention-ratios", "1.0"], "invalid grid values: retention ratio 1"),
        (["sweep", "--thresholds", "a,b"], "cannot read 'a,b' as numbers"),
        (
            ["schedule", "--preset", "opensora-fast", "--threshold", "0.2"],
            "--preset opensora-fast fixes the table and knobs, so --threshold contradicts it",
        ),
        (["schedule"], "give --preset NAME, or --ratios TABLE"),
        (["schedule", "--ratios", "opensora-v1.2", "--threshold", "0.1"], "--ratios needs --K, --retention-ratio too"),
        (
            ["schedule", "--ratios", "nope", "--threshold", "0.1", "--K", "1", "--retention-ratio", "0.2"],
            "unknown ratio table 'nope'",
        ),
        (
            ["schedule", "--ratios", "opensora-v1.2", "--threshold", "-1", "--K", "1", "--retention-ratio", "0.2"],
            "threshold must be a finite number >= 0",
        ),
        (["calibrate", "--out", "x.json"], "give at least one --prompt"),
        (["calibrate", "--model", "wan", "--prompt", "p", "--out", "x.json"], "unknown --model 'wan'"),
    ],
)
def test_bad_input_is_one_clear_line(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2 and message in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "content, message",
    [("{oops", "not valid JSON"), ('{"x": 1}', "no 'ratios' list"), ('{"ratios": [0.9, -0.5]}', "positive finite")],
)
def test_bad_table_files(capsys, tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    code, _, err = run(capsys, "sweep", "--ratios", str(path))
    assert code == 2 and message in err


def test_calibrate_without_gpu_points_to_tiny(capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = run(capsys, "calibrate", "--prompt", "a cat", "--out", "x.json")
    assert code == 2 and "--tiny runs a CPU smoke calibration" in err


def test_ratios_lists_shipped_tables(capsys):
    code, out, _ = run(capsys, "ratios")
    assert code == 0 and out.startswith("opensora-v1.2: Open-Sora 1.2") and "source: MagCache reference" in out
    code, out, _ = run(capsys, "ratios", "--json")
    assert json.loads(out)[0]["num_steps"] == 30


def test_module_and_console_script_entry_points():
    out = subprocess.run(
        [sys.executable, "-m", "magcache_videosys", "schedule", "--preset", "opensora-slow", "--json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out)["num_computed"] == 18
    from pathlib import Path

    script = Path(sys.executable).with_name("magcache-videosys")
    assert script.exists(), "pip install -e . installs the magcache-videosys console script"
    assert "schedule" in subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True).stdout


@pytest.mark.videosys
def test_calibrate_tiny_writes_a_table_that_drives_a_run(capsys, tmp_path):
    from magcache_videosys import MagCacheConfig, enable_magcache, get_stats, load_ratio_table
    from magcache_videosys.tiny import tiny_opensora_pipeline

    out, plot = tmp_path / "tiny.json", tmp_path / "curve.png"
    code, text, err = run(
        capsys,
        "calibrate",
        "--tiny",
        "--steps",
        "12",
        "--resolution",
        "144p",
        "--aspect-ratio",
        "1:1",
        "--frames",
        "17",
        "--prompt",
        "a cat",
        "--prompt",
        "a dog",
        "--seeds",
        "0,1",
        "--out",
        str(out),
        "--plot",
        str(plot),
    )
    assert code == 0, err
    table = load_ratio_table(out)
    assert table.num_steps == 12 and len(table.std) == len(table.cosine_distance) == 11
    assert table.settings["runs"] == 4 and table.settings["prompts"] == ["a cat", "a dog"]
    assert table.settings["resolution"] == "144p" and "torch" in table.settings["versions"]
    assert plot.read_bytes()[:8] == PNG_SIGNATURE
    cfg = MagCacheConfig(mag_ratios=str(out), threshold=0.5, max_skip_steps=2, retention_ratio=0.2)
    pipe = tiny_opensora_pipeline(num_sampling_steps=12)
    enable_magcache(pipe, cfg)
    pipe.generate("a bird", seed=0, resolution="144p", aspect_ratio="1:1", num_frames=17, verbose=False)
    assert get_stats(pipe).skipped_steps == cfg.plan().skipped_steps
