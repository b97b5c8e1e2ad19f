"""Faults that users of the VBench generation run met at scale, each reproduced: a full disk, a prompt
list that hands a file name to another prompt, two runs launched into one folder, writers killed
mid-record and mid-video, a resume with another sample count, a baseline that is not a base run.
Each must end with nothing lost and a clear message."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from magcache_videosys.experiments import manifest as mf
from magcache_videosys.experiments.generation import VideoSysGenerator
from magcache_videosys.experiments.manifest import ManifestError
from magcache_videosys.experiments.runner import Options, RunError, Sample, make_plan, run

ROOT = Path(__file__).resolve().parents[1]
CHILD = ROOT / "tests" / "fake_generation.py"


def prompt_file(tmp_path, *prompts):
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps([{"prompt_en": p} for p in prompts]))
    return path


def options(prompts, out, **kw):
    return Options(**{"method": "base", "out": out, "prompts": str(prompts), "num_samples": 1, **kw})


def videos(out):
    return sorted(p.name for p in out.glob("*.mp4"))


def part_records(out):
    return [
        json.loads(line)
        for part in sorted(mf.parts_dir(out).glob("*.jsonl"))
        for line in part.read_text().splitlines()
        if line.strip()
    ]


class TextGenerator:
    """The prompt and seed as the 'video'."""

    def __init__(self):
        self.calls = []

    def __call__(self, plan):
        return self

    def generate(self, prompt, seed):
        self.calls.append((prompt, seed))
        return Sample(video=f"{prompt}|{seed}", latency_transformer_s=1.0, latency_total_s=2.0)

    def save(self, sample, path):
        path.write_text(sample.video)

    def check(self, sample, path):
        if path.read_text() != sample.video:
            raise OSError(5, "does not read back", str(path))

    def close(self):
        pass


def child(*args, env_extra=None):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen(
        [sys.executable, str(CHILD), *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(path, proc, timeout=120):
    end = time.monotonic() + timeout
    while not Path(path).exists():
        assert proc.poll() is None, f"the child ended early ({proc.returncode}): {proc.communicate()[1][-2000:]}"
        assert time.monotonic() < end, f"{path} did not appear in {timeout} s"
        time.sleep(0.02)


def kill_9(proc):
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL


# --- 1. a full disk ---------------------------------------------------------------------------
class NoiseVideos(VideoSysGenerator):
    """The production video writer (VideoSys's save, and its read-back check) fed noise frames,
    which compress poorly (about 18 kB a video)."""

    def __init__(self, plan=None):
        from magcache_videosys.models import family_named

        self.calls = []
        self.family = family_named("opensora")

    def __call__(self, plan):
        return self

    def generate(self, prompt, seed):
        self.calls.append(prompt)
        frames = np.random.default_rng(len(self.calls)).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
        return Sample(video=frames, latency_transformer_s=1.0, latency_total_s=2.0)

    def close(self):
        pass


def test_a_full_disk_stops_the_run_and_records_no_broken_video(tmpfs, tmp_path):
    """ffmpeg hit "No space left on device" and imageio returned normally: a truncated mp4 (no moov
    atom) was renamed into place and recorded as done, so resume never regenerated it."""
    import imageio.v3 as iio

    disk = tmpfs("64k")
    out = disk / "run"
    prompts = prompt_file(tmp_path, "p0", "p1", "p2", "p3")
    with pytest.raises(
        RunError, match=f"disk full at {out}/p[0-3]-0.mp4 .No space left on device; ffmpeg exited"
    ) as error:
        run(make_plan(options(prompts, out)), NoiseVideos(), progress=False)
    assert "nothing was recorded for it" in str(error.value) and "rerun the same command" in str(error.value)
    recorded = [r["video"] for r in part_records(out)]
    assert 1 <= len(recorded) < 4 and videos(out) == recorded
    for name in recorded:
        assert iio.imread(out / name).shape[0] == 8  # whole, decodable videos
    assert not list(mf.partial_dir(out).iterdir())

    subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)
    again = NoiseVideos()
    result = run(make_plan(options(prompts, out)), again, progress=False)
    assert result.complete and len(again.calls) == 4 - len(recorded) and len(videos(out)) == 4


# --- 2. prompt identity -----------------------------------------------------------------------
def test_a_file_name_handed_to_another_prompt_is_an_error_naming_both(tmp_path):
    """``a/b`` made ``a_b-0.mp4``; a prompt list that adds ``a_b`` gives it that exact name (and ``a/b``
    another): the new prompt was taken as done, and VBench read the video as the wrong prompt."""
    out = tmp_path / "run"
    run(make_plan(options(prompt_file(tmp_path, "a/b"), out)), TextGenerator(), progress=False)
    assert videos(out) == ["a_b-0.mp4"]
    with pytest.raises(ManifestError) as error:
        make_plan(options(prompt_file(tmp_path, "a/b", "a_b"), out))
    message = str(error.value)
    assert f"{out / 'a_b-0.mp4'} was generated for prompt 'a/b'" in message
    assert "but in this run prompt 'a_b' (sample 0, seed 0) has that file name" in message


# --- 3. concurrent launches -------------------------------------------------------------------
def start_together(tmp_path, name):
    return "--ready", tmp_path / f"ready-{name}", "--go", tmp_path / "go"


def go_together(tmp_path, procs):
    """Once every child is up (imports done) and waiting, let them all plan and run at once."""
    procs = list(procs)
    end = time.monotonic() + 120
    while len(list(tmp_path.glob("ready-*"))) < len(procs):
        assert all(p.poll() is None for p in procs) and time.monotonic() < end, "a child did not start"
        time.sleep(0.02)
    (tmp_path / "go").touch()


def test_two_runs_started_at_once_into_one_empty_folder_do_not_mix(tmp_path):
    out = tmp_path / "run"
    prompts = prompt_file(tmp_path, "a cat", "a dog")
    procs = {
        method: child(*start_together(tmp_path, method), "--method", method, "--out", out, "--prompts", prompts)
        for method in ("base", "magcache-fast")
    }
    go_together(tmp_path, procs.values())
    results = {method: (*p.communicate(timeout=120), p.returncode) for method, p in procs.items()}
    assert sorted(code for _, _, code in results.values()) == [0, 2], results
    [winner] = [m for m, (_, _, code) in results.items() if code == 0]
    [(_, refused, _)] = [r for m, r in results.items() if m != winner]
    assert f"error: {out} belongs to another run" in refused
    assert "that run is --method " + winner in refused
    assert "--method base" in refused and "--method magcache-fast" in refused
    assert {r["method"] for r in part_records(out)} == {winner} and len(videos(out)) == 4


def test_the_processes_of_one_run_started_at_once_are_all_accepted(tmp_path):
    out = tmp_path / "run"
    prompts = prompt_file(tmp_path, "a cat", "a dog", "a cow")
    procs = [
        child(
            *start_together(tmp_path, i),
            "--method",
            "magcache-fast",
            "--out",
            out,
            "--prompts",
            prompts,
            "--shard",
            f"{i}/3",
        )
        for i in range(3)
    ]
    go_together(tmp_path, procs)
    codes = [p.wait(timeout=120) for p in procs]
    assert sorted(codes) in ([0, 3, 3], [0, 0, 3], [0, 0, 0]), [p.communicate() for p in procs]
    assert len(part_records(out)) == 6 == len(videos(out))


# --- 4. torn record lines ---------------------------------------------------------------------
def test_a_writer_killed_mid_record_costs_one_video_and_one_warning(cli, tmp_path, capsys, monkeypatch):
    """A killed writer cut the last line of its part file; the next record was appended onto the
    broken line and lost as well, so the run never completed in one resume."""
    import magcache_videosys.experiments.generation as generation

    out, marker = tmp_path / "run", tmp_path / "marker"
    prompts = prompt_file(tmp_path, "a cat", "a dog")
    proc = child(
        "--method", "base", "--out", out, "--prompts", prompts, "--hang-in", "record", "--at", 2, "--marker", marker
    )
    wait_for(marker, proc)
    kill_9(proc)
    part = mf.parts_dir(out) / "shard0-of-1.jsonl"
    assert not part.read_bytes().endswith(b"\n") and len(videos(out)) == 2

    monkeypatch.setattr(generation, "VideoSysGenerator", lambda plan: TextGenerator())
    monkeypatch.setattr(generation, "preflight", lambda plan: None, raising=False)
    code = cli.main(["--method", "base", "--prompts", str(prompts), "--num-samples", "2", "--out", str(out)])
    printed = "".join(capsys.readouterr())
    assert code == 0
    assert printed.count(f"{part}:2") == 1 and "cut short by a killed writer" in printed  # one warning, right line
    assert "generated 3 videos" in printed and "| base | 4/4 |" in printed
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert (
        sorted(r["video"] for r in manifest)
        == videos(out)
        == ["a cat-0.mp4", "a cat-1.mp4", "a dog-0.mp4", "a dog-1.mp4"]
    )


# --- 5. temporaries of killed writers -----------------------------------------------------------
def test_a_writer_killed_mid_video_leaves_nothing_behind_after_the_next_start(tmp_path):
    out, marker = tmp_path / "run", tmp_path / "marker"
    prompts = prompt_file(tmp_path, "a cat", "a dog")
    proc = child(
        "--method", "base", "--out", out, "--prompts", prompts, "--hang-in", "save", "--at", 2, "--marker", marker
    )
    wait_for(marker, proc)
    kill_9(proc)
    assert len(list(mf.partial_dir(out).iterdir())) == 1 and len(videos(out)) == 1
    result = run(make_plan(options(prompts, out, num_samples=2)), TextGenerator(), progress=False)
    assert result.complete and len(videos(out)) == 4
    assert not list(mf.partial_dir(out).iterdir())


def test_cleaning_keeps_what_a_live_writer_may_still_rename(tmp_path):
    """The rule: a temporary is removed when its writer ran on this host and is gone, or when nothing
    touched it for an hour (a writer on another host cannot be asked; a live one renames its file
    seconds after last writing it)."""
    out = tmp_path / "run"
    folder = mf.partial_dir(out)
    folder.mkdir(parents=True)
    host = socket.gethostname()
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        names = {
            "dead here": f"{host}-{ended.pid}-0123456789ab.mp4",
            "alive here": f"{host}-{alive.pid}-0123456789ab.mp4",
            "fresh elsewhere": "gpu-node-17-4242-0123456789ab.mp4",
            "old elsewhere": "gpu-node-18-4242-0123456789ab.mp4",
        }
        for name in names.values():
            (folder / name).write_bytes(b"half a video")
        two_hours_ago = time.time() - 7200
        os.utime(folder / names["old elsewhere"], (two_hours_ago, two_hours_ago))
        stale_merge, stale_claim = out / ".manifest.jsonl.99.abcdef12.tmp.jsonl", folder.parent / ".run.json.98.ab.tmp"
        for stale in (stale_merge, stale_claim):
            stale.write_text("")
            os.utime(stale, (two_hours_ago, two_hours_ago))
        removed = {p.name for p in mf.clean_partials(out)}
    finally:
        alive.kill()
        alive.wait()
    assert removed == {names["dead here"], names["old elsewhere"], stale_merge.name, stale_claim.name}
    assert sorted(p.name for p in folder.iterdir()) == sorted([names["alive here"], names["fresh elsewhere"]])


# --- 6. another sample count on resume ----------------------------------------------------------
def test_a_resume_with_another_sample_count_finds_every_video_under_its_name(tmp_path):
    """A 249-character prompt fits as "-0.mp4" (255 bytes) but not as "-10.mp4": with
    --num-samples 11 on resume it was cut to 180 characters and sample 0 generated again."""
    prompt = "a slow pan over " + "a very long landscape " * 10 + "x" * 13
    assert len(prompt) == 249
    out = tmp_path / "run"
    prompts = prompt_file(tmp_path, prompt)
    run(make_plan(options(prompts, out)), TextGenerator(), progress=False)
    plan = make_plan(options(prompts, out, num_samples=11))
    assert [j.index for j in plan.pending] == list(range(1, 11))
    assert {j.video.rsplit("-", 1)[0] for j in plan.jobs} == {videos(out)[0].rsplit("-", 1)[0]}


# --- 12. a baseline that is not a base run ------------------------------------------------------
def test_a_baseline_folder_of_another_method_is_refused(tmp_path):
    prompts = prompt_file(tmp_path, "a cat")
    turbo = tmp_path / "turbo"
    run(make_plan(options(prompts, turbo, method="magcache-turbo")), TextGenerator(), progress=False)
    with pytest.raises(RunError, match="--baseline .*turbo holds videos of --method magcache-turbo, not base"):
        make_plan(options(prompts, tmp_path / "fast", method="magcache-fast", baseline=turbo))
