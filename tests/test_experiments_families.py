"""Every model family generates through its ``experiments/<model>.py``: each method's meaning for
that model, the errors where a model has no published setting, and (with VideoSys) one tiny CPU run
per method that writes playable mp4s, a manifest and a summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conformance import reset_pab_manager
from videosys_helpers import load_experiment_cli, manifest

from magcache_videosys import MagCacheConfig
from magcache_videosys.cli import main as package_main

SCRIPTS = Path(__file__).resolve().parents[1] / "experiments"


@pytest.fixture
def prompts(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("a red fox\n")
    return path


@pytest.fixture
def one_thread():
    """Tiny models on a shared 2-core machine: two threads contend and run many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def script(model: str):
    return load_experiment_cli(SCRIPTS / f"{model.replace('-', '_')}.py")


def run(capsys, model: str, *argv) -> tuple[int, str, str]:
    """The script's exit status (argparse's own errors exit 2 too), stdout and stderr."""
    try:
        code = script(model).main([str(a) for a in argv])
    except SystemExit as exit_info:
        code = exit_info.code
    out, err = capsys.readouterr()
    return code, out, err


def dry_run(capsys, model, prompts, tmp_path, *argv) -> tuple[int, str, str]:
    return run(capsys, model, *argv, "--prompts", prompts, "--out", tmp_path / "o", "--dry-run")


# --- what each method means per model (no VideoSys needed) -------------------------------------
@pytest.mark.parametrize(
    "model, argv, meaning",
    [
        ("cogvideox", [], "preset teacache-cogvideox-2b-fast (threshold=0.2, coefficients=cogvideox-2b"),
        (
            "cogvideox",
            ["--model-path", "THUDM/CogVideoX-5b"],
            "preset teacache-cogvideox-5b-fast (threshold=0.2, coefficients=cogvideox-5b",
        ),
        (
            "opensora-plan",
            ["--transformer-type", "65x512x512"],
            "preset teacache-opensora-plan-v1.1-fast (threshold=0.2, coefficients=opensora-plan-v1.1",
        ),
        ("latte", [], "preset teacache-latte-fast (threshold=0.2, coefficients=latte, last step computed)"),
        ("opensora", [], "preset teacache-fast (threshold=0.2, coefficients=opensora-v1.2, last step computed)"),
    ],
)
def test_teacache_presets_are_the_models_own(capsys, prompts, tmp_path, model, argv, meaning):
    code, out, err = dry_run(capsys, model, prompts, tmp_path, "--method", "teacache-fast", *argv)
    assert code == 0, err
    assert f"method     teacache-fast: TeaCache (the paper's baseline), {meaning}" in out
    assert '"compute_last_step": true' in out


def test_open_sora_plan_versions_and_pndm_iterations(capsys, prompts, tmp_path):
    code, out, _ = dry_run(
        capsys, "opensora-plan", prompts, tmp_path, "--method", "base", "--transformer-type", "65x512x512"
    )
    assert code == 0
    assert (
        "generation Open-Sora-Plan v1.1: transformer-type 65x512x512, 100 steps (109 transformer-loop iterations: "
        "the steps counted below), cfg 7.5, fp16" in out
    )
    assert "computes   109 of 109 steps" in out
    code, out, _ = dry_run(capsys, "opensora-plan", prompts, tmp_path, "--method", "pab")
    assert "generation Open-Sora-Plan v1.2: transformer-type 29x480p, 100 steps, cfg 7.5, fp16" in out
    assert "PAB, VideoSys's default OpenSoraPlanV120PABConfig" in out and '"OpenSoraPlanV120PABConfig": {}' in out
    code, out, _ = dry_run(
        capsys, "opensora-plan", prompts, tmp_path, "--method", "pab", "--transformer-type", "221x512x512"
    )
    assert '"OpenSoraPlanV110PABConfig": {}' in out


