"""Searched schedules against MagCache's greedy rule and TeaCache at equal passes, on held-out prompts.

1. Segment errors (``magcache_videosys.segment_errors``) recorded on the *search* prompts and seeds,
   K up to the largest budget's, segments from step 0 (so any retention can be searched); its
   uncached runs also give the model's own MagCache ratio table.
2. For each budget (passes, K), at retention 0.2 (``r0.2``: the first 6 of 30 steps computed, as
   MagCache's presets) and without retention (``r0``: only step 0, as TeaCache): the searched
   mask (``magcache_videosys.search``) and MagCache's rule on that table at the lowest threshold
   reaching the same passes with the same K and retention; the searched mask with the largest K
   recorded where the budget's is smaller; the MagCache preset of that K on the shipped Open-Sora
   1.2 table when it has the same passes; and TeaCache with its threshold bisected until its mean
   passes over the held-out videos come closest to the budget (the pass count, not the fidelity,
   is tuned on them).
3. Every method generates the *held-out* prompts at other seeds; PSNR and SSIM (the reference
   definitions, ``magcache_videosys.metrics``) against the uncached video of the same prompt and seed.

Writes ``OUT/search_heldout.md``, ``.csv``, ``.png`` (PSNR against passes), the segment errors and
the searched schedules. ``--model testbed`` is the trained test bed (``magcache_videosys.testbed``),
``--model tiny`` the random-weight tiny Open-Sora, whose numbers only exercise the script.

    PYTHONPATH=/path/to/VideoSys python benchmarks/search_heldout.py --model testbed --out results/search
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from magcache_videosys import (
    MagCacheConfig,
    TeaCacheConfig,
    disable_magcache,
    disable_schedule,
    disable_teacache,
    enable_magcache,
    enable_schedule,
    enable_teacache,
    get_stats,
)
from magcache_videosys.atomic import write_json_atomic, write_text_atomic
from magcache_videosys.console import check_output_folder, int_at_least
from magcache_videosys.metrics.psnr import psnr_frames
from magcache_videosys.metrics.ssim import ssim_frames
from magcache_videosys.search import predicted_error, search
from magcache_videosys.segment_errors import SegmentErrors, record_segment_errors, video_error

RETENTION = 0.2
PRESET_OF_K = {1: "opensora-slow", 3: "opensora-fast", 5: "opensora-turbo"}
TINY_PROMPTS = (
    "a cat on a sofa",
    "a red car on a wet street at night",
    "waves breaking on rocks",
    "a bird flying over a forest",
    "a city skyline at dawn",
    "a dog running on a beach",
    "snow falling in a quiet village",
    "a bowl of fruit on a table",
    "fireworks over a harbour",
    "a sailboat on a calm lake",
)

Video = torch.Tensor  # (T, H, W, 3) uint8


def build(model: str, steps: int) -> tuple[Any, Callable[[str, int], Video], list[str]]:
    """The pipeline, ``generate(prompt, seed)`` and the prompt pool of the model."""
    if model == "testbed":
        from magcache_videosys.testbed import GENERATE_KWARGS, all_prompts, testbed_opensora_pipeline

        pipeline = testbed_opensora_pipeline(num_sampling_steps=steps)
        size, pool = dict(GENERATE_KWARGS), list(all_prompts())
    else:
        from magcache_videosys.tiny import tiny_opensora_pipeline

        pipeline = tiny_opensora_pipeline(num_sampling_steps=steps)
        size, pool = dict(resolution="144p", aspect_ratio="1:1", num_frames=17), list(TINY_PROMPTS)

    def generate(prompt: str, seed: int) -> Video:
        return torch.as_tensor(pipeline.generate(prompt, seed=seed, verbose=False, **size).video[0])

    return pipeline, generate, pool


def fidelity(videos: list[Video], references: list[Video]) -> dict[str, float]:
    """PSNR and SSIM per frame, averaged over frames, then over videos; and the mean squared error."""
    psnr = [float(psnr_frames(r, v, fused=False).mean()) for v, r in zip(videos, references)]
    ssim = [float(ssim_frames(r, v, fused=False).mean()) for v, r in zip(videos, references)]
    mse = [video_error(v, r) for v, r in zip(videos, references)]
    return {"psnr": statistics.fmean(psnr), "ssim": statistics.fmean(ssim), "mse": statistics.fmean(mse)}


def run_with(pipeline: Any, generate: Callable, samples: list, enable: Callable, disable: Callable) -> tuple:
    """Generate every sample with a method enabled; the videos and each run's computed passes."""
    enable(pipeline)
    videos, passes = [], []
    try:
        for prompt, seed in samples:
            videos.append(generate(prompt, seed))
            passes.append(len(get_stats(pipeline).computed_steps))
    finally:
        disable(pipeline)
    return videos, passes


