"""The batched driver: decode in a thread pool, score frame chunks, average like the reference.

Decoding runs in ffmpeg subprocesses fed by ``workers`` threads, a few videos ahead of the
metrics, so a run is bound by whichever is slower. On CPU, PSNR and SSIM run fused kernels that
spread over the cores themselves (``fused.py``); without them, frame chunks are scored by one
thread per core with single-threaded torch ops, since small cache-resident chunks in parallel beat
torch's own intra-op threading for eager elementwise work. A reference video is decoded once however
many generated folders are compared with it.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import time
import warnings
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from ..atomic import write_csv_atomic, write_json_atomic
from .errors import MetricsError, MetricsWarning
from .frame_table import FrameTable
from .fused import fused_enabled
from .lpips import MIN_SIZE as LPIPS_MIN_SIZE
from .lpips import LPIPSAlex, load_lpips
from .psnr import psnr_frames
from .ssim import WINDOW as SSIM_WINDOW
from .ssim import ssim_frames
from .video_io import (
    MISMATCHES,
    DecodedVideo,
    VideoPairing,
    align_reference,
    decode_video,
    find_mismatches,
    pair_videos,
)

METRICS = ("psnr", "ssim", "lpips")
LOWER_IS_BETTER = {"psnr": False, "ssim": False, "lpips": True}
MIN_FRAME_SIZE = {"psnr": 1, "ssim": SSIM_WINDOW, "lpips": LPIPS_MIN_SIZE}
CPU_CHUNK_PIXELS = 1 << 18  # default chunk on CPU: about 2 frames at 240p, 1 at 480p, cache-sized
GPU_BATCH_SIZE = 32


def parse_metrics(spec: str | Sequence[str]) -> tuple[str, ...]:
    """``"psnr,ssim"`` -> ``("psnr", "ssim")``, in the order given, unknown names rejected."""
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    chosen: list[str] = []
    for name in (n.strip().lower() for n in names):
        if name not in METRICS:
            raise MetricsError(f"unknown metric {name!r}; choose from {','.join(METRICS)}")
        if name not in chosen:
            chosen.append(name)
    if not chosen:
        raise MetricsError(f"no metric chosen; choose from {','.join(METRICS)}")
    return tuple(chosen)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_batch_size(device: torch.device, height: int, width: int) -> int:
    """Frames per metric call: a fixed batch on GPU, about ``CPU_CHUNK_PIXELS`` pixels on CPU."""
    return GPU_BATCH_SIZE if device.type == "cuda" else max(1, CPU_CHUNK_PIXELS // (height * width))


class FrameScorer:
    """Scores aligned frame chunks ``(N, H, W, 3)`` with the chosen metrics on one device."""

    def __init__(self, metrics: Sequence[str], device: torch.device | str, lpips_model: LPIPSAlex | None = None):
        self.metrics = parse_metrics(metrics)
        self.device = torch.device(device)
        self._functions: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
            "psnr": psnr_frames,
            "ssim": ssim_frames,
        }
        if "lpips" in self.metrics:
            model = lpips_model if lpips_model is not None else load_lpips(device=self.device)
            self._functions["lpips"] = model.to(self.device)

    def check_size(self, height: int, width: int, name: str) -> None:
        """Frames too small for a metric's window are an input error, named like the others."""
        for metric in self.metrics:
            smallest = MIN_FRAME_SIZE[metric]
            if height < smallest or width < smallest:
                raise MetricsError(
                    f"{name}: frames are {width}x{height}, {metric.upper()} needs at least {smallest}x{smallest}"
                )

    def __call__(self, reference: torch.Tensor, generated: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: self._functions[name](reference, generated).cpu() for name in self.metrics}


@dataclass(frozen=True)
class VideoScore:
    """One video pair: its mean per metric, and where its per-frame values are in the result's table."""

    name: str
    frames: int
    means: dict[str, float]
    table: FrameTable = field(repr=False, compare=False)
    start: int  # first column of its values in the table

    @property
    def values(self) -> dict[str, np.ndarray]:
        """Per-frame values by metric (copies)."""
        return {m: self.table.view(m, self.start, self.frames).copy() for m in self.table.metrics}

    def mean(self, metric: str) -> float:
        return self.means[metric]