def test_cogvideox_2b_runs_in_fp16_as_videosys_does(capsys, prompts, tmp_path):
    code, out, _ = dry_run(capsys, "cogvideox", prompts, tmp_path, "--method", "base")
    assert "generation CogVideoX-2b: height 480, width 720, frames 49, 50 steps, cfg 6.0, fp16" in out
    code, out, _ = dry_run(
        capsys, "cogvideox", prompts, tmp_path, "--method", "base", "--model-path", "/w/cogvideox-5b"
    )
    assert "generation CogVideoX-5b: height 480, width 720, frames 49, 50 steps, cfg 6.0, bf16" in out


def test_a_local_cogvideox_copy_says_its_variant(tmp_path):
    from magcache_videosys.models.cogvideox import variant

    (tmp_path / "transformer").mkdir()
    (tmp_path / "transformer" / "config.json").write_text(json.dumps({"use_rotary_positional_embeddings": True}))
    assert variant(str(tmp_path)) == "5b" and variant("THUDM/CogVideoX-2b") == "2b"


@pytest.mark.parametrize("model", ["cogvideox", "opensora-plan", "latte", "vchitect"])
def test_no_magcache_preset_without_a_table_names_the_calibration(capsys, prompts, tmp_path, model):
    code, out, err = dry_run(capsys, model, prompts, tmp_path, "--method", "magcache-fast", "--steps", "20")
    assert code == 2 and out == ""
    table = f"{model}-20steps.json"
    command = f"python -m magcache_videosys calibrate --model {model} --steps 20 --prompt 'A PROMPT' --out {table}"
    assert "no MagCache ratio table is published for" in err and f"`{command}`" in err
    assert f"then use --method magcache --mag-ratios {model}-20steps.json" in err
    code, _, err2 = dry_run(
        capsys, model, prompts, tmp_path, "--method", "magcache", "--threshold", "0.1", "--steps", "20"
    )
    assert code == 2 and f"`{command}`" in err2


def test_the_calibration_command_carries_the_runs_options(capsys, prompts, tmp_path):
    argv = ["--method", "magcache-slow", "--tiny", "--frames", "5", "--height", "32"]
    code, _, err = dry_run(capsys, "cogvideox", prompts, tmp_path, *argv)
    assert code == 2
    assert (
        "`python -m magcache_videosys calibrate --model cogvideox --steps 50 --tiny --height 32 --frames 5 "
        "--prompt 'A PROMPT' --out cogvideox-50steps.json`, then" in err
    )


@pytest.mark.parametrize(
    "model, argv, message",
    [
        ("vchitect", ["--method", "teacache-slow"], "no TeaCache coefficients are published for Vchitect-2.0"),
        ("opensora-plan", ["--method", "teacache", "--threshold", "0.1"], "published for Open-Sora-Plan v1.2"),
        ("latte", ["--method", "pab-fast"], "use --method pab (VideoSys's LattePABConfig)"),
        ("cogvideox", ["--method", "teacache-slow", "--threshold", "0.1"], "preset teacache-cogvideox-2b-slow"),
        ("cogvideox", ["--method", "base", "--transformer-type", "29x480p"], "unrecognized arguments"),
        ("opensora-plan", ["--method", "base", "--transformer-type", "29x512"], "--transformer-type takes one of"),
    ],
)
def test_what_a_model_lacks_is_a_clear_error(capsys, prompts, tmp_path, model, argv, message):
    code, _, err = dry_run(capsys, model, prompts, tmp_path, *argv)
    assert code == 2 and message in err


def settings_of(model: str, **changes) -> dict:
    from magcache_videosys.experiments.methods import default_settings
    from magcache_videosys.models import family_named

    return {**default_settings(family_named(model)), **changes}


