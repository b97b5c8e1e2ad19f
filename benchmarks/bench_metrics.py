"""PSNR + SSIM throughput and memory: the reference tool's per-frame loop against magcache_videosys.metrics.

Makes a folder of reference mp4s (smooth random content) and "generated" copies with Gaussian noise
of a known level, then on the same CPU measures, for each side:

* metrics only: frames already decoded in memory, frame pairs per second; ours with the fused CPU
  kernels (the default; their one-time compile is timed separately) and eagerly (what runs where no
  C++ compiler is found);
* end to end: decode both folders and score them, frame pairs per second;
* peak memory: one evaluation of 10, 100 and 1,000 pairs (``--rss-pairs``; hard links to a few
  videos of ``--rss-frames`` frames, decoded for real), each in a fresh process, its peak RSS.

The baseline is a straightforward re-implementation of the reference tool's structure (imageio
reader, per-video tensors, per frame and channel an 11x11 Gaussian filter in float64 for SSIM and a
numpy mean for PSNR). The reference filters with ``cv2.filter2D``; here the same float64 filter is
two ``scipy.ndimage.correlate1d`` passes (equal to 1e-15; scipy comes with the test extra through
scikit-image), so no OpenCV is needed. Both sides must agree on the mean values.

    python benchmarks/bench_metrics.py                      # 32 videos, 51 frames, 240p; ~10 minutes on 2 cores
    python benchmarks/bench_metrics.py --videos 8 --frames 17 --height 144 --width 256 --rss-pairs 10,100   # quick
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as eval/common_metrics/eval.py sets it, before torch loads

import numpy as np
import torch

import magcache_videosys
from magcache_videosys.console import float_at_least, int_at_least
from magcache_videosys.metrics.evaluate import FrameScorer, default_batch_size, evaluate, score_video, scoring_context
from magcache_videosys.metrics.fused import ENV_SWITCH
from magcache_videosys.metrics.video_io import read_video

_START = time.perf_counter()


def say(message: str) -> None:
    """Progress on stdout as each stage starts, so a long run is never silent."""
    print(f"[{time.perf_counter() - _START:6.0f}s] {message}", flush=True)


def make_videos(root: Path, videos: int, frames: int, height: int, width: int, noise: float, seed: int) -> None:
    import imageio

    rng = np.random.default_rng(seed)
    for folder in ("reference", "generated"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for index in range(videos):
        coarse = torch.from_numpy(rng.random((frames, 3, height // 16 + 1, width // 16 + 1)) * 255)
        smooth = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
        reference = smooth.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        noisy = reference + rng.normal(0.0, noise, reference.shape)
        generated = np.clip(np.round(noisy), 0, 255).astype(np.uint8)
        for folder, video in (("reference", reference), ("generated", generated)):
            imageio.mimwrite(
                root / folder / f"video_{index:04d}.mp4", list(video), fps=8, quality=8, macro_block_size=1
            )


# ----- baseline: the reference tool's loop structure, written out plainly -----------------------------


def baseline_load(path: Path) -> torch.Tensor:
    import imageio

    reader = imageio.get_reader(path, "ffmpeg")
    frames = [torch.tensor(frame).permute(2, 0, 1) for frame in reader]
    reader.close()
    return torch.stack(frames)


def gaussian_kernel() -> np.ndarray:
    """``cv2.getGaussianKernel(11, 1.5)``: the normalised 1-D Gaussian, float64."""
    x = np.arange(11, dtype=np.float64) - 5
    kernel = np.exp(-(x**2) / (2 * 1.5**2))
    return kernel / kernel.sum()


def baseline_filter(img: np.ndarray) -> np.ndarray:
    """``cv2.filter2D(img, -1, outer(k, k))[5:-5, 5:-5]`` in float64: the same window as two 1-D passes
    (cv2's default border is scipy's "mirror"; the crop drops every pixel it touches)."""
    from scipy.ndimage import correlate1d

    kernel = gaussian_kernel()
    rows = correlate1d(img, kernel, axis=0, mode="mirror")
    return correlate1d(rows, kernel, axis=1, mode="mirror")[5:-5, 5:-5]


def baseline_ssim_channel(img1: np.ndarray, img2: np.ndarray) -> float:
    c1, c2 = 0.01**2, 0.03**2
    img1, img2 = img1.astype(np.float64), img2.astype(np.float64)
    mu1 = baseline_filter(img1)
    mu2 = baseline_filter(img2)
    sigma1 = baseline_filter(img1**2) - mu1**2
    sigma2 = baseline_filter(img2**2) - mu2**2
    sigma12 = baseline_filter(img1 * img2) - mu1 * mu2
    ssim_map = ((2 * mu1 * mu2 + c1) * (2 * sigma12 + c2)) / ((mu1**2 + mu2**2 + c1) * (sigma1 + sigma2 + c2))
    return float(ssim_map.mean())


def baseline_psnr_frame(img1: np.ndarray, img2: np.ndarray) -> float:
    mse = np.mean((img1 - img2) ** 2)
    return 100.0 if mse < 1e-10 else 20 * math.log10(1 / math.sqrt(mse))


def baseline_scores(references: list[torch.Tensor], generated: list[torch.Tensor]) -> tuple[float, float]:
    """Per video and frame, as the reference does; then per-frame-index means, then their mean."""
    psnr, ssim = [], []
    for ref_video, gen_video in zip(references, generated):
        ref_video, gen_video = ref_video / 255.0, gen_video / 255.0
        psnr_video, ssim_video = [], []
        for ref_frame, gen_frame in zip(ref_video, gen_video):
            a, b = ref_frame.numpy(), gen_frame.numpy()
            psnr_video.append(baseline_psnr_frame(a, b))
            ssim_video.append(np.mean([baseline_ssim_channel(a[c], b[c]) for c in range(3)]))
        psnr.append(psnr_video)
        ssim.append(ssim_video)
    return float(np.mean(np.mean(psnr, axis=0))), float(np.mean(np.mean(ssim, axis=0)))


# ----- measurements ------------------------------------------------------------------------------------


def runs(count: int) -> str:
    return f"{count} run{'s' if count != 1 else ''}"


def best_time(function, repeats: int):
    """Fastest of ``repeats`` runs (the machine may be shared), with the last result."""
    best, result = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


@contextlib.contextmanager
def fused_kernels(on: bool):
    """Run the block with the fused kernels on or off (the environment switch users have)."""
    before = os.environ.get(ENV_SWITCH)
    os.environ[ENV_SWITCH] = "1" if on else "0"
    try:
        yield
    finally:
        if before is None:
            del os.environ[ENV_SWITCH]
        else:
            os.environ[ENV_SWITCH] = before


def ours_in_memory(references: list[np.ndarray], generated: list[np.ndarray], batch_size: int | None):
    scorer = FrameScorer(("psnr", "ssim"), "cpu")
    psnr, ssim = [], []
    with scoring_context("cpu") as pool:
        for ref, gen in zip(references, generated):
            chunk = batch_size or default_batch_size(torch.device("cpu"), *gen.shape[1:3])
            values = score_video(scorer, torch.from_numpy(ref), torch.from_numpy(gen), chunk, pool)
            psnr.append(values["psnr"])
            ssim.append(values["ssim"])
    return float(np.mean(np.mean(psnr, axis=0))), float(np.mean(np.mean(ssim, axis=0)))


# ----- peak memory: one evaluation per fresh process ------------------------------------------------------

MEASURE_RSS = """
import os, sys, time
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from magcache_videosys.metrics.evaluate import evaluate
root, workers = sys.argv[1], int(sys.argv[2])
start = time.perf_counter()
(result,) = evaluate(f"{root}/reference", [f"{root}/generated"], metrics="psnr,ssim", device="cpu",
                     workers=workers, progress=False)
