"""Every shell command in the README is accounted for, and those a CPU machine can run are run.

Each command of a ```bash block (continuation lines joined, trailing comments dropped) must have an
entry in ``COMMANDS`` saying how it is proven: run as written; run with arguments appended that make a
GPU job runnable here (``--dry-run`` prints the plan the GPU run would follow, ``--tiny --limit 2``
runs the same job on tiny CPU components); run word for word by another file (``.ci/run`` runs the
set-up commands and the test commands); or not runnable here, with the reason. A README command
without an entry, or an entry for a command the README no longer has, fails the first test, so the
README cannot change without this file saying how its new command is proven.

Commands run in order with ``bash -c`` in one scratch folder that holds links to the repository's
``experiments/``, ``eval/`` and ``benchmarks/`` (so ``samples/`` and ``results/`` land there), with
``/tmp/`` inside it (a rerun of the test must not resume an old run). The generation commands
before the eval commands make the folders the eval commands read, as a reader following the README
would.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


@dataclass(frozen=True)
class Run:
    """Run the command, with ``append`` added (why: ``because``); it must exit 0 and make ``creates``."""

    append: str = ""
    because: str = ""
    creates: tuple[str, ...] = ()
    videosys: bool = False  # needs VideoSys, or the file a command that needs it writes
    vbench: bool = False  # reads VBench's prompt list (``pip install --no-deps vbench``)


@dataclass(frozen=True)
class RunElsewhere:
    """Another file runs this command: ``text`` (the command, or its essential part) is in ``path``."""

    path: str
    text: str


@dataclass(frozen=True)
class NotHere:
    """Needs what a CPU test cannot have (a GPU, the network, a cluster)."""

    reason: str


@dataclass(frozen=True)
class ExtraCovered:
    """``pip install -e ".[NAME]"``: every package of that extra is in the ``test`` extra."""

    extra: str
    packages: tuple[str, ...] = field(default=())


TINY = "--tiny --limit 2"
TINY_WHY = "the same run on tiny random-weight CPU components (the GPU run loads Open-Sora's weights)"
DRY = "--dry-run"
DRY_WHY = "a GPU job: its plan (prompts, videos, schedule, passes) is what runs here"
CI_TESTS = "the test command CI runs on every change, with the snapshots unpacked in place of /path/to"

COMMANDS: dict[str, object] = {
    # Set up
    'pip install torch==2.13.0 -e ".[test]"': RunElsewhere(".ci/run", 'pip install torch==2.13.0 -e ".[test]"'),
    "python -m pytest": RunElsewhere(".ci/run", "python -m pytest 2>&1"),
    "pip install -r requirements-videosys.txt": RunElsewhere(".ci/run", "pip install -r requirements-videosys.txt"),
    "pip install --no-deps colossalai==0.5.0": RunElsewhere(".ci/run", "pip install --no-deps colossalai==0.5.0"),
    "git clone https://github.com/NUS-HPC-AI-Lab/VideoSys": NotHere("the network; CI unpacks a VideoSys snapshot"),
    "export PYTHONPATH=$PWD/VideoSys": RunElsewhere(".ci/run", 'PYTHONPATH="$src/$copy"'),
    # See the schedule
    "python -m magcache_videosys schedule --preset opensora-fast": Run(),
    "python -m magcache_videosys schedule --ratios my_table.json --threshold 0.1 --K 2 --retention-ratio 0.2 "
    "--steps 50 --resample nearest": Run(),
    "python -m magcache_videosys sweep --ratios opensora-v1.2 --steps 30 --plot sweep.png --target-passes 12": Run(
        creates=("sweep.png",)
    ),
    "python -m magcache_videosys calibrate --model opensora --steps 30 --resolution 480p --frames 51 "
    '--prompt "A stylish woman walks down a Tokyo street ..." --out opensora_480p_51f_30.json --plot curve.png': Run(
        DRY, DRY_WHY
    ),
    "python -m magcache_videosys ratios": Run(),
    # Searched schedules: the recording on tiny components at 10 steps writes the file the next commands read
    "python -m magcache_videosys search-calibrate --model opensora --steps 30 --resolution 480p --frames 51 "
    '--prompt "A stylish woman walks down a Tokyo street ..." --prompt "A dog runs on a beach" --K 5 '
    "--retention-ratio 0.2 --out opensora_segments.json": Run(
        "--tiny --steps 10 --resolution 144p --frames 1",
        "the same recording on tiny random-weight CPU components, 10 steps of one frame (the GPU run loads "
        "Open-Sora's weights and costs 1300 full passes a video)",
        ("opensora_segments.json",),
        videosys=True,
    ),
    "python -m magcache_videosys search --errors opensora_segments.json --passes 12 --K 3 --out searched_12of30.json "
    "--plot masks.png": Run(
        "--passes 6", "the recording above has 10 steps", ("searched_12of30.json", "masks.png"), videosys=True
    ),
    "python -m magcache_videosys schedule --schedule searched_12of30.json": Run(videosys=True),
    "python experiments/opensora.py --method schedule --schedule searched_12of30.json --out samples/searched_12": Run(
        f"{TINY} --steps 10", TINY_WHY, ("samples/searched_12/manifest.jsonl",), videosys=True
    ),
    "PYTHONPATH=/path/to/VideoSys python benchmarks/search_heldout.py --model testbed --out results/search "
    "--threads 1": NotHere("a benchmark of 6 to 10 minutes on one thread (its numbers are the README's table)"),
    # Generate the VBench prompt set: the test bed first
    "python experiments/opensora.py --method base --testbed --limit 4 --num-samples 1 --out /tmp/testbed_base": Run(
        creates=("tmp/testbed_base/manifest.jsonl",), videosys=True
    ),
    "python experiments/opensora.py --method magcache --mag-ratios opensora-testbed --testbed --limit 4 "
    "--num-samples 1 --out /tmp/testbed_mc --baseline /tmp/testbed_base": Run(
        creates=("tmp/testbed_mc/manifest.jsonl",), videosys=True
    ),
    "python experiments/opensora.py --method base --out samples/base": Run(
        TINY, TINY_WHY, ("samples/base/manifest.jsonl",), videosys=True
    ),
    "python experiments/opensora.py --method magcache-fast --out samples/magcache_fast --baseline samples/base": Run(
        TINY, TINY_WHY, ("samples/magcache_fast/manifest.jsonl",), videosys=True
    ),
    "python experiments/opensora.py --method magcache --threshold 0.2 --K 4 --retention-ratio 0.2 "
    "--out samples/mc_0.2_k4": Run(TINY, TINY_WHY, ("samples/mc_0.2_k4/manifest.jsonl",), videosys=True),
    "torchrun --nnodes 4 --nproc-per-node 8 experiments/opensora.py --method magcache-slow "
    "--out /shared/samples/mc_slow": NotHere("a cluster of 4 nodes x 8 GPUs; the torchrun command below shards on CPU"),
    "python experiments/opensora.py --method magcache-fast --out samples/x --dry-run": Run(vbench=True),
    "python experiments/opensora.py --method magcache-fast --tiny --limit 2 --out /tmp/smoke": Run(
        creates=("tmp/smoke/manifest.jsonl",), videosys=True
    ),
    "torchrun --nproc-per-node 2 experiments/opensora.py --method base --tiny --limit 2 --out /tmp/smoke_sharded": Run(
        creates=("tmp/smoke_sharded/manifest.jsonl",), videosys=True
    ),
    "python -m magcache_videosys calibrate --testbed --prompt 'a red circle moves left on a white background' "
    "--num-samples 3 --out testbed_table.json --plot testbed_curve.png": Run(
        creates=("testbed_table.json", "testbed_curve.png"), videosys=True
    ),
    "python -m magcache_videosys.testbed.teacache_fit --out testbed_teacache/": Run(
        "--prompts 1 --seeds 0",
        "one video instead of 12 (29 step pairs still fit a degree-4 polynomial)",
        ("testbed_teacache/teacache_fit.json", "testbed_teacache/teacache_fit.png"),
        videosys=True,
    ),
    "python benchmarks/testbed_table.py --out testbed_table/": Run(
        "--limit 1 --num-samples 2 --rounds 1 --methods magcache_fast_testbed",
        "base and one method on one prompt: the full table takes about 15 minutes on 2 cores",
        ("testbed_table/testbed_table.md", "testbed_table/testbed_table.csv", "testbed_table/testbed_table.png"),
        videosys=True,
    ),
    # Other models
    "python experiments/cogvideox.py --method teacache-slow --tiny --limit 1 --num-samples 1 --steps 4 "
    "--out /tmp/smoke_cogvideox": Run(creates=("tmp/smoke_cogvideox/manifest.jsonl",), videosys=True),
    "python experiments/opensora_plan.py --method pab --tiny --limit 1 --num-samples 1 --steps 4 "
    "--out /tmp/smoke_osp": Run(creates=("tmp/smoke_osp/manifest.jsonl",), videosys=True),
    "python experiments/opensora_plan.py --method teacache-fast --transformer-type 65x512x512 --tiny --limit 1 "
    "--num-samples 1 --steps 4 --out /tmp/smoke_osp11": Run(creates=("tmp/smoke_osp11/manifest.jsonl",), videosys=True),
    "python experiments/latte.py --method teacache-fast --tiny --limit 1 --num-samples 1 --steps 4 "
    "--out /tmp/smoke_latte": Run(creates=("tmp/smoke_latte/manifest.jsonl",), videosys=True),
    "python experiments/vchitect.py --method magcache-calibrate --tiny --limit 1 --num-samples 1 --steps 4 "
    "--out /tmp/smoke_vchitect": Run(creates=("tmp/smoke_vchitect/ratio_table.json",), videosys=True),
    "python experiments/vchitect.py --method magcache --mag-ratios /tmp/smoke_vchitect/ratio_table.json --tiny "
    "--limit 1 --num-samples 1 --steps 4 --out /tmp/smoke_vchitect_mc": Run(
        creates=("tmp/smoke_vchitect_mc/manifest.jsonl",), videosys=True
    ),
    # Evaluate
    'pip install -e ".[eval]"': ExtraCovered("eval"),
    "python eval/common_metrics/eval.py --gt_video_dir samples/base --generated_video_dir samples/magcache_fast "
    "--metrics psnr,ssim --out results/": Run(
        creates=("results/magcache_fast.json", "results/magcache_fast.csv"), videosys=True
    ),
    "python eval/common_metrics/batch_eval.py --gt_video_dirs samples/base --gen_video_dirs samples/* "
    "--metrics psnr,ssim": Run(creates=("samples/batch_eval.md", "samples/batch_eval.csv"), videosys=True),
    "python eval/common_metrics/eval.py --gt_video_dir samples/base --generated_video_dir samples/magcache_fast "
    "--out results/": NotHere("AlexNet's ImageNet weights for LPIPS (tests/test_metrics_lpips.py checks LPIPS)"),
    "python eval/vbench/run_vbench.py --video_path samples/magcache_fast --save_path results/": NotHere(
        "VBench's scoring models and a GPU"
    ),
    "python eval/vbench/cal_vbench.py --score_dir results/": NotHere("the per-dimension results of run_vbench.py"),
    # Tests that need VideoSys, and what was measured
    "MAGCACHE_VIDEOSYS_STRICT=1 MAGCACHE_REFERENCE=/path/to/MagCache TEACACHE_REFERENCE=/path/to/TeaCache "
    "PYTHONPATH=/path/to/VideoSys python -m pytest -rs": RunElsewhere(".ci/run", "python -m pytest -rs"),
    "MAGCACHE_VIDEOSYS_STRICT=1 MAGCACHE_REFERENCE=/path/to/MagCache TEACACHE_REFERENCE=/path/to/TeaCache "
    "PYTHONPATH=/path/to/MagCache python -m pytest -rs": RunElsewhere(".ci/run", "for copy in VideoSys MagCache"),
    "MAGCACHE_REFERENCE=/path/to/MagCache TEACACHE_REFERENCE=/path/to/TeaCache PYTHONPATH=/path/to/VideoSys "
    "python -m pytest tests/test_reference_magcache.py tests/test_reference_teacache.py": RunElsewhere(
        ".ci/run", 'MAGCACHE_REFERENCE="$src/MagCache" TEACACHE_REFERENCE="$src/TeaCache"'
    ),
    "PYTHONPATH=/path/to/VideoSys python benchmarks/bench_magcache.py --threads 1 --rounds 5": NotHere(
        "a benchmark of about 15 minutes on 2 cores (its numbers are the README's table)"
    ),
    "python benchmarks/bench_metrics.py": RunElsewhere(
        "tests/test_metrics_benchmark.py", 'runpy.run_path("benchmarks/bench_metrics.py"'
    ),
    "python benchmarks/testbed_table.py --out benchmarks/results/testbed_table --videos /tmp/testbed_videos "
    "--rounds 4": NotHere(
        "about 14 minutes on 2 cores, and it would overwrite the committed table; the README's smaller "
        "`python benchmarks/testbed_table.py --out testbed_table/` runs the same code"
    ),
    "PYTHONPATH=/path/to/VideoSys python benchmarks/gpu_check.py --out gpu_check/": NotHere("a CUDA GPU"),
    "PYTHONPATH=/path/to/VideoSys python benchmarks/gpu_check.py --small --out /tmp/gpu_check_small": RunElsewhere(
        "tests/test_gpu_check.py", '"--small", "--out"'
    ),
}


def readme_commands() -> dict[str, str]:
    """The commands of the README's ```bash blocks, in order: normalised form -> the line as written."""
    commands: dict[str, str] = {}
    for block in re.findall(r"^```bash\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#\s.*$", "", line).strip()  # a trailing comment
            if line:
                commands[normalised(line)] = line
    return commands


