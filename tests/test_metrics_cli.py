"""The evaluation command lines: numbers checked while parsing, output paths before the work, Ctrl-C as
one line, warnings as one line."""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import imageio
import numpy as np
import pytest
from metrics_scripts import REPO, run_script, script_env

SCRIPTS = ("eval/common_metrics/eval.py", "eval/common_metrics/batch_eval.py")


def load_script(path: str):
    spec = importlib.util.spec_from_file_location(Path(path).stem, REPO / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> Path:
    """ref/ and gen/ with one small video each (gen noisier), and one source for hard links."""
    root = tmp_path_factory.mktemp("pair")
    rng = np.random.default_rng(0)
    frames = rng.integers(40, 200, (4, 32, 40, 3)).astype(np.uint8)
    for folder, noise in (("ref", 0), ("gen", 10)):
        (root / folder).mkdir()
        video = np.clip(frames + rng.normal(0, noise, frames.shape), 0, 255).astype(np.uint8)
        imageio.mimwrite(root / folder / "v-0.mp4", list(video), fps=8, macro_block_size=1)
    return root


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize(
    "option, value, complaint",
    [
        ("--batch-size", "0", "0 must be >= 1"),
        ("--batch-size", "nan", "'nan' is not a whole number"),
        ("--workers", "-1", "-1 must be >= 0"),
        ("--workers", "2.5", "'2.5' is not a whole number"),
    ],
)
def test_nonsense_numbers_are_rejected_while_parsing(script, option, value, complaint, capsys):
    folders = ["--gt_video_dir", "r", "--generated_video_dir", "g"]
    if script.endswith("batch_eval.py"):
        folders = ["--gt_video_dirs", "r", "--gen_video_dirs", "g"]
    with pytest.raises(SystemExit) as exit_:
        load_script(script).main([*folders, option, value])
    assert exit_.value.code == 2
    assert f"argument {option}: {complaint}" in capsys.readouterr().err


@pytest.mark.parametrize("value, complaint", [("nan", "'nan' is not a whole number"), ("-1", "-1 must be >= 0")])
def test_worst_must_be_a_count(value, complaint, capsys):
    with pytest.raises(SystemExit):
        load_script(SCRIPTS[0]).main(["--gt_video_dir", "r", "--generated_video_dir", "g", "--worst", value])
    assert f"argument --worst: {complaint}" in capsys.readouterr().err


def test_an_unwritable_out_fails_before_any_video_is_decoded(pair, tmp_path):
    (tmp_path / "file.txt").write_text("a file, not a folder\n")
    (tmp_path / "gen").mkdir()
    (tmp_path / "gen" / "v-0.mp4").write_bytes(b"not a video")  # evaluating it would fail first
    out = tmp_path / "file.txt" / "results"
    args = ["--gt_video_dir", str(pair / "ref"), "--generated_video_dir", str(tmp_path / "gen"), "--out", str(out)]
    run = run_script("eval/common_metrics/eval.py", *args, "--metrics", "psnr", "--device", "cpu")
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr == (
        f"error: --out {out}.json: the folder {tmp_path / 'file.txt'} is not a folder; "
        "create it first or choose another path\n"
    )
    batch = ["--gt_video_dirs", str(pair / "ref"), "--gen_video_dirs", str(tmp_path / "gen"), "--out", str(out)]
    run = run_script("eval/common_metrics/batch_eval.py", *batch, "--metrics", "psnr", "--device", "cpu")
    assert run.returncode == 1 and run.stderr.startswith(f"error: --out {out}.md: the folder")


def test_warnings_are_one_line_each(pair):
    args = ["--gt_video_dir", str(pair / "ref"), "--generated_video_dir", str(pair / "ref"), "--metrics", "psnr"]
    run = run_script("eval/common_metrics/eval.py", *args, "--device", "cpu")
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stderr.splitlines() if "warning" in line.lower()]
    assert lines == [
        f"warning: {pair / 'ref'} is the reference folder itself: every video is compared with itself",
    ]
    assert "PSNR 100.0000 dB" in run.stdout and "note: every video is identical to its reference" in run.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT")
def test_ctrl_c_is_one_line_that_says_nothing_was_written(pair, tmp_path):
    count = 400  # hard links to one pair: far more than can be scored before the signal arrives
    for folder in ("ref", "gen"):
        (tmp_path / folder).mkdir()
        for index in range(count):
            os.link(pair / folder / "v-0.mp4", tmp_path / folder / f"v-{index}.mp4")
    out = tmp_path / "results"
    args = ["--gt_video_dir", str(tmp_path / "ref"), "--generated_video_dir", str(tmp_path / "gen")]
    process = subprocess.Popen(
        [sys.executable, "eval/common_metrics/eval.py", *args, "--metrics", "psnr", "--out", str(out)],
        cwd=REPO,
        env=script_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell starts background jobs with SIGINT ignored and a child inherits that: a suite run
        # with `&` would see no Ctrl-C at all. The user's terminal delivers it; so does this.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    stderr: list[str] = []
    reader = threading.Thread(target=lambda: stderr.extend(iter(lambda: process.stderr.read(1), "")), daemon=True)
    reader.start()
    deadline = time.monotonic() + 300
    while not re.search(rf"\b[1-9]\d*/{count}\b", "".join(stderr)):  # the progress bar: videos are being scored
        assert process.poll() is None and time.monotonic() < deadline, "".join(stderr)
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    process.wait(timeout=120)
    reader.join(timeout=10)
    stdout = process.stdout.read()
    text = "".join(stderr)
    assert process.returncode == 130, text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text
    assert text.splitlines()[-1] == (
        "eval.py: interrupted (Ctrl-C). Nothing was written: results are written once every video is scored; "
        "run the command again."
    )
    assert not list(tmp_path.glob("results*")) and stdout == ""
