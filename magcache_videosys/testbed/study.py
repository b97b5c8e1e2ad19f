"""``python -m magcache_videosys.testbed.study --out DIR``: MagCache on the trained test bed.

1. Calibration: every prompt and seed generated with ``MagCacheConfig(calibrate=True)`` through the
   real ``OpenSoraPipeline`` and RFLOW (30 steps, batched CFG 7.0), averaged by the package's own
   ``calibrate.table_from_records`` into a table (``DIR/opensora-testbed.json``, ratio curve
   ``DIR/ratio_curve.png``).
2. The magnitude law in numbers: how far the ratios sit from 1, whether they fall in the last
   steps, and how much they differ between prompts.
3. Fidelity: a few prompts generated uncached and with MagCache settings (the Open-Sora presets,
   and their threshold, K and retention on the table just measured, without the presets' power 0.5);
   PSNR against the uncached clip (the reference definition: per frame, peak 1), the passes
   computed, and whether the probe still reads the prompt.

Everything lands in ``DIR/study.json``; ``DIR/frames.png`` shows frames 0, 4, 8, 12, 16 of the
uncached fidelity clips, one row per prompt.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from ..atomic import write_atomic, write_json_atomic
from ..console import check_output_folder, int_at_least, run_command
from .model import GENERATE_KWARGS, WEIGHTS, testbed_opensora_pipeline
from .probe import read_clip
from .task import parse_prompt

TABLE_NAME = "opensora-testbed"
STEPS = 30
CFG_SCALE = 7.0
# Every colour, direction and background at least once; both shapes.
PROMPTS = (
    "a red circle moves left on a black background",
    "a green square moves right on a white background",
    "a blue circle moves up on a gray background",
    "a yellow square moves down on a black background",
    "a magenta circle moves right on a gray background",
    "a cyan square moves left on a white background",
)
SETTINGS = ("opensora-slow", "opensora-fast", "opensora-turbo")
LAST_STEPS = 5  # "the last steps" of the magnitude law
MODEL = "test bed: STDiT3 trained on the synthetic shapes task (magcache_videosys.testbed, weights/testbed.safetensors)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m magcache_videosys.testbed.study",
        description="Calibrate MagCache on the trained test bed, check the magnitude law, and measure PSNR.",
    )
    parser.add_argument("--out", required=True, help="folder for opensora-testbed.json, ratio_curve.png, study.json")
    parser.add_argument("--weights", default=str(WEIGHTS), help="test-bed weights (default: the shipped ones)")
    parser.add_argument(
        "--prompts",
        type=int_at_least(1),
        default=len(PROMPTS),
        help=f"calibration prompts (default all {len(PROMPTS)})",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="calibration seeds (default 0 1 2)")
    parser.add_argument(
        "--fidelity-prompts", type=int_at_least(0), default=4, help="prompts for the PSNR check (default 4)"
    )
    parser.add_argument("--threads", type=int_at_least(1), default=None, help="torch threads (default: torch's)")
    return parser


def _generate(pipeline: Any, prompt: str, seed: int) -> torch.Tensor:
    return pipeline.generate(prompt, seed=seed, verbose=False, **GENERATE_KWARGS).video[0]


def calibrate(pipeline: Any, prompts: Sequence[str], seeds: Sequence[int]) -> tuple[Any, list[dict[str, Any]]]:
    """The table averaged by ``calibrate.table_from_records`` and, per run, its prompt, seed and ratios."""
    from ..calibrate import table_from_records
    from ..magcache import MagCacheConfig
    from ..plugin import disable_magcache, enable_magcache, get_stats
    from ..records import VideoRecord

    settings = dict(
        model=MODEL,
        scheduler=f"RFLOW, {STEPS} steps, timestep transform, batched CFG {CFG_SCALE}",
        num_steps=STEPS,
        cfg_scale=CFG_SCALE,
        resolution=GENERATE_KWARGS["resolution"],
        aspect_ratio=GENERATE_KWARGS["aspect_ratio"],
        num_frames=GENERATE_KWARGS["num_frames"],
        dtype="float32",
    )
    enable_magcache(pipeline, MagCacheConfig(calibrate=True))
    records = []
    try:
        for prompt in prompts:
            for seed in seeds:
                _generate(pipeline, prompt, seed)
                measured = get_stats(pipeline).measured
                name = f"{len(records):03d}.mp4"
                records.append(VideoRecord(name, prompt=prompt, seed=seed, settings=settings, extra=measured))
    finally:
        disable_magcache(pipeline)
    table = table_from_records(records, name=TABLE_NAME, source="python -m magcache_videosys.testbed.study")
    return table, [dict(prompt=r.prompt, seed=r.seed, ratio=r.extra["ratio"]) for r in records]


def magnitude_law(ratios: Sequence[float], runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Numbers that say whether the law holds: near 1, falling at the end, alike across prompts."""
    middle = ratios[:-LAST_STEPS]
    by_prompt: dict[str, list[list[float]]] = {}
    for run in runs:
        by_prompt.setdefault(run["prompt"], []).append(run["ratio"])
    prompt_means = [[statistics.fmean(v) for v in zip(*r)] for r in by_prompt.values()]
    spread = [max(v) - min(v) for v in zip(*prompt_means)]
    run_std = [statistics.pstdev(v) for v in zip(*(r["ratio"] for r in runs))]
    return dict(
        first_ratio=ratios[0],
        min_ratio=min(ratios),
        max_ratio=max(ratios),
        mean_abs_deviation_from_1=statistics.fmean(abs(1 - r) for r in ratios),
        mean_ratio_before_last_steps=statistics.fmean(middle),
        mean_ratio_last_steps=statistics.fmean(ratios[-LAST_STEPS:]),
        last_steps=LAST_STEPS,
        last_ratios=list(ratios[-LAST_STEPS:]),
        prompt_spread_max=max(spread),
        prompt_spread_mean=statistics.fmean(spread),
        prompt_spread_per_step=spread,
        run_std_max=max(run_std),
        run_std_mean=statistics.fmean(run_std),
        prompt_spread_definition="per step, the largest minus the smallest of the per-prompt mean ratios (over seeds)",
    )