@pytest.mark.parametrize(
    "model, changes, message",
    [
        ("cogvideox", {"num_frames": 10}, "--frames 10: CogVideoX makes 4k + 1 frames"),
        ("cogvideox", {"num_frames": 53}, "at most 49 (VideoSys's limit); try --frames 49"),
        ("cogvideox", {"height": 472}, "--height 472 is not a multiple of 16"),
        ("cogvideox", {"height": 720, "width": 1280}, "CogVideoX-2b's positional embedding covers 480x720"),
        ("cogvideox", {"dtype": "bf16"}, "VideoSys runs THUDM/CogVideoX-2b in fp16 whatever dtype"),
        ("cogvideox", {"tiny": True, "model_path": "tiny/CogVideoX-2b", "height": 128}, "covers 64x64 at 9 frames"),
        ("vchitect", {"width": 100}, "--width 100 is not a multiple of 16"),
        ("opensora-plan", {"transformer_type": "65x512x512", "num_steps": 3}, "PNDM sampler needs at least 4"),
    ],
)
def test_sizes_videosys_cannot_make_are_one_line_errors(model, changes, message):
    from magcache_videosys.models import family_named

    with pytest.raises(ValueError) as error:
        family_named(model).check_generation(settings_of(model, **changes))
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    "model, changes",
    [
        ("cogvideox", {}),
        ("cogvideox", {"model_path": "THUDM/CogVideoX-5b", "dtype": "bf16", "height": 720, "width": 1280}),
        ("opensora-plan", {"transformer_type": "65x512x512", "num_steps": 4}),
        ("vchitect", {}),
        ("latte", {}),
    ],
)
def test_videosys_defaults_pass_the_size_check(model, changes):
    from magcache_videosys.models import family_named

    family_named(model).check_generation(settings_of(model, **changes))


@pytest.mark.parametrize(
    "model, options, absent",
    [
        ("cogvideox", ["--height", "--width", "--frames", "--model-path"], "--resolution"),
        ("opensora-plan", ["--transformer-type", "--transformer", "--text-encoder"], "--frames"),
        ("latte", ["--model-path"], "--frames"),
        ("vchitect", ["--height", "--width", "--frames", "--model-path"], "--resolution"),
    ],
)
def test_help_lists_the_models_options_and_methods(capsys, model, options, absent):
    with pytest.raises(SystemExit):
        script(model).main(["--help"])
    out = capsys.readouterr().out
    assert all(f"  {option} " in out for option in options) and f"  {absent} " not in out
    assert "magcache-fast        not available: no MagCache ratio table is published" in out
    assert package_main(["calibrate", "--model", model, "--help"]) == 0
    calibrate_help = capsys.readouterr().out
    assert all(f"  {option} " in calibrate_help for option in options) and f"  {absent} " not in calibrate_help


# --- end to end with VideoSys: tiny CPU runs ---------------------------------------------------
def decode(path: Path) -> list:
    """The frames of an mp4 as (H, W, 3) uint8 arrays."""
    import imageio_ffmpeg
    import numpy as np

    reader = imageio_ffmpeg.read_frames(str(path))
    width, height = next(reader)["size"]
    return [np.frombuffer(frame, np.uint8).reshape(height, width, 3) for frame in reader]


def generate(capsys, model, out, method, *argv) -> dict:
    """One tiny video with ``method``; checks the mp4 and the summary, returns the record."""
    args = ["--method", method, "--tiny", "--limit", "1", "--num-samples", "1", "--out", out, *argv]
    code, text, err = run(capsys, model, *args)
    assert code == 0, err
    assert f"| {method} | 1/1 |" in text and "generated 1 videos" in text
    [record] = manifest(out)
    assert record["method"] == method and record["settings"]["model"] == model
    [video] = out.glob("*.mp4")
    assert video.name == record["video"]
    record["frames"] = decode(video)
    return record


