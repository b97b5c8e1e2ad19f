"""End to end with VideoSys: ``experiments/opensora.py --tiny`` generates real mp4 files on the CPU."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
from videosys_helpers import EXPERIMENT_SCRIPT, FAST_SKIPS, manifest
from videosys_helpers import run_cli as generate

pytestmark = pytest.mark.videosys


def manifest_parts(out):
    return [
        json.loads(line)
        for part in (out / ".magcache" / "parts").glob("*.jsonl")
        for line in part.read_text().splitlines()
    ]


def decode(path):
    import imageio.v2 as imageio

    reader = imageio.get_reader(str(path))
    frames = [frame for frame in reader]
    reader.close()
    return frames


def test_base_writes_playable_videos_and_a_manifest(cli, capsys, prompts, tmp_path):
    out = tmp_path / "base"
    text = generate(
        cli,
        capsys,
        "--method",
        "base",
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
    assert "1 distinct" in text and "generated 1 videos" in text
    frames = decode(out / "a red fox in the snow-0.mp4")
    assert len(frames) == 17 and frames[0].shape[2] == 3 and frames[0].std() > 0
    [record] = manifest(out)
    assert record["method"] == "base" and record["computed_steps"] == list(range(10)) and record["skipped_steps"] == []
    assert 0 < record["latency_transformer_s"] < record["latency_total_s"]


def test_magcache_fast_skips_the_preset_steps_and_resumes_without_work(cli, capsys, prompts, tmp_path):
    out = tmp_path / "fast"
    args = ["--method", "magcache-fast", "--tiny", "--prompts", prompts, "--num-samples", "1", "--out", out]
    generate(cli, capsys, *args)
    assert len(decode(out / "a red fox in the snow-0.mp4")) == 17
    [record] = manifest(out)
    assert record["skipped_steps"] == FAST_SKIPS
    assert record["computed_steps"] == [0, 1, 2, 3, 4, 5, 9, 13, 17, 21, 25, 29] and record["num_computed"] == 12
    again = generate(cli, capsys, *args)
    assert "generated 0 videos" in again and "| magcache-fast | 1/1 |" in again
    assert manifest(out) == [record]


def test_calibration_writes_a_table_the_magcache_method_takes(cli, capsys, prompts, tmp_path):
    out = tmp_path / "calib"
    text = generate(
        cli,
        capsys,
        "--method",
        "magcache-calibrate",
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
    table_path = out / "ratio_table.json"
    assert f"wrote {table_path}" in text
    table = json.loads(table_path.read_text())
    assert table["num_steps"] == 10 and len(table["ratios"]) == 9 and all(r > 0 for r in table["ratios"])
    assert len(table["std"]) == 9 and len(table["cosine_distance"]) == 9
    plan = generate(
        cli,
        capsys,
        "--method",
        "magcache",
        "--mag-ratios",
        table_path,
        "--threshold",
        "0.5",
        "--tiny",
        "--steps",
        "10",
        "--prompts",
        prompts,
        "--out",
        tmp_path / "use",
        "--dry-run",
    )
    assert "computes" in plan and "of 10 steps" in plan


def test_a_size_videosys_does_not_have_stops_before_any_model(cli, capsys, prompts, tmp_path):
    code = cli.main(
        ["--method", "base", "--tiny", "--resolution", "999p", "--prompts", str(prompts), "--out", str(tmp_path / "o")]
    )
    assert code == 2 and "has no size for --resolution 999p" in capsys.readouterr().err


def test_engine_path_builds_each_rank_from_the_pickled_config(cli, capsys, tmp_path, monkeypatch):
    """The GPU path on the CPU: a stand-in engine does what VideoSysEngine does for each rank
    (unpickle the config, ``config.pipeline_cls(config)``), with the tiny components."""
    import pickle

    import torch

    from magcache_videosys.tiny import tiny_components
    from magcache_videosys.videosys_compat import import_videosys

    videosys = import_videosys()
    ranks = []

    class StandInEngine:
        def __init__(self, config):
            rank_config = pickle.loads(pickle.dumps(config))
            self.driver_worker = rank_config.pipeline_cls(rank_config, device=torch.device("cpu"), **tiny_components())
            ranks.append(rank_config)

        def generate(self, *args, **kwargs):
            return self.driver_worker.generate(*args, **kwargs)

    monkeypatch.setattr(videosys, "VideoSysEngine", StandInEngine)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    for key, value in {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "CUDA_VISIBLE_DEVICES": "4,6"}.items():
        monkeypatch.setenv(key, value)
    prompts = tmp_path / "p.txt"
    prompts.write_text("a lighthouse at night\n")
    out = tmp_path / "engine"
    text = generate(
        cli,
        capsys,
        "--method",
        "magcache",
        "--threshold",
        "0.5",
        "--K",
        "2",
        "--dtype",
        "fp32",
        "--steps",
        "10",
        "--resolution",
        "144p",
        "--frames",
        "17",
        "--prompts",
        prompts,
        "--num-samples",
        "2",
        "--out",
        out,
    )
    assert "shard 1/2 (torchrun (RANK/WORLD_SIZE)): 1 videos" in text
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "6"
    [rank] = ranks
    assert rank.enable_magcache and rank.magcache_config.threshold == 0.5 and rank.num_sampling_steps == 10
    assert rank.pipeline_cls.kwargs == {"dtype": torch.float32}
    assert [p.name for p in out.glob("*.mp4")] == ["a lighthouse at night-1.mp4"]
    [record] = manifest_parts(out)
    assert record["seed"] == 1 and record["settings"]["transformer"] == "hpcai-tech/OpenSora-STDiT-v3"
    assert record["skipped_steps"] and record["num_computed"] + len(record["skipped_steps"]) == 10
    assert 0 < record["latency_transformer_s"] < record["latency_total_s"]


ROOT = EXPERIMENT_SCRIPT.parents[1]
NOISE = ("timm.models.layers", "FusedRMSNorm", "Disabling autocast", "parallel manager")


def script_env():
    """This checkout first on the path (the script's own folder is experiments/), then VideoSys."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def three_prompts(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("a red fox\na blue whale\na 24/7 diner\n")
    return str(path)


def test_ctrl_c_prints_one_line_saying_what_was_kept(tmp_path):
    """SIGINT during generation printed an 81-line [rank0] traceback."""
    out = tmp_path / "run"
    command = [sys.executable, str(EXPERIMENT_SCRIPT), "--method", "base", "--tiny", "--steps", "2"]
    proc = subprocess.Popen(
        [*command, "--prompts", three_prompts(tmp_path), "--num-samples", "6", "--out", str(out)],
        cwd=ROOT,
        env=script_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell starts background jobs with SIGINT ignored and a child inherits that: a suite run
        # with `&` would see no Ctrl-C at all. The user's terminal delivers it; so does this.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    part = out / ".magcache" / "parts" / "shard0-of-1.jsonl"
    end = time.monotonic() + 300
    while not (part.exists() and part.stat().st_size):
        assert proc.poll() is None and time.monotonic() < end, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "[rank0]" not in err
    assert not any(noise in err for noise in NOISE)  # and no third-party noise either
    last = err.strip().splitlines()[-1]
    assert re.fullmatch(
        r"experiments/opensora.py: interrupted \(Ctrl-C\)\. \d+ of 18 videos of the run are done in "
        rf"{re.escape(str(out))}, each with its record; the video in progress was dropped\. "
        r"Rerun the same command to resume\.",
        last,
    ), last
    kept = sorted(p.name for p in out.glob("*.mp4"))
    assert kept and kept == sorted(r["video"] for r in manifest_parts(out))
    assert not list((out / ".magcache" / "partial").iterdir())


def test_third_party_output_shows_only_with_verbose(tmp_path):
    command = [sys.executable, str(EXPERIMENT_SCRIPT), "--method", "base", "--tiny", "--steps", "2", "--limit", "1"]
    command += ["--num-samples", "1", "--verbose", "--out", str(tmp_path / "run")]
    done = subprocess.run(command, cwd=ROOT, env=script_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert any(noise in done.stderr for noise in NOISE)


def test_torchrun_ranks_each_take_their_shard_of_a_tiny_run(tmp_path):
    """`torchrun --nproc-per-node 2 ... --tiny` hung forever: the one-process gloo group of --tiny
    waited on torchrun's agent store."""
    torchrun = shutil.which("torchrun") or pytest.skip("torchrun is not on PATH")
    out = tmp_path / "run"
    command = [torchrun, "--standalone", "--nproc-per-node", "2", str(EXPERIMENT_SCRIPT), "--method", "magcache-fast"]
    command += [
        "--tiny",
        "--steps",
        "10",
        "--prompts",
        three_prompts(tmp_path),
        "--num-samples",
        "1",
        "--out",
        str(out),
    ]
    done = subprocess.run(command, cwd=ROOT, env=script_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "shard 0/2 (torchrun (RANK/WORLD_SIZE)): 2 videos" in done.stdout
    assert "shard 1/2 (torchrun (RANK/WORLD_SIZE)): 1 videos" in done.stdout
    parts = {p.name: p.read_text().count("\n") for p in (out / ".magcache" / "parts").glob("*.jsonl")}
    assert parts == {"shard0-of-2.jsonl": 2, "shard1-of-2.jsonl": 1}
    records = manifest(out)
    assert sorted(r["video"] for r in records) == sorted(p.name for p in out.glob("*.mp4")) and len(records) == 3
    assert {r["shard"] for r in records} == {"0/2", "1/2"} and all(r["num_computed"] == 4 for r in records)
    assert "| magcache-fast | 3/3 |" in done.stdout


def test_a_run_that_cannot_start_creates_nothing(cli, capsys, prompts, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "deep" / "run"
    code = cli.main(["--method", "base", "--prompts", str(prompts), "--num-samples", "1", "--out", str(out)])
    assert code == 2 and "no CUDA GPU is visible" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [prompts]
