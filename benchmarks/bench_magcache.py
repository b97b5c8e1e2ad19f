"""Overhead and speedup of MagCache on VideoSys's STDiT3 transformer loop, side by side.

Runs VideoSys's own RFLOW sampling loop (30 steps, batched CFG) over a random-weight STDiT3 that is
large enough for the blocks to dominate, in interleaved rounds: unhooked, hooked but never skipping
(K = 0), each preset, and a floor that skips every step after the first. Prints the time (wall on
CUDA, the process's CPU time on CPU), the ratio to unhooked, each preset's achieved speedup against
the ideal ``num_steps / computed passes``, and the memory the cache holds (on CUDA also the
peak-memory difference).

    python benchmarks/bench_magcache.py                 # needs VideoSys importable
    python benchmarks/bench_magcache.py --threads 1 --rounds 5 --json bench.json
"""

from __future__ import annotations

import argparse
import itertools

import torch
from stdit3_loop import Timings, add_loop_options, build_loop, save_results
from tqdm import tqdm

from magcache_videosys import MagCacheConfig, apply_magcache, get_stats, remove_magcache
from magcache_videosys.hooks import get_cache

PRESETS = ("opensora-slow", "opensora-fast", "opensora-turbo")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_loop_options(parser)
    args = parser.parse_args()
    loop = build_loop(args)
    model, device, steps = loop.model, loop.device, args.steps

    variants = {"unhooked": None, "hooked, never skips": MagCacheConfig.preset("opensora-fast", max_skip_steps=0)}
    variants.update({name: MagCacheConfig.preset(name) for name in PRESETS})
    # Skips every step after the first: what the steps cost without the block stack.
    variants["floor (1 pass)"] = MagCacheConfig(
        mag_ratios=[1.0] * (steps - 1), threshold=1e9, max_skip_steps=steps, retention_ratio=0.0
    )
    timings = Timings(loop.clock)
    passes: dict[str, int] = {}
    held: dict[str, int] = {}
    peaks: dict[str, int] = {}

    print("warm-up loop", flush=True)
    loop.run()
    runs = tqdm(
        itertools.product(range(args.rounds), variants.items()),
        total=args.rounds * len(variants),
        desc="loops",
        unit="loop",
    )
    for _, (name, cfg) in runs:
        runs.set_postfix_str(name)
        if cfg is not None:
            apply_magcache(model, cfg)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
        timings.add(name, loop.run())
        if device.type == "cuda":
            peaks[name] = torch.cuda.max_memory_allocated(device) - base
        passes[name] = steps
        if cfg is not None:
            passes[name] = len(get_stats(model).computed_steps)
            residual = get_cache(model).residual
            held[name] = residual.numel() * residual.element_size()
            remove_magcache(model)

    base_time = timings.best("unhooked")
    rows = []
    for name in variants:
        t = timings.best(name)
        ideal, achieved = steps / passes[name], base_time / t
        rows.append(
            dict(
                variant=name,
                seconds=t,
                spread=timings.spread(name),
                wall_seconds=min(timings.walls[name]),
                ratio_to_unhooked=t / base_time,
                passes=passes[name],
                ideal_speedup=ideal,
                achieved_speedup=achieved,
                achieved_of_ideal=achieved / ideal,
                cache_bytes=held.get(name, 0),
                peak_extra_bytes=peaks.get(name),
            )
        )

    print(loop.description + "; spread: slowest round over fastest, whole loops")
    print(
        f"{'variant':<22}{'seconds':>9}{'spread':>8}{'x unhooked':>12}{'passes':>8}{'ideal':>8}"
        f"{'achieved':>10}{'of ideal':>10}{'cache MiB':>11}"
    )
    for r in rows:
        print(
            f"{r['variant']:<22}{r['seconds']:>9.3f}{100 * r['spread']:>7.1f}%{r['ratio_to_unhooked']:>12.3f}"
            f"{r['passes']:>8}{r['ideal_speedup']:>7.2f}x{r['achieved_speedup']:>9.2f}x"
            f"{100 * r['achieved_of_ideal']:>9.1f}%{r['cache_bytes'] / 2**20:>11.2f}"
        )
    per_pass = (base_time - timings.best("floor (1 pass)")) / (steps - 1)
    outside = (base_time - steps * per_pass) / base_time
    fast = passes["opensora-fast"]
    print(
        f"outside the block stack (embedders, final layer, sampler): {100 * outside:.1f}% of the unhooked loop; "
        f"skipped steps still pay it, so achieved/ideal tops out near "
        f"{100 / (1 + outside * (steps / fast - 1)):.1f}% at opensora-fast's {fast} passes."
    )
    print(
        f"the cache holds one residual per state: {next(iter(held.values())) / 2**20:.2f} MiB, one block-stack "
        f"activation ([cond, uncond] x tokens x hidden)."
    )
    if peaks:
        for name, peak in peaks.items():
            print(f"peak memory over unhooked, {name}: {(peak - peaks['unhooked']) / 2**20:+.2f} MiB")
    if args.json:
        save_results(args.json, args, loop, rows)


if __name__ == "__main__":
    main()