@dataclass
class PairResult:
    """Scores of one generated folder against its reference folder."""

    reference_dir: Path
    generated_dir: Path
    metrics: tuple[str, ...]
    missing_in_generated: tuple[str, ...] = ()
    missing_in_reference: tuple[str, ...] = ()
    videos: list[VideoScore] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    mismatches: dict[str, list[str]] = field(default_factory=dict)  # MISMATCHES kind -> "name (how)"
    identical: int = 0  # videos whose frames equal their (aligned) reference's
    table: FrameTable = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.table = FrameTable(self.metrics)

    def add(self, name: str, values: dict[str, np.ndarray]) -> VideoScore:
        """Record one video's per-frame values (``(frames,)`` per metric)."""
        means = {m: float(values[m].mean()) for m in self.metrics}
        start = self.table.append(values)
        video = VideoScore(name, len(values[self.metrics[0]]), means, self.table, start)
        self.videos.append(video)
        return video

    def per_frame_index(self, metric: str) -> np.ndarray:
        """Mean over videos at each frame index (videos shorter than an index do not count there)."""
        longest = max(video.frames for video in self.videos)
        sums, counts = np.zeros(longest), np.zeros(longest)
        for video in self.videos:
            sums[: video.frames] += self.table.view(metric, video.start, video.frames)
            counts[: video.frames] += 1
        return sums / counts

    def mean(self, metric: str) -> float:
        """The reference's number: mean over videos per frame index, then over frame indices."""
        return float(self.per_frame_index(metric).mean())

    def worst(self, metric: str, count: int = 5) -> list[VideoScore]:
        return sorted(self.videos, key=lambda v: v.mean(metric), reverse=LOWER_IS_BETTER[metric])[:count]

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference_dir": str(self.reference_dir),
            "generated_dir": str(self.generated_dir),
            "metrics": list(self.metrics),
            "num_videos": len(self.videos),
            "mean": {m: self.mean(m) for m in self.metrics},
            "per_frame_index_mean": {m: self.per_frame_index(m).tolist() for m in self.metrics},
            "videos": [
                {"name": v.name, "frames": v.frames, **{m: v.mean(m) for m in self.metrics}} for v in self.videos
            ],
            "left_out": {
                "missing_in_generated": list(self.missing_in_generated),
                "missing_in_reference": list(self.missing_in_reference),
            },
            "skipped": [{"name": name, "reason": reason} for name, reason in self.skipped.items()],
            "mismatches": {kind: list(names) for kind, names in self.mismatches.items()},
            "identical_videos": self.identical,
        }

    @property
    def all_identical(self) -> bool:
        """Every scored video equals its reference: the generated folder is (a copy of) the reference."""
        return bool(self.videos) and self.identical == len(self.videos)


def results_paths(out: str | Path, generated_dir: str | Path) -> tuple[Path, Path]:
    """The JSON and CSV files :func:`write_results` makes of ``out`` for a generated folder."""
    if Path(out).is_dir() or str(out).endswith(("/", "\\")):
        out = Path(out) / Path(generated_dir).name
    out = Path(out)
    base = out.with_suffix("") if out.suffix.lower() in (".json", ".csv") else out
    return base.with_name(base.name + ".json"), base.with_name(base.name + ".csv")


