"""Overhead and speedup of TeaCache on VideoSys's STDiT3 transformer loop, side by side.

Runs VideoSys's own RFLOW sampling loop (batched CFG) over a random-weight STDiT3 in interleaved
rounds: unhooked; TeaCache never skipping (threshold 0: the signal and its host transfer every
step); the same without the host transfer (the signal is computed, the decision does not read it);
each preset; and extra thresholds. Random weights change the modulated input far more per step
than trained ones, so the presets skip nothing here: their rows show the overhead, the extra
thresholds (default 0.5 and 1.0) show skipping. Per variant: median wall time, its ratio to
unhooked, passes, ideal and achieved speedup, and the time per step spent in the decision's
signal and ``.item()``. On CUDA the last includes waiting for the queued work: the cost of the
sync is the never-skip row minus the no-transfer row.

    python benchmarks/bench_teacache.py                 # needs VideoSys importable
    python benchmarks/bench_teacache.py --device cuda --dtype bfloat16 --rounds 5 --json bench.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from bench_magcache import run_loop, sampling_inputs

from magcache_videosys import TeaCacheConfig, apply_teacache, get_stats, remove_teacache
from magcache_videosys.hooks import get_cache
from magcache_videosys.teacache import PRESETS, TeaCachePolicy
from magcache_videosys.tiny import tiny_stdit3
from magcache_videosys.videosys_compat import import_videosys


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
    parser.add_argument("--depth", type=int, default=4, help="STDiT3 depth (spatial+temporal block pairs)")
    parser.add_argument("--hidden", type=int, default=384, help="hidden size")
    parser.add_argument("--heads", type=int, default=6)
    parser.add_argument("--resolution", default="144p")
    parser.add_argument("--aspect-ratio", default="1:1")
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--thresholds", type=float, nargs="*", default=[0.5, 1.0], help="extra TeaCache thresholds")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions; medians are reported")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    args.dtype = getattr(torch, args.dtype)
    device = torch.device(args.device)

    import_videosys()
    from videosys.schedulers.scheduling_rflow_open_sora import RFLOW

    model = tiny_stdit3(depth=args.depth, hidden_size=args.hidden, num_heads=args.heads).to(device, args.dtype)
    scheduler = RFLOW(use_timestep_transform=True, num_sampling_steps=args.steps, cfg_scale=7.0)
    inputs = sampling_inputs(model, args, device)

    never = TeaCacheConfig(threshold=0.0)
    variants: dict[str, tuple[TeaCacheConfig | None, bool]] = {
        "unhooked": (None, True),
        "never skips": (never, True),
        "never skips, no .item()": (never, False),
    }
    variants.update({name: (TeaCacheConfig.preset(name), True) for name in PRESETS})
    variants.update({f"threshold {t:g}": (TeaCacheConfig(threshold=t), True) for t in args.thresholds})
    times: dict[str, list[float]] = {name: [] for name in variants}
    decisions: dict[str, list[float]] = {name: [] for name in variants}
    passes: dict[str, int] = {}

    run_loop(model, scheduler, inputs, device)  # warm-up
    for _ in range(args.rounds):
        for name, (cfg, sync) in variants.items():
            if cfg is not None:
                timed_decisions(apply_teacache(model, cfg).policy, sync, decisions[name])
            times[name].append(run_loop(model, scheduler, inputs, device))
            passes[name] = len(get_stats(model).computed_steps) if cfg is not None else args.steps
            if get_cache(model) is not None:
                remove_teacache(model)

    base_time = statistics.median(times["unhooked"])
    rows = []
    for name in variants:
        t = statistics.median(times[name])
        ideal, achieved = args.steps / passes[name], base_time / t
        per_step = statistics.median(decisions[name]) if decisions[name] else None
        rows.append(dict(variant=name, seconds=t, ratio_to_unhooked=t / base_time, passes=passes[name],
                         ideal_speedup=ideal, achieved_speedup=achieved, decision_s=per_step))

    print(f"STDiT3 depth {args.depth}, hidden {args.hidden}, {args.resolution} {args.aspect_ratio} x {args.frames} "
          f"frames, {args.steps} steps, batched CFG, {device} {str(args.dtype).replace('torch.', '')}, "
          f"median of {args.rounds} interleaved rounds")
    print(f"{'variant':<26}{'wall s':>9}{'x unhooked':>12}{'passes':>8}{'ideal':>8}{'achieved':>10}{'decision ms':>13}")
    for r in rows:
        decision = "" if r["decision_s"] is None else f"{1000 * r['decision_s']:.3f}"
        print(f"{r['variant']:<26}{r['seconds']:>9.3f}{r['ratio_to_unhooked']:>12.3f}{r['passes']:>8}"
              f"{r['ideal_speedup']:>7.2f}x{r['achieved_speedup']:>9.2f}x{decision:>13}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"settings": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
