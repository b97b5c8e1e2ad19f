"""Overhead and speedup of MagCache on VideoSys's STDiT3 transformer loop, side by side.

Runs VideoSys's own RFLOW sampling loop (30 steps, batched CFG) over a random-weight STDiT3 that is
large enough for the blocks to dominate, in interleaved rounds:
unhooked, hooked but never skipping (K = 0), and each preset. Prints wall time, the ratio to
unhooked, and each preset's achieved speedup against the ideal ``num_steps / computed passes``;
then the memory the cache holds (and, on CUDA, the peak-memory difference).

    python benchmarks/bench_magcache.py                 # needs VideoSys importable
    python benchmarks/bench_magcache.py --depth 4 --hidden 384 --rounds 5 --json bench.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from magcache_videosys import MagCacheConfig, apply_magcache, get_stats, remove_magcache
from magcache_videosys.hooks import get_cache
from magcache_videosys.tiny import tiny_stdit3
from magcache_videosys.videosys_compat import import_videosys

PRESETS = ("opensora-slow", "opensora-fast", "opensora-turbo")


def sampling_inputs(model, args, device):
    from videosys.pipelines.open_sora.data_process import get_image_size, prepare_multi_resolution_info

    size = get_image_size(args.resolution, args.aspect_ratio)
    latent = [-(-args.frames // 4), size[0] // 8, size[1] // 8]  # Open-Sora's VAE: 4x in time, 8x in space
    z = torch.randn(1, 4, *latent, device=device, dtype=args.dtype)
    model_args = prepare_multi_resolution_info("OpenSora", 1, size, args.frames, 24, device, args.dtype)
    model_args["y"] = torch.randn(1, 1, 300, model.config.caption_channels, device=device, dtype=args.dtype)
    model_args["mask"] = torch.ones(1, 300, dtype=torch.long, device=device)
    y_null = model.y_embedder.y_embedding[None].repeat(1, 1, 1)[:, None].to(device)
    return z, model_args, y_null


def run_loop(model, scheduler, inputs, device) -> float:
    z, model_args, y_null = inputs
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.no_grad():
        scheduler.sample(model, z=z, model_args=dict(model_args), y_null=y_null, device=device, progress=False)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=4, help="STDiT3 depth (spatial+temporal block pairs)")
    parser.add_argument("--hidden", type=int, default=384, help="hidden size")
    parser.add_argument("--heads", type=int, default=6)
    parser.add_argument("--resolution", default="144p")
    parser.add_argument("--aspect-ratio", default="1:1")
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions; medians are reported")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    args.dtype = getattr(torch, args.dtype)
    device = torch.device(args.device)

    import_videosys()
    from videosys.schedulers.scheduling_rflow_open_sora import RFLOW

    model = tiny_stdit3(depth=args.depth, hidden_size=args.hidden, num_heads=args.heads).to(device, args.dtype)
    scheduler = RFLOW(use_timestep_transform=True, num_sampling_steps=args.steps, cfg_scale=7.0)
    inputs = sampling_inputs(model, args, device)

    variants = {"unhooked": None, "hooked, never skips": MagCacheConfig.preset("opensora-fast", max_skip_steps=0)}
    variants.update({name: MagCacheConfig.preset(name) for name in PRESETS})
    times: dict[str, list[float]] = {name: [] for name in variants}
    passes: dict[str, int] = {}
    held: dict[str, int] = {}
    peaks: dict[str, int] = {}

    run_loop(model, scheduler, inputs, device)  # warm-up
    for _ in range(args.rounds):
        for name, cfg in variants.items():
            if cfg is not None:
                apply_magcache(model, cfg)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
                base = torch.cuda.memory_allocated(device)
            times[name].append(run_loop(model, scheduler, inputs, device))
            if device.type == "cuda":
                peaks[name] = torch.cuda.max_memory_allocated(device) - base
            if cfg is not None:
                passes[name] = len(get_stats(model).computed_steps)
                residual = get_cache(model).residual
                held[name] = residual.numel() * residual.element_size()
                remove_magcache(model)
            else:
                passes[name] = args.steps

    base_time = statistics.median(times["unhooked"])
    rows = []
    for name in variants:
        t = statistics.median(times[name])
        ideal = args.steps / passes[name]
        achieved = base_time / t
        rows.append(dict(variant=name, seconds=t, ratio_to_unhooked=t / base_time, passes=passes[name],
                         ideal_speedup=ideal, achieved_speedup=achieved, achieved_of_ideal=achieved / ideal,
                         cache_bytes=held.get(name, 0), peak_extra_bytes=peaks.get(name)))

    print(f"STDiT3 depth {args.depth}, hidden {args.hidden}, {args.resolution} {args.aspect_ratio} x {args.frames} "
          f"frames, {args.steps} steps, batched CFG, {device} {str(args.dtype).replace('torch.', '')}, "
          f"median of {args.rounds} interleaved rounds")
    print(f"{'variant':<22}{'wall s':>9}{'x unhooked':>12}{'passes':>8}{'ideal':>8}{'achieved':>10}{'of ideal':>10}"
          f"{'cache MiB':>11}")
    for r in rows:
        print(f"{r['variant']:<22}{r['seconds']:>9.3f}{r['ratio_to_unhooked']:>12.3f}{r['passes']:>8}"
              f"{r['ideal_speedup']:>7.2f}x{r['achieved_speedup']:>9.2f}x{100 * r['achieved_of_ideal']:>9.1f}%"
              f"{r['cache_bytes'] / 2**20:>11.2f}")
    activation = inputs[0].shape
    print(f"one block-stack activation ([cond, uncond] tokens x hidden): "
          f"{next(iter(held.values())) / 2**20:.2f} MiB; the cache holds exactly that per state.")
    if peaks:
        base_peak = peaks["unhooked"]
        for name, peak in peaks.items():
            print(f"peak memory over unhooked, {name}: {(peak - base_peak) / 2**20:+.2f} MiB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"settings": {k: str(v) for k, v in vars(args).items()}, "latent": list(activation),
                       "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