def fidelity(pipeline: Any, prompts: Sequence[str], table: Any, seed: int = 0) -> dict[str, Any]:
    """PSNR of MagCache settings against the uncached clip, passes, and the probe's reading."""
    from ..magcache import MagCacheConfig
    from ..metrics.psnr import psnr_frames
    from ..plugin import disable_magcache, enable_magcache, get_stats

    configs = {name: MagCacheConfig.preset(name) for name in SETTINGS}
    # The same knobs on the measured table, used as measured (the Open-Sora presets' power 0.5 is the
    # reference's smoothing of its own table).
    for name in SETTINGS:
        configs[name.replace("opensora", "testbed")] = configs[name].replace(mag_ratios=table, ratio_power=1.0)
    base = {p: _generate(pipeline, p, seed) for p in prompts}
    result: dict[str, Any] = dict(
        seed=seed,
        uncached={p: _reading(base[p], p) for p in prompts},
        settings={},
    )
    for name, config in configs.items():
        enable_magcache(pipeline, config)
        try:
            rows = []
            for p in prompts:
                clip = _generate(pipeline, p, seed)
                stats = get_stats(pipeline)
                psnr = float(psnr_frames(base[p], clip).mean())
                rows.append(dict(prompt=p, psnr=psnr, computed=len(stats.computed_steps), **_reading(clip, p)))
        finally:
            disable_magcache(pipeline)
        result["settings"][name] = dict(
            config=config.to_dict() | dict(mag_ratios=config.table.name),
            mean_psnr=statistics.fmean(r["psnr"] for r in rows),
            computed_steps=rows[0]["computed"],
            per_prompt=rows,
        )
    result["frames"] = base
    return result


def _reading(clip: torch.Tensor, prompt: str) -> dict[str, Any]:
    reading = read_clip(clip)
    return dict(reading=reading.to_dict(), matches=reading.matches(parse_prompt(prompt)))


def save_frames(clips: Sequence[torch.Tensor], path: Path) -> None:
    """Frames 0, 4, 8, 12, 16 of each clip side by side, one row per clip (PNG)."""
    from PIL import Image

    rows = [torch.cat([clip[k] for k in range(0, clip.shape[0], 4)], dim=1) for clip in clips]
    image = Image.fromarray(torch.cat(rows, dim=0).numpy())
    write_atomic(path, lambda tmp: image.save(tmp, format="png"))


def study(args: argparse.Namespace) -> int:
    from ..configs import OpenSoraConfig
    from ..plots import plot_ratio_curve

    out = check_output_folder(args.out, "--out")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    pipeline = testbed_opensora_pipeline(OpenSoraConfig(num_sampling_steps=STEPS, cfg_scale=CFG_SCALE), args.weights)
    table, runs = calibrate(pipeline, PROMPTS[: args.prompts], args.seeds)
    out.mkdir(parents=True, exist_ok=True)
    table.save(out / f"{TABLE_NAME}.json")
    plot_ratio_curve(table, out / "ratio_curve.png")
    law = magnitude_law(table.ratios, runs)
    check = fidelity(pipeline, PROMPTS[: args.fidelity_prompts], table)
    save_frames(list(check.pop("frames").values()), out / "frames.png")
    report = dict(
        command="python -m magcache_videosys.testbed.study " + " ".join(sys.argv[1:]),
        weights=dict(path=str(args.weights), sha256=hashlib.sha256(Path(args.weights).read_bytes()).hexdigest()),
        table=f"{TABLE_NAME}.json",
        magnitude_law=law,
        fidelity=check,
        calibration_runs=runs,
        wall_time_s=round(time.perf_counter() - started, 1),
        torch_threads=torch.get_num_threads(),
    )
    write_json_atomic(out / "study.json", report)
    print(f"ratios (step 1..{STEPS - 1}): " + " ".join(f"{r:.4f}" for r in table.ratios))
    print(
        f"mean |1 - ratio| {law['mean_abs_deviation_from_1']:.4f}; before the last {LAST_STEPS} steps "
        f"{law['mean_ratio_before_last_steps']:.4f}, last {LAST_STEPS} {law['mean_ratio_last_steps']:.4f}; "
        f"spread across prompts max {law['prompt_spread_max']:.4f}, mean {law['prompt_spread_mean']:.4f}"
    )
    for name, row in check["settings"].items():
        print(f"{name:15s} {row['computed_steps']:2d}/{STEPS} passes  PSNR {row['mean_psnr']:.2f} dB")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> int:
        try:
            return study(args)
        except (ValueError, OSError) as exc:
            print(f"testbed.study: error: {exc}", file=sys.stderr)
            return 2

    return run_command(run, "testbed.study")


if __name__ == "__main__":
    sys.exit(main())