seconds = time.perf_counter() - start
with open("/proc/self/status") as status:
    peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))
print(peak_kb, seconds, sum(v.frames for v in result.videos))
"""


def link_pairs(source: Path, target: Path, count: int) -> None:
    """``count`` pairs in ``target/{reference,generated}``: hard links to the few videos of ``source``."""
    names = sorted(p.name for p in (source / "reference").iterdir())
    for folder in ("reference", "generated"):
        (target / folder).mkdir(parents=True)
        for index in range(count):
            os.link(source / folder / names[index % len(names)], target / folder / f"video_{index:05d}.mp4")


def peak_rss(root: Path, workers: int) -> tuple[float, float, int]:
    """Peak RSS (MB) of a fresh process evaluating ``root``, its evaluation seconds and frame pairs."""
    package_root = str(Path(magcache_videosys.__file__).resolve().parents[1])  # the code this benchmark imported
    path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    run = subprocess.run(
        [sys.executable, "-c", MEASURE_RSS, str(root), str(workers)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
    )
    if run.returncode:
        raise SystemExit(f"the peak-memory run failed:\n{run.stderr}")
    peak_kb, seconds, frames = run.stdout.split()
    return int(peak_kb) / 1024, float(seconds), int(frames)


def pair_counts(text: str) -> list[int]:
    counts = [int_at_least(1)(part) for part in text.split(",") if part.strip()]
    if not counts:
        raise argparse.ArgumentTypeError("give at least one pair count, e.g. 10,100,1000")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int_at_least(1), default=32)
    parser.add_argument("--frames", type=int_at_least(1), default=51)
    parser.add_argument("--height", type=int_at_least(11), default=240)
    parser.add_argument("--width", type=int_at_least(11), default=426)
    parser.add_argument(
        "--noise", type=float_at_least(0), default=8.0, help="std of the Gaussian noise, in 0..255 units"
    )
    parser.add_argument(
        "--repeats", type=int_at_least(1), default=2, help="timed runs per measurement; the fastest counts"
    )
    parser.add_argument(
        "--baseline-videos", type=int_at_least(1), default=None, help="time the slow baseline on fewer videos"
    )
    parser.add_argument(
        "--workers", type=int_at_least(0), default=min(4, os.cpu_count() or 1), help="decoding threads (ours)"
    )
    parser.add_argument("--batch-size", type=int_at_least(1), default=None, help="frames per metric call (ours)")
    parser.add_argument(
        "--rss-pairs",
        type=pair_counts,
        default=[10, 100, 1000],
        help="pair counts of the peak-memory runs, comma-separated (default: 10,100,1000)",
    )
    parser.add_argument(
        "--rss-frames", type=int_at_least(1), default=17, help="frames per video of the peak-memory runs (default: 17)"
    )
    parser.add_argument("--dir", type=Path, help="where to put the videos (default: a temporary folder)")
    args = parser.parse_args()
    if not Path("/proc/self/status").is_file():
        raise SystemExit("the peak-memory runs read /proc/self/status: run this on Linux")

    with tempfile.TemporaryDirectory() as tmp:
        root = args.dir or Path(tmp)
        say(f"making {args.videos} x 2 videos of {args.frames} frames {args.width}x{args.height}")
        start = time.perf_counter()
        make_videos(root, args.videos, args.frames, args.height, args.width, args.noise, seed=0)
        say(
            f"made them in {time.perf_counter() - start:.1f}s (noise std {args.noise}/255: PSNR of the raw noise "
            f"{20 * math.log10(255 / args.noise) if args.noise else math.inf:.2f} dB before compression)"
        )
        names = sorted(p.name for p in (root / "reference").iterdir())
        n_base = min(args.baseline_videos or len(names), len(names))
        say(f"CPU threads: torch {torch.get_num_threads()}, os {os.cpu_count()}; baseline timed on {n_base} videos")

        say("decoding every video once")
        paths = [root / folder / n for n in names for folder in ("reference", "generated")]
        with ThreadPoolExecutor(max(1, args.workers)) as pool:
            t_decode, decoded = best_time(lambda: list(pool.map(read_video, paths)), 1)
        refs, gens = decoded[0::2], decoded[1::2]
        frames_all = sum(g.shape[0] for g in gens)
        frames_base = sum(g.shape[0] for g in gens[:n_base])
        base_refs = [torch.from_numpy(r).permute(0, 3, 1, 2) for r in refs[:n_base]]
        base_gens = [torch.from_numpy(g).permute(0, 3, 1, 2) for g in gens[:n_base]]

        say(f"metrics only: the reference loop, {runs(args.repeats)} (the slowest stage)")
        t_base_mem, base_values = best_time(lambda: baseline_scores(base_refs, base_gens), args.repeats)
        with fused_kernels(True):
            say("metrics only: the fused kernels, first call (compiles for this frame size, or loads the cache)")
            t_compile, _ = best_time(lambda: ours_in_memory(refs[:1], gens[:1], args.batch_size), 1)
            say(f"metrics only: the fused kernels, {runs(args.repeats)}")
            t_ours_mem, ours_values = best_time(lambda: ours_in_memory(refs, gens, args.batch_size), args.repeats)
        with fused_kernels(False):
            say(f"metrics only: eager torch, {runs(args.repeats)}")
            t_eager, eager_values = best_time(lambda: ours_in_memory(refs, gens, args.batch_size), args.repeats)
        ours_subset = ours_in_memory(refs[:n_base], gens[:n_base], args.batch_size)

        def baseline_end_to_end():
            loaded = [
                (baseline_load(root / "reference" / n), baseline_load(root / "generated" / n)) for n in names[:n_base]
            ]
            return baseline_scores([r for r, _ in loaded], [g for _, g in loaded])

        def ours_end_to_end():
            (result,) = evaluate(
                root / "reference",
                [root / "generated"],
                metrics="psnr,ssim",
                device="cpu",
                batch_size=args.batch_size,
                workers=args.workers,
                progress=False,
            )
            return result.mean("psnr"), result.mean("ssim")

        say("end to end: the reference loop, 1 run")
        t_base_e2e, _ = best_time(baseline_end_to_end, 1)
        say(f"end to end: magcache_videosys, {runs(args.repeats)}")
        t_ours_e2e, ours_e2e_values = best_time(ours_end_to_end, args.repeats)

        memory = []
        source = root / "rss_source"
        say(f"peak memory: making 4 x 2 videos of {args.rss_frames} frames {args.width}x{args.height}")
        make_videos(source, 4, args.rss_frames, args.height, args.width, args.noise, seed=1)
        for count in args.rss_pairs:
            say(f"peak memory: {count} pairs in a fresh process")
            link_pairs(source, root / f"rss_{count}", count)
            memory.append((count, *peak_rss(root / f"rss_{count}", args.workers)))

    base_rate, base_e2e_rate = frames_base / t_base_mem, frames_base / t_base_e2e
    rows = [
        (f"decode only ({max(1, args.workers)} threads, 2 videos per pair)", frames_all / t_decode, None),
        ("metrics only: reference loop (scipy, float64)", base_rate, None),
        ("metrics only: magcache_videosys (fused)", frames_all / t_ours_mem, frames_all / t_ours_mem / base_rate),
        ("metrics only: magcache_videosys (eager)", frames_all / t_eager, frames_all / t_eager / base_rate),
        ("end to end: reference loop", base_e2e_rate, None),
        ("end to end: magcache_videosys", frames_all / t_ours_e2e, frames_all / t_ours_e2e / base_e2e_rate),
    ]
    print(f"\n{'measurement':46s} {'frame pairs/s':>14s} {'vs reference':>13s}")
    for label, rate, ratio in rows:
        print(f"{label:46s} {rate:14.1f} {'' if ratio is None else f'{ratio:12.1f}x':>13s}")
    print(
        f"\nmeans on the {n_base} baseline videos: reference loop PSNR {base_values[0]:.6f} SSIM {base_values[1]:.6f}; "
        f"ours PSNR {ours_subset[0]:.6f} SSIM {ours_subset[1]:.6f} "
        f"(|diff| {abs(base_values[0] - ours_subset[0]):.1e}, {abs(base_values[1] - ours_subset[1]):.1e})"
    )
    print(
        f"ours on all {len(names)} videos: fused PSNR {ours_values[0]:.6f} SSIM {ours_values[1]:.6f}; "
        f"eager PSNR {eager_values[0]:.6f} SSIM {eager_values[1]:.6f}; "
        f"end to end PSNR {ours_e2e_values[0]:.6f} SSIM {ours_e2e_values[1]:.6f}"
    )
    print(f"first fused call (compiling the kernels for this frame size, cached on disk): {t_compile:.1f}s")
    decode_rate, metric_rate, e2e_rate = frames_all / t_decode, frames_all / t_ours_mem, frames_all / t_ours_e2e
    shared = 1 / (1 / decode_rate + 1 / metric_rate)
    print(
        f"end to end, decoding and metrics share the same cores: at most {shared:.1f} frame pairs/s if they never "
        f"wait for each other; reached {e2e_rate / shared:.0%} of that, with decoding {e2e_rate / decode_rate:.0%} "
        f"and metrics {e2e_rate / metric_rate:.0%} of the CPU time"
    )
    print(
        f"\npeak memory of one evaluation (PSNR + SSIM, fused, {args.workers} decoding threads) in a fresh process, "
        f"videos of {args.rss_frames} frames {args.width}x{args.height}:"
    )
    print(f"{'pairs':>7s} {'frame pairs':>12s} {'peak RSS MB':>12s} {'seconds':>8s} {'frame pairs/s':>14s}")
    for count, peak_mb, seconds, frames in memory:
        print(f"{count:7d} {frames:12d} {peak_mb:12.0f} {seconds:8.1f} {frames / seconds:14.1f}")


if __name__ == "__main__":
    main()