def write_results(result: PairResult, out: str | Path, settings: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """``out`` (``.json`` added if absent) gets the full result, the ``.csv`` beside it one row per video.

    An existing folder (or a path ending in a separator) gets ``<generated folder name>.json/.csv``.
    """
    json_path, csv_path = results_paths(out, result.generated_dir)
    data = result.to_dict()
    if settings:
        data["settings"] = settings
    write_json_atomic(json_path, data)
    rows = ([v.name, v.frames, *(f"{v.mean(m):.6f}" for m in result.metrics)] for v in result.videos)
    write_csv_atomic(csv_path, ["video", "frames", *result.metrics], rows)
    return json_path, csv_path


_UNITS = {"psnr": " dB", "ssim": "", "lpips": ""}
_IDENTICAL = "every video is identical to its reference: is this the reference folder, or a copy of it?"


def _some(items: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def format_summary(result: PairResult, worst: int = 5) -> str:
    """Means, what was left out or skipped, and the worst videos by LPIPS and PSNR."""
    frames = sorted({v.frames for v in result.videos})
    lines = [
        f"{result.generated_dir} vs {result.reference_dir}: {len(result.videos)} videos, "
        f"{'/'.join(map(str, frames))} frames",
        "  " + "   ".join(f"{m.upper()} {result.mean(m):.4f}{_UNITS[m]}" for m in result.metrics),
    ]
    if result.missing_in_generated or result.missing_in_reference:
        lines.append(
            f"  left out (--allow-missing): {len(result.missing_in_generated)} only in the reference folder, "
            f"{len(result.missing_in_reference)} only in the generated folder"
        )
    for name, reason in result.skipped.items():
        lines.append(f"  skipped (--skip-bad): {name}: {reason}")
    for kind, found in result.mismatches.items():
        count = f"{len(found)} video{'s' if len(found) > 1 else ''}"
        lines.append(f"  note: {count} with {MISMATCHES[kind]}: {_some(found)}")
    if result.all_identical:
        lines.append(f"  note: {_IDENTICAL}")
    for metric in ("lpips", "psnr"):
        if metric in result.metrics and worst > 0:
            shown = ", ".join(f"{v.name} {v.mean(metric):.4f}" for v in result.worst(metric, worst))
            lines.append(f"  worst by {metric.upper()}: {shown}")
    return "\n".join(lines)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameter numbers (glibc malloc.h)


def keep_freed_memory() -> None:
    """Ask glibc to keep freed blocks for reuse instead of handing them back to the OS.

    Every frame allocates a few buffers of several MB; by default glibc unmaps them on free and the
    next frame page-faults them in again, which triples the CPU time of SSIM. The setting lasts for
    the process (freed memory stays reserved). No-op where the C library is not glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
    libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)


@contextlib.contextmanager
def scoring_context(device: torch.device | str) -> Iterator[ThreadPoolExecutor | None]:
    """Set up exact, fast scoring on ``device``; yields the chunk thread pool to pass to ``score_video``.

    CUDA: no TF32 (it would cost SSIM and LPIPS three decimal digits). CPU: freed memory kept for
    reuse; with the fused kernels (which hold the GIL and use every torch thread) no pool, otherwise
    one scoring thread per torch thread, each running single-threaded torch ops, the thread setting
    restored on exit.
    """
    device = torch.device(device)
    if device.type == "cuda":
        precision = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")
        try:
            with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=False, allow_tf32=False):
                yield None
        finally:
            torch.set_float32_matmul_precision(precision)
        return
    keep_freed_memory()
    threads = torch.get_num_threads()
    if threads == 1 or fused_enabled(device):
        yield None
        return
    torch.set_num_threads(1)
    pool = ThreadPoolExecutor(threads, thread_name_prefix="metrics")
    try:
        yield pool
    finally:
        pool.shutdown()
        torch.set_num_threads(threads)


class _Decoder:
    """Decodes videos ahead of use in worker threads (inline when ``workers`` is 0)."""

    def __init__(self, workers: int):
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="decode") if workers > 0 else None

    def submit(self, path: Path) -> Future | Path:
        return self.pool.submit(decode_video, path) if self.pool else path

    @staticmethod
    def result(job: Future | Path) -> DecodedVideo:
        return job.result() if isinstance(job, Future) else decode_video(job)

    def close(self) -> None:
        if self.pool:
            self.pool.shutdown(wait=True, cancel_futures=True)


def score_video(
    scorer: FrameScorer,
    reference: torch.Tensor,
    generated: torch.Tensor,
    batch_size: int,
    pool: ThreadPoolExecutor | None = None,
) -> dict[str, np.ndarray]:
    """Per-frame values of one aligned video pair, scored ``batch_size`` frames at a time."""
    chunks = [(start, start + batch_size) for start in range(0, generated.shape[0], batch_size)]

    def run(chunk: tuple[int, int]) -> dict[str, torch.Tensor]:
        return scorer(reference[chunk[0] : chunk[1]], generated[chunk[0] : chunk[1]])

    parts = list(pool.map(run, chunks)) if pool else [run(c) for c in chunks]
    return {m: torch.cat([p[m] for p in parts]).numpy() for m in scorer.metrics}


def evaluate(
    reference_dir: str | Path,
    generated_dirs: Sequence[str | Path],
    metrics: str | Sequence[str] = METRICS,
    device: torch.device | str | None = None,
    batch_size: int | None = None,
    workers: int = 4,
    allow_missing: bool = False,
    skip_bad: bool = False,
    lpips_model: LPIPSAlex | None = None,
    progress: bool = True,
) -> list[PairResult]:
    """Score each generated folder against ``reference_dir``; one result per generated folder.

    Problems with single videos (unreadable, truncated, too few frames, too small) raise a
    MetricsError naming the file, or with ``skip_bad`` are recorded in ``PairResult.skipped``.
    Videos that the reference definitions score but that differ from their reference in frame count,
    size or frame rate are recorded in ``PairResult.mismatches``, with a MetricsWarning at the first
    of each kind; so is a folder compared with itself, or one whose videos all equal their references.
    """
    from tqdm.auto import tqdm

    device = torch.device(device or default_device())
    scorer = FrameScorer(metrics, device, lpips_model)
    if batch_size is not None and batch_size < 1:
        raise MetricsError("--batch-size must be at least 1")
    pairings: list[VideoPairing] = [pair_videos(reference_dir, g, allow_missing) for g in generated_dirs]
    results = [
        PairResult(p.reference_dir, p.generated_dir, scorer.metrics, p.missing_in_generated, p.missing_in_reference)
        for p in pairings
    ]
    for pairing in pairings:
        if pairing.generated_dir.resolve() == pairing.reference_dir.resolve():
            _warn(f"{pairing.generated_dir} is the reference folder itself: every video is compared with itself")
    members = [set(p.names) for p in pairings]
    names = sorted(set().union(*members))
    units = deque((name, [i for i, m in enumerate(members) if name in m]) for name in names)

    decoder = _Decoder(workers)
    ahead = max(1, math.ceil(max(workers, 1) / (1 + len(generated_dirs)))) + 1
    pending: deque = deque()
    bar = tqdm(total=len(names), unit="video", disable=not progress, dynamic_ncols=True)
    if fused_enabled(device) and {"psnr", "ssim"} & set(scorer.metrics):
        bar.set_postfix_str("compiling the fused CPU kernels (seconds, once per frame size)")
    frames_done, start, first = 0, time.perf_counter(), True

    def refill() -> None:
        while units and len(pending) < ahead:
            name, targets = units.popleft()
            ref_job = decoder.submit(pairings[targets[0]].reference(name))
            gen_jobs = [(i, decoder.submit(pairings[i].generated(name))) for i in targets]
            pending.append((name, ref_job, gen_jobs))

    def fail(name: str, targets: Sequence[int], error: MetricsError) -> None:
        if not skip_bad:
            raise MetricsError(f"{error}; or pass --skip-bad to evaluate the other videos and list this one") from error
        for i in targets:
            results[i].skipped[name] = str(error)

    def note(result: PairResult, name: str, reference: DecodedVideo, generated: DecodedVideo) -> None:
        for kind, how in find_mismatches(reference, generated).items():
            found = result.mismatches.setdefault(kind, [])
            found.append(f"{name} ({how})")
            if len(found) == 1:
                _warn(f"{result.generated_dir}: {name} ({how}) has {MISMATCHES[kind]}; the summary lists all such", 4)

    try:
        with scoring_context(device) as compute_pool:
            refill()
            while pending:
                name, ref_job, gen_jobs = pending.popleft()
                refill()
                try:
                    ref_video = decoder.result(ref_job)
                    reference = torch.from_numpy(ref_video.frames).to(device)
                except MetricsError as error:
                    fail(name, [i for i, _ in gen_jobs], error)
                    bar.update()
                    continue
                for i, job in gen_jobs:
                    try:
                        gen_video = decoder.result(job)
                        generated = torch.from_numpy(gen_video.frames).to(device)
                        scorer.check_size(generated.shape[1], generated.shape[2], name)
                        aligned = align_reference(reference, tuple(generated.shape), name)
                    except MetricsError as error:
                        fail(name, [i], error)
                        continue
                    note(results[i], name, ref_video, gen_video)
                    results[i].identical += torch.equal(aligned, generated)
                    chunk = batch_size or default_batch_size(device, generated.shape[1], generated.shape[2])
                    values = score_video(scorer, aligned, generated, chunk, compute_pool)
                    results[i].add(name, values)
                    frames_done += generated.shape[0]
                if first:  # the rate leaves out the first video, which pays for compiling and a cold start
                    frames_done, start, first = 0, time.perf_counter(), False
                    bar.set_postfix_str("", refresh=False)
                elif frames_done:
                    rate = frames_done / (time.perf_counter() - start)
                    bar.set_postfix_str(f"{rate:.0f} frame pairs/s", refresh=False)
                bar.update()
    finally:
        bar.close()
        decoder.close()
    for result in results:
        if not result.videos:
            raise MetricsError(f"no video of {result.generated_dir} could be evaluated: {result.skipped}")
        if result.all_identical and result.generated_dir.resolve() != result.reference_dir.resolve():
            _warn(f"{result.generated_dir}: {_IDENTICAL}")
    return results


def _warn(message: str, stacklevel: int = 3) -> None:
    """A MetricsWarning attributed to the caller of :func:`evaluate`."""
    warnings.warn(message, MetricsWarning, stacklevel=stacklevel)