def every_method(capsys, tmp_path, model, frames, size, steps=4, teacache=True, first=(), later=()) -> dict:
    """base, calibration then MagCache with that table, TeaCache (where the model has it) and PAB;
    ``first`` / ``later`` are options of the first two and the last runs (e.g. another version)."""
    loop = steps + (9 if "65x512x512" in later else 0)  # PNDM's warm-up (Open-Sora-Plan v1.1)
    records = {}
    try:
        common = ["--steps", steps]
        base = records["base"] = generate(capsys, model, tmp_path / "base", "base", *common, *first)
        assert len(base["frames"]) == frames and base["frames"][0].shape == (*size, 3) and base["frames"][0].std() > 0
        assert base["computed_steps"] == list(range(steps)) and base["skipped_steps"] == []
        records["pab"] = generate(capsys, model, tmp_path / "pab", "pab", *common, *first)
        assert records["pab"]["computed_steps"] == list(range(steps))
        [(pab_class, overrides)] = records["pab"]["method_config"].items()
        assert pab_class.endswith("PABConfig") and overrides == {}
        reset_pab_manager()
        calibration = generate(capsys, model, tmp_path / "cal", "magcache-calibrate", *common, *later)
        table = json.loads((tmp_path / "cal" / "ratio_table.json").read_text())
        assert table["num_steps"] == loop and len(table["ratios"]) == loop - 1 and all(r > 0 for r in table["ratios"])
        assert calibration["computed_steps"] == list(range(loop))
        knobs = ["--mag-ratios", tmp_path / "cal" / "ratio_table.json", "--threshold", "0.5"]
        magcache = records["magcache"] = generate(capsys, model, tmp_path / "mc", "magcache", *common, *later, *knobs)
        planned = MagCacheConfig(mag_ratios=str(tmp_path / "cal" / "ratio_table.json"), threshold=0.5).plan(loop)
        assert magcache["computed_steps"] == planned.computed_steps and magcache["skipped_steps"]
        assert magcache["method_config"]["table_ratios"] == table["ratios"]
        if teacache:
            tea = records["teacache"] = generate(capsys, model, tmp_path / "tc", "teacache-slow", *common, *later)
            assert tea["method_config"]["threshold"] == 0.1 and tea["method_config"]["compute_last_step"]
            assert {0, loop - 1} <= set(tea["computed_steps"]) and tea["num_steps"] == loop
    finally:
        reset_pab_manager()
    return records


@pytest.mark.videosys
def test_cogvideox_generates_with_every_method(capsys, tmp_path, one_thread):
    records = every_method(capsys, tmp_path, "cogvideox", frames=9, size=(64, 64))
    assert records["teacache"]["method_config"]["coefficients"] == "cogvideox-2b"
    assert records["base"]["settings"]["model_path"] == "tiny/CogVideoX-2b"


@pytest.mark.videosys
def test_open_sora_plan_generates_with_every_method(capsys, tmp_path, one_thread):
    # v1.2 for base and PAB; v1.1 (PNDM: 4 + 9 loop iterations, TeaCache's coefficients) for the rest
    v110 = ["--transformer-type", "65x512x512"]
    records = every_method(capsys, tmp_path, "opensora-plan", frames=9, size=(64, 64), later=v110)
    assert records["pab"]["method_config"] == {"OpenSoraPlanV120PABConfig": {}}
    assert records["teacache"]["method_config"]["coefficients"] == "opensora-plan-v1.1"
    assert records["magcache"]["num_steps"] == 13 and records["magcache"]["settings"]["num_steps"] == 4


@pytest.mark.videosys
def test_latte_generates_with_every_method(capsys, tmp_path, one_thread):
    records = every_method(capsys, tmp_path, "latte", frames=16, size=(512, 512), steps=3)
    assert records["teacache"]["method_config"]["coefficients"] == "latte"


@pytest.mark.videosys
def test_vchitect_generates_with_every_method_it_has(capsys, tmp_path, one_thread):
    records = every_method(capsys, tmp_path, "vchitect", frames=4, size=(64, 64), teacache=False)
    assert records["pab"]["method_config"] == {"VchitectPABConfig": {}}


@pytest.mark.videosys
def test_calibrate_command_takes_any_family(capsys, tmp_path, one_thread):
    out = tmp_path / "cog.json"
    argv = ["calibrate", "--model", "cogvideox", "--tiny", "--steps", "5", "--prompt", "a cat", "--out", str(out)]
    assert package_main(argv) == 0
    text = capsys.readouterr().out
    table = json.loads(out.read_text())
    assert f"wrote {out}: 5 steps" in text and table["num_steps"] == 5 and len(table["ratios"]) == 4
    assert table["source"].startswith("magcache-videosys calibrate --model cogvideox:")