def normalised(command: str) -> str:
    return shlex.join(shlex.split(command, comments=True))


PLANS = {normalised(command): plan for command, plan in COMMANDS.items()}


def test_every_readme_command_is_accounted_for():
    commands = readme_commands()
    assert len(commands) >= 20
    missing = [c for c in commands if c not in PLANS]
    stale = [c for c in PLANS if c not in commands]
    assert not missing, f"README commands without an entry in COMMANDS: {missing}"
    assert not stale, f"COMMANDS entries the README no longer has: {stale}"


@pytest.mark.parametrize("command", [c for c, p in PLANS.items() if isinstance(p, RunElsewhere)])
def test_run_elsewhere_means_that_file_runs_it(command):
    plan = PLANS[command]
    assert plan.text in (ROOT / plan.path).read_text(encoding="utf-8"), f"{plan.path} does not run: {command}"


def test_the_eval_extra_adds_nothing_the_test_extra_lacks():
    """``pip install -e ".[eval]"`` after set-up installs nothing new, so the eval commands' runs here prove it."""
    setup = (ROOT / "setup.py").read_text(encoding="utf-8")
    extras = {
        name: set(re.findall(r'"([A-Za-z0-9_-]+)[^"]*"', body))
        for name, body in re.findall(r'"(\w+)": \[(.*?)\]', setup, flags=re.S)
    }
    assert extras["eval"] and extras["eval"] <= extras["test"]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """The reader's working folder: the scripts' folders, a ``/tmp`` of its own and their own table."""
    folder = tmp_path_factory.mktemp("readme")
    for name in ("experiments", "eval", "benchmarks"):
        (folder / name).symlink_to(ROOT / name)
    (folder / "tmp").mkdir()
    # "my_table.json": a table of the reader's own; here the shipped Open-Sora table, as a file.
    from magcache_videosys.ratios import load_ratio_table

    load_ratio_table("opensora-v1.2").save(folder / "my_table.json")
    return folder


RUNS = [
    pytest.param(c, marks=[pytest.mark.videosys] if p.videosys else []) for c, p in PLANS.items() if isinstance(p, Run)
]


@pytest.mark.parametrize("command", RUNS)
def test_command_runs(command, scratch):
    plan = PLANS[command]
    if plan.vbench and importlib.util.find_spec("vbench") is None:
        pytest.skip("VBench's prompt list is not installed (pip install --no-deps vbench)")
    line = f"{readme_commands()[command]} {plan.append}".strip().replace(" /tmp/", f" {scratch}/tmp/")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
    done = subprocess.run(["bash", "-c", line], cwd=scratch, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{line}\nexit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    for path in plan.creates:
        assert (scratch / path).is_file() and (scratch / path).stat().st_size > 0, f"{line} did not write {path}"