def teacache_at(pipeline: Any, generate: Callable, samples: list, target: int, iterations: int) -> tuple:
    """TeaCache whose mean passes over ``samples`` come closest to ``target`` (bisection on the threshold)."""
    cache: dict[float, tuple] = {}

    def attempt(threshold: float) -> tuple:
        if threshold not in cache:
            cfg = TeaCacheConfig.preset("teacache-slow", threshold=threshold)
            cache[threshold] = run_with(
                pipeline, generate, samples, lambda p: enable_teacache(p, cfg), disable_teacache
            )
        return cache[threshold]

    def mean_passes(threshold: float) -> float:
        return statistics.fmean(attempt(threshold)[1])

    low, high = 0.0, 0.05
    while mean_passes(high) > target and high < 1e4:
        low, high = high, high * 2
    for _ in range(iterations):
        middle = (low + high) / 2
        if mean_passes(middle) > target:
            low = middle
        else:
            high = middle
    best = min(cache, key=lambda t: (abs(mean_passes(t) - target), t))
    return best, *cache[best]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("testbed", "tiny"), default="testbed")
    parser.add_argument("--out", required=True, type=Path, help="folder for the tables, plot, errors and schedules")
    parser.add_argument("--steps", type=int_at_least(4), default=30)
    parser.add_argument("--budgets", default="18:1,12:3,10:5", help="passes:K pairs (default 18:1,12:3,10:5)")
    parser.add_argument("--search-prompts", type=int_at_least(1), default=4)
    parser.add_argument("--heldout-prompts", type=int_at_least(1), default=6)
    parser.add_argument("--objectives", default="sum,rms", help="search objectives, comma-separated (default sum,rms)")
    parser.add_argument("--errors", type=Path, help="reuse this segment-error recording (of the same samples)")
    parser.add_argument("--teacache-iterations", type=int_at_least(0), default=10)
    parser.add_argument("--threads", type=int_at_least(1), help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    budgets = [tuple(int(x) for x in pair.split(":")) for pair in args.budgets.split(",")]
    objectives = args.objectives.split(",")
    check_output_folder(args.out, "--out")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()

    pipeline, generate, pool = build(args.model, args.steps)
    random.Random(0).shuffle(pool)
    if len(pool) < args.search_prompts + args.heldout_prompts:
        parser.error(f"the {args.model} prompt pool has {len(pool)} prompts; ask for fewer.")
    search_samples = [(p, i) for i, p in enumerate(pool[: args.search_prompts])]
    heldout = [(p, 1000 + i) for i, p in enumerate(pool[args.search_prompts :][: args.heldout_prompts])]
    n = args.steps
    k_max = max(k for _, k in budgets)
    if args.errors is not None:
        errors = SegmentErrors.load(args.errors)
        recorded = [(s["prompt"], s["seed"]) for s in errors.provenance["samples"]]
        if (errors.num_steps, errors.first_start, recorded) != (n, 0, search_samples) or errors.max_skip_steps < k_max:
            parser.error(f"{args.errors} is not a recording of these search samples, {n} steps, K >= {k_max}.")
    else:
        provenance = {"model": args.model}
        errors = record_segment_errors(pipeline, generate, search_samples, n, k_max, 0, provenance=provenance)
    errors.save(args.out / "segment_errors.json")
    table = errors.ratio_table
    base = [generate(p, s) for p, s in heldout]

    rows: list[dict[str, Any]] = []

    def held_out(enable: Callable, disable: Callable) -> tuple:
        return run_with(pipeline, generate, heldout, enable, disable)

    def add(budget: str, method: str, setting: str, videos: list, passes: list, predicted: float | None) -> None:
        rows.append(
            {
                "budget": budget,
                "method": method,
                "setting": setting,
                "mean_passes": statistics.fmean(passes),
                "predicted_error": predicted,
                **fidelity(videos, base),
            }
        )

    for passes, k in budgets:
        budget = f"{passes}/{n} K{k}"
        for retention in (RETENTION, 0.0):
            tag = f"r{retention:g}"
            for objective in objectives:
                name = f"searched-{passes}of{n}-K{k}-{tag}-{objective}"
                result = search(errors, passes, k, retention, objective=objective, name=name)
                schedule = result.schedule
                schedule.save(args.out / f"{name}.json")
                videos, done = held_out(lambda p: enable_schedule(p, schedule), disable_schedule)
                assert set(done) == {passes}, done
                predicted = predicted_error(errors, schedule.skip)
                add(budget, f"searched {objective} {tag}", schedule.mask_text(), videos, done, predicted)
            mc = result.magcache
            if mc is not None:
                cfg = MagCacheConfig(
                    mag_ratios=table, threshold=mc.threshold, max_skip_steps=k, retention_ratio=retention
                )
                videos, done = held_out(lambda p: enable_magcache(p, cfg), disable_magcache)
                assert set(done) == {mc.num_computed}, (done, mc.num_computed)
                mc_skip = [st.skipped for st in mc.steps]
                mask = "".join("s" if skipped else "C" for skipped in mc_skip)
                setting = f"threshold {mc.threshold:g}: {mask}"
                add(budget, f"magcache own table {tag}", setting, videos, done, predicted_error(errors, mc_skip))
        if k < k_max:  # the same budget with the freedom of the largest K recorded
            free = search(errors, passes, k_max, 0.0, objective=objectives[0]).schedule
            videos, done = held_out(lambda p: enable_schedule(p, free), disable_schedule)
            predicted = predicted_error(errors, free.skip)
            add(budget, f"searched {objectives[0]} K{k_max} r0", free.mask_text(), videos, done, predicted)
        preset = PRESET_OF_K.get(k)
        if preset is not None and MagCacheConfig.preset(preset).plan(n).num_computed == passes:
            cfg = MagCacheConfig.preset(preset)
            skip = [st.skipped for st in cfg.plan(n).steps]
            videos, done = held_out(lambda p: enable_magcache(p, cfg), disable_magcache)
            predicted = predicted_error(errors, skip)
            add(budget, "magcache preset r0.2", f"{preset}, shipped Open-Sora 1.2 table", videos, done, predicted)
        threshold, videos, done = teacache_at(pipeline, generate, heldout, passes, args.teacache_iterations)
        add(budget, "teacache", f"threshold {threshold:.4g}", videos, done, None)

    info = {
        "model": args.model,
        "steps": n,
        "retention_ratios": [RETENTION, 0.0],
        "objectives": objectives,
        "search_samples": search_samples,
        "heldout_samples": heldout,
        "segment_errors": {k: v for k, v in errors.provenance.items() if k != "samples"},
        "seconds": round(time.perf_counter() - started, 1),
        "threads": torch.get_num_threads(),
    }
    write_json_atomic(args.out / "search_heldout.json", {"settings": info, "rows": rows})
    write_outputs(args.out, rows, info)
    print((args.out / "search_heldout.md").read_text())
    return 0


COLUMNS = ("budget", "method", "mean_passes", "psnr", "ssim", "mse", "predicted_error", "setting")


def write_outputs(out: Path, rows: list[dict[str, Any]], info: dict[str, Any]) -> None:
    """Markdown and CSV tables, and PSNR against passes as PNG."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    writer.writerows([[r[c] for c in COLUMNS] for r in rows])
    write_text_atomic(out / "search_heldout.csv", buffer.getvalue())

    def cell(value: Any, digits: str) -> str:
        return "-" if value is None else format(value, digits)

    lines = [
        f"model {info['model']}, {info['steps']} steps; predicted: the sum model's MSE; searched on "
        f"{len(info['search_samples'])} prompt/seed pairs, measured on "
        f"{len(info['heldout_samples'])} held-out prompts at other seeds; segment errors cost "
        f"{info['segment_errors']['full_passes']} full passes ({info['segment_errors']['uncached_runs_equivalent']} "
        f"uncached runs); {info['seconds']} s with {info['threads']} thread(s)",
        "",
        "| budget | method | mean passes | PSNR dB | SSIM | MSE | predicted | setting |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['budget']} | {r['method']} | {r['mean_passes']:.2f} | {r['psnr']:.2f} | {r['ssim']:.4f} | "
            f"{r['mse']:.3g} | {cell(r['predicted_error'], '.3g')} | {r['setting']} |"
        )
    write_text_atomic(out / "search_heldout.md", "\n".join(lines) + "\n")
    try:
        from magcache_videosys.plots import figure_module, save_png

        plt = figure_module()
    except ImportError as exc:
        print(f"no plot: {exc}", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        ax.plot([r["mean_passes"] for r in mine], [r["psnr"] for r in mine], marker="o", label=method)
    ax.set_xlabel(f"full passes of {info['steps']} steps (mean over held-out videos)")
    ax.set_ylabel("PSNR vs uncached (dB)")
    ax.set_title(f"{info['model']}: held-out fidelity at equal passes", fontsize=9)
    ax.legend(fontsize=8)
    try:
        save_png(fig, out / "search_heldout.png")
    finally:
        plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
