"""PSNR + SSIM throughput: the reference tool's per-frame loop against magcache_videosys.metrics.

Makes a folder of reference mp4s (smooth random content) and "generated" copies with Gaussian noise
of a known level, then on the same CPU measures, for each side:

* metrics only: frames already decoded in memory, frame pairs per second; ours with the fused CPU
  kernels (the default; their one-time compile is timed separately) and eagerly (what runs where no
  C++ compiler is found);
* end to end: decode both folders and score them, frame pairs per second.

The baseline is a straightforward re-implementation of the reference tool's structure (imageio
reader, per-video tensors, per frame and channel ``cv2.filter2D`` in float64 for SSIM and a numpy
mean for PSNR); it needs ``opencv-python-headless``. Both sides must agree on the mean values.

    python benchmarks/bench_metrics.py                      # 32 videos, 51 frames, 240p
    python benchmarks/bench_metrics.py --videos 8 --frames 17 --height 144 --width 256   # quick
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as eval/common_metrics/eval.py sets it, before torch loads

import numpy as np
import torch

from magcache_videosys.metrics.evaluate import FrameScorer, default_batch_size, evaluate, score_video, scoring_context
from magcache_videosys.metrics.fused import ENV_SWITCH
from magcache_videosys.metrics.video_io import read_video


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


def baseline_ssim_channel(img1: np.ndarray, img2: np.ndarray) -> float:
    import cv2

    c1, c2 = 0.01**2, 0.03**2
    img1, img2 = img1.astype(np.float64), img2.astype(np.float64)
    kernel = cv2.getGaussianKernel(11, 1.5)
    window = np.outer(kernel, kernel.transpose())
    mu1 = cv2.filter2D(img1, -1, window)[5:-5, 5:-5]
    mu2 = cv2.filter2D(img2, -1, window)[5:-5, 5:-5]
    sigma1 = cv2.filter2D(img1**2, -1, window)[5:-5, 5:-5] - mu1**2
    sigma2 = cv2.filter2D(img2**2, -1, window)[5:-5, 5:-5] - mu2**2
    sigma12 = cv2.filter2D(img1 * img2, -1, window)[5:-5, 5:-5] - mu1 * mu2
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=32)
    parser.add_argument("--frames", type=int, default=51)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--width", type=int, default=426)
    parser.add_argument("--noise", type=float, default=8.0, help="std of the Gaussian noise, in 0..255 units")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per measurement; the fastest counts")
    parser.add_argument("--baseline-videos", type=int, default=None, help="time the slow baseline on fewer videos")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="decoding threads (ours)")
    parser.add_argument("--batch-size", type=int, default=None, help="frames per metric call (ours)")
    parser.add_argument("--dir", type=Path, help="where to put the videos (default: a temporary folder)")
    args = parser.parse_args()
    try:
        import cv2  # noqa: F401
    except ImportError:
        raise SystemExit("the baseline needs OpenCV: pip install opencv-python-headless") from None

    with tempfile.TemporaryDirectory() as tmp:
        root = args.dir or Path(tmp)
        start = time.perf_counter()
        make_videos(root, args.videos, args.frames, args.height, args.width, args.noise, seed=0)
        print(
            f"made {args.videos} x 2 videos of {args.frames} frames {args.width}x{args.height} "
            f"in {time.perf_counter() - start:.1f}s (noise std {args.noise}/255: PSNR of the raw noise "
            f"{20 * math.log10(255 / args.noise):.2f} dB before compression)"
        )
        names = sorted(p.name for p in (root / "reference").iterdir())
        n_base = min(args.baseline_videos or len(names), len(names))
        print(f"CPU threads: torch {torch.get_num_threads()}, os {os.cpu_count()}; baseline timed on {n_base} videos")

        paths = [root / folder / n for n in names for folder in ("reference", "generated")]
        with ThreadPoolExecutor(max(1, args.workers)) as pool:
            t_decode, decoded = best_time(lambda: list(pool.map(read_video, paths)), 1)
        refs, gens = decoded[0::2], decoded[1::2]
        frames_all = sum(g.shape[0] for g in gens)
        frames_base = sum(g.shape[0] for g in gens[:n_base])
        base_refs = [torch.from_numpy(r).permute(0, 3, 1, 2) for r in refs[:n_base]]
        base_gens = [torch.from_numpy(g).permute(0, 3, 1, 2) for g in gens[:n_base]]

        t_base_mem, base_values = best_time(lambda: baseline_scores(base_refs, base_gens), args.repeats)
        with fused_kernels(True):
            t_compile, _ = best_time(lambda: ours_in_memory(refs[:1], gens[:1], args.batch_size), 1)
            t_ours_mem, ours_values = best_time(lambda: ours_in_memory(refs, gens, args.batch_size), args.repeats)
        with fused_kernels(False):
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

        t_base_e2e, _ = best_time(baseline_end_to_end, 1)
        t_ours_e2e, ours_e2e_values = best_time(ours_end_to_end, args.repeats)

    base_rate, base_e2e_rate = frames_base / t_base_mem, frames_base / t_base_e2e
    rows = [
        (f"decode only ({max(1, args.workers)} threads, 2 videos per pair)", frames_all / t_decode, None),
        ("metrics only: reference loop (cv2, float64)", base_rate, None),
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


if __name__ == "__main__":
    main()
