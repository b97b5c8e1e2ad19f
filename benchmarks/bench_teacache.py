"""Overhead and speedup of TeaCache on VideoSys's STDiT3 transformer loop, side by side.

Runs VideoSys's own RFLOW sampling loop (batched CFG) over a random-weight STDiT3 in interleaved
rounds: unhooked; TeaCache never skipping (threshold 0: the signal and its host transfer every
step); the same without the host transfer (the signal is computed, the decision does not read it);
each preset; and extra thresholds. Random weights change the modulated input far more per step
than trained ones, so the presets skip nothing here: their rows show the overhead, the extra
thresholds (default 0.5 and 1.0) show skipping. Per variant: the best time of the rounds (wall on
CUDA, CPU time on CPU), its ratio to
unhooked, passes, ideal and achieved speedup, and the time per step spent in the decision's
signal and ``.item()``. On CUDA the last includes waiting for the queued work: the cost of the
sync is the never-skip row minus the no-transfer row.

    python benchmarks/bench_teacache.py                 # needs VideoSys importable
    python benchmarks/bench_teacache.py --device cuda --dtype bfloat16 --rounds 5 --json bench.json
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from stdit3_loop import Timings, add_loop_options, build_loop, save_results

from magcache_videosys import TeaCacheConfig, apply_teacache, get_stats, remove_teacache
from magcache_videosys.hooks import get_cache
from magcache_videosys.teacache import PRESETS, TeaCachePolicy


def timed_decisions(policy: TeaCachePolicy, sync: bool, spent: list[float]) -> None:
    """Time the decision's signal and host transfer; without ``sync``, skip the transfer."""
    inner = policy._relative_l1

    def relative_l1(current: torch.Tensor, previous: torch.Tensor) -> float:
        start = time.perf_counter()
        if sync:
            value = inner(current, previous)
        else:
            (current - previous).abs().mean() / previous.abs().mean()
            value = 0.0  # threshold 0 computes whatever the decision reads
        spent.append(time.perf_counter() - start)
        return value

    policy._relative_l1 = relative_l1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_loop_options(parser)
    parser.add_argument("--thresholds", type=float, nargs="*", default=[0.5, 1.0], help="extra TeaCache thresholds")
    args = parser.parse_args()
    loop = build_loop(args)
    model = loop.model

    never = TeaCacheConfig(threshold=0.0)
    variants: dict[str, tuple[TeaCacheConfig | None, bool]] = {
        "unhooked": (None, True),
        "never skips": (never, True),
        "never skips, no .item()": (never, False),
    }
    variants.update({name: (TeaCacheConfig.preset(name), True) for name in PRESETS})
    variants.update({f"threshold {t:g}": (TeaCacheConfig(threshold=t), True) for t in args.thresholds})
    timings = Timings(loop.clock)
    decisions: dict[str, list[float]] = {name: [] for name in variants}
    passes: dict[str, int] = {}

    loop.run()  # warm-up
    for _ in range(args.rounds):
        for name, (cfg, sync) in variants.items():
            if cfg is not None:
                timed_decisions(apply_teacache(model, cfg).policy, sync, decisions[name])
            timings.add(name, loop.run())
            passes[name] = len(get_stats(model).computed_steps) if cfg is not None else args.steps
            if get_cache(model) is not None:
                remove_teacache(model)

    base_time = timings.best("unhooked")
    rows = []
    for name in variants:
        t = timings.best(name)
        ideal, achieved = args.steps / passes[name], base_time / t
        per_step = statistics.median(decisions[name]) if decisions[name] else None
        rows.append(
            dict(
                variant=name,
                seconds=t,
                ratio_to_unhooked=t / base_time,
                passes=passes[name],
                ideal_speedup=ideal,
                achieved_speedup=achieved,
                decision_s=per_step,
            )
        )

    print(loop.description)
    print(
        f"{'variant':<26}{'seconds':>9}{'x unhooked':>12}{'passes':>8}{'ideal':>8}{'achieved':>10}{'decision ms':>13}"
    )
    for r in rows:
        decision = "" if r["decision_s"] is None else f"{1000 * r['decision_s']:.3f}"
        print(
            f"{r['variant']:<26}{r['seconds']:>9.3f}{r['ratio_to_unhooked']:>12.3f}{r['passes']:>8}"
            f"{r['ideal_speedup']:>7.2f}x{r['achieved_speedup']:>9.2f}x{decision:>13}"
        )
    if args.json:
        save_results(args.json, args, loop, rows)


if __name__ == "__main__":
    main()
