"""experiments/opensora.py's command line: the dry run, and every bad input stopped before a model."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "opensora.py"


def load_script():
    spec = importlib.util.spec_from_file_location("opensora_experiment", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cli = load_script()


@pytest.fixture
def prompts(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("a red fox\na blue whale\n")
    return path


def main(capsys, *argv):
    """The script's exit status (argparse's own errors exit 2 too), stdout and stderr."""
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exit_info:
        code = exit_info.code
    out, err = capsys.readouterr()
    return code, out, err


def test_dry_run_prints_the_plan_without_a_model(capsys, prompts, tmp_path):
    out_dir = tmp_path / "never-created"
    code, out, _ = main(capsys, "--method", "magcache-fast", "--prompts", prompts, "--out", out_dir, "--dry-run")
    assert code == 0 and not out_dir.exists()
    assert "2 prompts x 5 samples = 10 videos" in out
    assert "skips      18: 6 7 8 10 11 12 14 15 16 18 19 20 22 23 24 26 27 28" in out
    assert (
        "12 transformer passes per video, 120 for the run (base: 300); predicted transformer-loop speedup 2.50x" in out
    )


def test_dry_run_of_explicit_knobs_and_of_base(capsys, prompts, tmp_path):
    code, out, _ = main(
        capsys,
        "--method",
        "magcache",
        "--threshold",
        "0.24",
        "--K",
        "5",
        "--retention-ratio",
        "0.2",
        "--prompts",
        prompts,
        "--out",
        tmp_path / "o",
        "--dry-run",
        "--num-samples",
        "1",
        "--shard",
        "1/2",
    )
    assert code == 0
    assert '"threshold": 0.24, "max_skip_steps": 5' in out
    assert "shard 1/2 (--shard): 1 videos" in out
    code, out, _ = main(
        capsys, "--method", "base", "--prompts", prompts, "--out", tmp_path / "o", "--dry-run", "--steps", "10"
    )
    assert code == 0 and "computes   10 of 10 steps" in out and "skips      0: none" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--method", "magcache-warp"],
            "unknown method 'magcache-warp'; valid methods: base, magcache-slow, magcache-fast",
        ),
        (
            ["--method", "magcache-fast", "--threshold", "0.2"],
            "fixes --threshold; drop --threshold, or use --method magcache",
        ),
        (["--method", "base", "--K", "2"], "--method base does not take --K"),
        (["--method", "magcache", "--threshold", "-1"], "argument --threshold: -1 must be >= 0"),
        (["--method", "magcache", "--mag-ratios", "no-such-table"], "unknown ratio table 'no-such-table'"),
        (["--method", "base", "--shard", "2/2"], "--shard 2/2: the index must be in 0..1"),
        (["--method", "base", "--limit", "1", "--end", "2"], "--end and --limit"),
        (["--method", "base", "--start", "5"], "--start 5 is outside the 2 distinct prompts"),
        (["--method", "base", "--tiny", "--dtype", "bf16"], "--tiny runs on the CPU in fp32"),
        (["--method", "base", "--tiny", "--num-gpus", "2"], "drop --num-gpus"),
        (["--method", "base", "--tiny", "--transformer", "x"], "drop --transformer"),
        (["--method", "base", "--num-samples", "0"], "--num-samples must be 1 to 1000"),
        (["--method", "base", "--num-samples", "1001"], "--num-samples must be 1 to 1000"),
        (["--method", "teacache"], "--method teacache needs --threshold"),
        (["--method", "base", "--frames", "nan"], "--frames takes a frame count or a VideoSys duration"),
        (["--method", "base", "--steps", "1"], "--steps must be at least 2"),
    ],
)
def test_bad_options_are_clear_errors(capsys, prompts, tmp_path, args, message):
    code, out, err = main(capsys, *args, "--prompts", prompts, "--out", tmp_path / "o")
    assert code == 2 and message in err and out == ""
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_prompt_file_problems(capsys, tmp_path):
    for content, message in [(None, "does not exist"), ("", "holds no prompts"), ('[{"prompt_en": 1}]', "entry 0")]:
        path = tmp_path / "p.json"
        path.unlink(missing_ok=True)
        if content is not None:
            path.write_text(content)
        code, _, err = main(capsys, "--method", "base", "--prompts", path, "--out", tmp_path / "o")
        assert code == 2 and message in err


def test_output_folder_not_writable(capsys, prompts, tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("")
    code, _, err = main(capsys, "--method", "base", "--prompts", prompts, "--out", a_file)
    assert code == 2 and "is a file" in err
    code, _, err = main(capsys, "--method", "base", "--prompts", prompts, "--out", "/proc/magcache-videos")
    assert code == 2 and "is not writable" in err and "choose another --out" in err


def test_shard_flag_under_torchrun(capsys, prompts, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("RANK", "0")
    code, _, err = main(capsys, "--method", "base", "--prompts", prompts, "--out", tmp_path / "o", "--shard", "0/2")
    assert code == 2 and "already shards the work" in err


def test_missing_videosys_is_named_before_any_model(capsys, prompts, tmp_path, monkeypatch):
    import magcache_videosys.experiments.generation as generation

    monkeypatch.setattr(generation, "videosys_available", lambda: False)
    code, _, err = main(capsys, "--method", "base", "--tiny", "--prompts", prompts, "--out", tmp_path / "o")
    assert code == 2 and "VideoSys is not installed" in err and "--tiny also needs it" in err


def test_unknown_method_in_help_and_argparse_errors(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--out", "x"])
    assert exc.value.code == 2
    assert "valid methods: base, magcache-slow" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "magcache-calibrate" in capsys.readouterr().out


def test_runs_as_a_script_from_the_repo_root(prompts, tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "experiments/opensora.py",
            "--method",
            "magcache-turbo",
            "--prompts",
            str(prompts),
            "--out",
            str(tmp_path / "o"),
            "--dry-run",
            "--num-samples",
            "1",
        ],
        cwd=ROOT,
        # this checkout's package, not an installed one (sys.path[0] is the script's folder, experiments/)
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "2 prompts x 1 samples = 2 videos" in done.stdout


def test_summary_of_a_finished_folder_needs_no_model(capsys, prompts, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    record = {
        "video": "a red fox-0.mp4",
        "prompt": "a red fox",
        "index": 0,
        "seed": 0,
        "method": "base",
        "latency_transformer_s": 1.5,
        "latency_total_s": 2.0,
        "num_steps": 30,
        "num_computed": 30,
        "warmup": False,
    }
    code, out_text, _ = main(
        capsys,
        "--method",
        "base",
        "--prompts",
        prompts,
        "--out",
        out,
        "--limit",
        "1",
        "--num-samples",
        "1",
        "--dry-run",
    )
    assert code == 0
    from magcache_videosys.experiments import cli as experiment
    from magcache_videosys.models import family_named

    family = family_named("opensora")
    plan = experiment.make_plan(
        experiment.options_from_args(
            family,
            experiment.build_parser(family).parse_args(
                ["--method", "base", "--prompts", str(prompts), "--out", str(out), "--limit", "1", "--num-samples", "1"]
            ),
        )
    )
    record.update(method_config=plan.signature["method_config"], settings=plan.signature["settings"])
    (out / "a red fox-0.mp4").write_text("v")
    (out / "manifest.jsonl").write_text(json.dumps(record) + "\n")
    code, out_text, _ = main(
        capsys, "--method", "base", "--prompts", prompts, "--out", out, "--limit", "1", "--num-samples", "1"
    )
    assert code == 0 and "generated 0 videos" in out_text
    assert "| base | 1/1 | 1.500 [1.500-1.500] | 2.000 [2.000-2.000] | 30.0/30 |" in out_text


@pytest.mark.parametrize(
    "option, value",
    [
        ("--cfg-scale", "nan"),
        ("--cfg-scale", "inf"),
        ("--threshold", "nan"),
        ("--retention-ratio", "-inf"),
        ("--ratio-power", "nan"),
    ],
)
def test_non_finite_numbers_are_refused_while_parsing(capsys, prompts, tmp_path, option, value):
    """--cfg-scale nan once recorded an all-black video as done, with NaN in the manifest."""
    with pytest.raises(SystemExit) as exc:
        cli.main(["--method", "magcache", f"{option}={value}", "--prompts", str(prompts), "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    assert f"argument {option}: {value!r} is not a finite number" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_tiny_defaults_to_the_packaged_smoke_prompts_without_vbench(capsys, tmp_path, monkeypatch):
    import importlib.util

    from magcache_videosys.experiments import prompts as P

    real = importlib.util.find_spec
    monkeypatch.setattr(P.importlib.util, "find_spec", lambda name, *a: None if name == "vbench" else real(name, *a))
    code, out, _ = main(
        capsys, "--method", "base", "--tiny", "--out", tmp_path / "o", "--dry-run", "--num-samples", "1"
    )
    assert code == 0
    assert f"prompts    6 distinct in {P.SMOKE_FILE} (6 entries); --tiny's default: the package's smoke" in out
    assert "real runs default to VBench_full_info.json" in out
    assert "names      1 prompts cannot be file names as they are" in out  # one has a '/'
    entries = json.loads(P.SMOKE_FILE.read_text())
    assert all(set(e) == {"prompt_en", "dimension"} for e in entries)
    code, _, err = main(capsys, "--method", "base", "--out", tmp_path / "o", "--dry-run")
    assert code == 2 and "pip install vbench --no-deps" in err  # real runs still default to VBench's list
