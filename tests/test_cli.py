"""The schedule, sweep, ratios and calibrate commands."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

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


def test_sweep_plot_is_a_png_readable_like_any_new_file(capsys, tmp_path):
    path = tmp_path / "sweep.png"
    mask = os.umask(0o022)
    try:
        code, out, _ = run(capsys, "sweep", "--thresholds", "0.02:0.1:0.04", "--K", "1:3", "--plot", str(path))
    finally:
        os.umask(mask)
    assert code == 0 and "threshold" in out and f"wrote {path}" in out
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not 0600: others who share the folder can read it
    import matplotlib.image

    height, width, _ = matplotlib.image.imread(path).shape
    assert height > 100 and width > 100
    assert [p.name for p in path.parent.iterdir()] == ["sweep.png"]


def test_sweep_plot_answers_the_target_question():
    from magcache_videosys.plots import region_edges, sweep_figure
    from magcache_videosys.schedule import sweep

    plans = sweep([0.99**0.5 for _ in range(29)], [0.02, 0.06, 0.12], [1, 2, 3], [0.2])
    fig = sweep_figure(plans, target_passes=14, title="t")
    ax = fig.axes[0]
    passes = [[p.num_computed for p in plans if p.max_skip_steps == k] for k in (1, 2, 3)]
    assert passes == [[18, 18, 18], [14, 14, 14], [14, 12, 12]]
    # one colour per pass count present: the scale runs 12..18, not 1..30
    norm = ax.images[0].norm
    assert (norm.vmin, norm.vmax, norm.Ncmap) == (11.5, 18.5, 7)
    assert ax.images[0].cmap(norm(12)) != ax.images[0].cmap(norm(14))
    # the line encloses exactly the cells with at most 14 passes (K 2 and 3: rows 1 and 2)
    [outline] = [c for c in ax.collections if c.get_gid() == "target"]
    edges = sorted(tuple(map(tuple, seg.tolist())) for seg in outline.get_segments())
    assert edges == sorted(region_edges([[False] * 3, [True] * 3, [True] * 3]))
    assert len(edges) == 3 + 3 + 2 + 2  # top, bottom, left and right sides of a 2 x 3 block
    # the best setting (most passes within the target, then lowest threshold and K) is starred and named
    [star] = [line for line in ax.lines if line.get_gid() == "best"]
    assert (round(star.get_xdata()[0]), round(star.get_ydata()[0])) == (0, 1)  # threshold 0.02, K 2
    assert "best (*): threshold 0.02, K 2, retention 0.2, 14 passes, 2.14x" in fig._suptitle.get_text()
    assert "6 of 9 settings reach 14 passes or fewer" in fig._suptitle.get_text()
    none = sweep_figure(plans, target_passes=5)
    assert "no setting here reaches 5 passes or fewer; raise the thresholds or K" in none._suptitle.get_text()
    assert not [c for c in none.axes[0].collections if c.get_gid() == "target" and len(c.get_segments())]


SCHEDULE = ["schedule", "--ratios", "opensora-v1.2", "--threshold", "0.1", "--K", "1", "--retention-ratio", "0.2"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["sweep", "--thresholds", "0.3:0.1:0.02"], "argument --thresholds: '0.3:0.1:0.02' gives no values"),
        (["sweep", "--K=-1,2"], "argument --K: -1 is out of range: every value must be >= 0"),
        (["sweep", "--retention-ratios", "1.0"], "argument --retention-ratios: 1 is out of range: every value must"),
        (["sweep", "--thresholds", "a,b"], "argument --thresholds: 'a' is not a number"),
        (["sweep", "--thresholds", "nan"], "argument --thresholds: 'nan' is not a finite number"),
        (["sweep", "--thresholds", "0.1:inf:0.1"], "argument --thresholds: 'inf' is not a finite number"),
        (["sweep", "--thresholds", "0:1:1e-6"], "range '0:1:1e-6' has 1000001 values; at most 1000"),
        (["sweep", "--thresholds", "0.1:0.3"], "cannot read '0.1:0.3': use a,b,c or start:stop:step"),
        (["sweep", "--ratio-power", "nan"], "argument --ratio-power: 'nan' is not a finite number"),
        (["sweep", "--target-passes", "0"], "argument --target-passes: 0 must be >= 1"),
        (["sweep", "--steps", "1"], "argument --steps: 1 must be >= 2"),
        ([*SCHEDULE, "--ratio-power", "0"], "argument --ratio-power: 0 must be > 0"),
        ([*SCHEDULE[:4], "inf", *SCHEDULE[5:]], "argument --threshold: 'inf' is not a finite number"),
        ([*SCHEDULE[:-1], "1"], "argument --retention-ratio: 1 must be >= 0 and < 1"),
        ([*SCHEDULE, "--K", "1.5"], "argument --K: '1.5' is not a whole number"),
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
        ([*SCHEDULE[:4], "-1", *SCHEDULE[5:]], "argument --threshold: -1 must be >= 0"),
        (["calibrate", "--out", "x.json"], "give at least one --prompt"),
        (["calibrate", "--model", "wan", "--prompt", "p", "--out", "x.json"], "argument --model: unknown model 'wan'"),
        (
            ["calibrate", "--prompt", "p", "--out", "x.json", "--frames", "0"],
            "argument --frames: --frames takes a frame count or a VideoSys duration",
        ),
        (["calibrate", "--prompt", "p", "--out", "x.json", "--steps", "1"], "argument --steps: 1 must be >= 2"),
        (["calibrate", "--prompt", "p", "--out", "x.json", "--cfg-scale", "nan"], "'nan' is not a finite number"),
        (["calibrate", "--prompt", "p", "--out", "x.json", "--num-gpus", "0"], "--num-gpus: 0 must be >= 1"),
        (["calibrate", "--prompt", "p", "--out", "x.json", "--num-samples", "0"], "--num-samples: 0 must be >= 1"),
        (["calibrate", "--prompt", "p"], "the following arguments are required: --out"),
    ],
)
def test_bad_input_is_one_clear_line(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and message in err and err.count("\n") == 1 and out == ""


def test_schedule_ratio_power_zero_is_not_one(capsys):
    # it used to be read as "not given" and silently replaced by 1
    code, _, err = run(capsys, *SCHEDULE, "--ratio-power", "0")
    assert code == 2 and "0 must be > 0" in err
    _, out, _ = run(capsys, *SCHEDULE, "--ratio-power", "0.25", "--json")
    assert json.loads(out)["ratio_power"] == 0.25


@pytest.mark.parametrize("option", ["--csv", "--plot"])
def test_sweep_output_paths_are_checked_before_any_work(capsys, tmp_path, option):
    code, out, err = run(capsys, "sweep", option, str(tmp_path))
    assert code == 2 and out == "" and f"{option} {tmp_path} is a folder; give a file name" in err
    missing = tmp_path / "no_such_dir" / "x.out"
    code, out, err = run(capsys, "sweep", option, str(missing))
    assert code == 2 and out == "" and f"the folder {missing.parent} does not exist; create it first" in err
    assert not missing.parent.exists()
    code, _, err = run(capsys, "sweep", option, "/nonexistent_dir_magcache/x.out")
    assert code == 2 and "the folder /nonexistent_dir_magcache does not exist" in err
    assert not os.path.exists("/nonexistent_dir_magcache")


def test_sweep_to_a_read_only_file_system_fails_first(capsys, tmpfs):
    mount = tmpfs(readonly=True)
    code, out, err = run(capsys, "sweep", "--csv", str(mount / "grid.csv"))
    assert code == 2 and out == "" and "is not writable; choose another path" in err


def test_calibrate_checks_out_and_plot_before_anything(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("magcache_videosys.experiments.runner.run", lambda *a, **k: pytest.fail("ran"))
    code, _, err = run(capsys, "calibrate", "--tiny", "--prompt", "a cat", "--out", str(tmp_path))
    assert code == 2 and f"--out {tmp_path} is a folder; give a file name" in err
    plot = tmp_path / "missing" / "curve.png"
    code, _, err = run(
        capsys, "calibrate", "--tiny", "--prompt", "p", "--out", str(tmp_path / "t.json"), "--plot", str(plot)
    )
    assert code == 2 and f"--plot {plot}: the folder {plot.parent} does not exist" in err


def test_closed_stdout_ends_quietly():
    root = Path(__file__).resolve().parents[1]
    for argv in (["schedule", "--preset", "opensora-fast", "--json"], ["sweep"]):
        proc = subprocess.Popen(
            [sys.executable, "-m", "magcache_videosys", *argv], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        proc.stdout.close()  # the reader is gone before the command prints (``... | head`` that exits)
        err = proc.stderr.read().decode()
        assert proc.wait() == 141 and err == "", err


@pytest.mark.parametrize(
    "content, message",
    [("{oops", "not valid JSON"), ('{"x": 1}', "no 'ratios' list"), ('{"ratios": [0.9, -0.5]}', "positive finite")],
)
def test_bad_table_files(capsys, tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    code, _, err = run(capsys, "sweep", "--ratios", str(path))
    assert code == 2 and message in err


@pytest.mark.videosys
def test_calibrate_without_gpu_points_to_tiny(capsys, monkeypatch, tmp_path):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = run(capsys, "calibrate", "--prompt", "a cat", "--out", str(tmp_path / "x.json"))
    assert code == 2 and "no CUDA GPU is visible" in err and "use --tiny for a CPU smoke run" in err
    assert list(tmp_path.iterdir()) == []  # not even the videos folder


def test_ratios_lists_shipped_tables(capsys):
    code, out, _ = run(capsys, "ratios")
    [line] = [line for line in out.splitlines() if line.startswith("opensora-v1.2: ")]
    assert code == 0 and line.startswith("opensora-v1.2: Open-Sora 1.2") and "source: MagCache reference" in out
    assert "30 steps, ratio power 0.5" in line
    code, out, _ = run(capsys, "ratios", "--json")
    assert {t["name"]: t["num_steps"] for t in json.loads(out)}["opensora-v1.2"] == 30


def test_module_and_console_script_entry_points():
    out = subprocess.run(
        [sys.executable, "-m", "magcache_videosys", "schedule", "--preset", "opensora-slow", "--json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out)["num_computed"] == 18
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
        "--num-samples",
        "2",
        "--out",
        str(out),
        "--plot",
        str(plot),
    )
    assert code == 0, err
    table = load_ratio_table(out)
    assert table.num_steps == 12 and len(table.std) == len(table.cosine_distance) == 11
    assert table.settings["videos"] == 4 and table.settings["prompts"] == ["a cat", "a dog"]
    assert table.settings["seeds"] == [0, 1] and len(table.settings["ratio_std_across_videos"]) == 11
    assert sorted(p.name for p in (tmp_path / "tiny-videos").glob("*.mp4")) == [
        "a cat-0.mp4",
        "a cat-1.mp4",
        "a dog-0.mp4",
        "a dog-1.mp4",
    ]
    assert table.settings["resolution"] == "144p" and "torch" in table.settings["versions"]
    assert plot.read_bytes()[:8] == PNG_SIGNATURE
    cfg = MagCacheConfig(mag_ratios=str(out), threshold=0.5, max_skip_steps=2, retention_ratio=0.2)
    pipe = tiny_opensora_pipeline(num_sampling_steps=12)
    enable_magcache(pipe, cfg)
    pipe.generate("a bird", seed=0, resolution="144p", aspect_ratio="1:1", num_frames=17, verbose=False)
    assert get_stats(pipe).skipped_steps == cfg.plan().skipped_steps


@pytest.mark.videosys
@pytest.mark.parametrize(
    "option, message",
    [
        (["--resolution", "999p"], "VideoSys's Open-Sora has no size for --resolution 999p --aspect-ratio 1:1"),
        (["--resolution", "144p", "--aspect-ratio", "5:1"], "has no size for --resolution 144p --aspect-ratio 5:1"),
    ],
)
def test_calibrate_rejects_a_size_videosys_lacks_before_generating(capsys, tmp_path, option, message):
    argv = ["calibrate", "--tiny", "--aspect-ratio", "1:1", "--prompt", "p", "--out", str(tmp_path / "t.json")]
    code, _, err = run(capsys, *argv, *option)
    assert code == 2 and message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.videosys
def test_ctrl_c_in_calibrate_is_one_line(capsys, tmp_path, monkeypatch):
    from magcache_videosys.experiments.generation import VideoSysGenerator

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # what Ctrl-C raises in the middle of generating

    monkeypatch.setattr(VideoSysGenerator, "generate", interrupted)
    out = tmp_path / "t.json"
    try:
        code, _, err = run(capsys, "calibrate", "--tiny", "--resolution", "144p", "--prompt", "p", "--out", str(out))
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped main() and would print a traceback")
    assert code == 130 and not out.exists()
    assert err.strip().splitlines()[-1] == (  # after the progress bar
        "magcache-videosys calibrate: interrupted (Ctrl-C). no table was written yet. 0 of 1 videos of the run are "
        f"done in {tmp_path / 't-videos'}, each with its record; the video in progress was dropped. Rerun the same "
        "command to resume."
    )
