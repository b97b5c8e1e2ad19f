"""The batch table: fidelity means per (reference, generated) folder pair, with latency and speedup
when the folders carry the ``manifest.jsonl`` that ``experiments/opensora.py`` writes, and a plot
of speedup against LPIPS / PSNR per method.

A manifest holds one record per line and per video (:mod:`magcache_videosys.records`, read strictly:
a bad line is an error naming its line), with at least ``video`` (file name). Latencies and speedups
follow the experiment's own summary: medians, speedups as medians of per-video ratios over paired
videos (same name, prompt, sample and seed, equal ``settings``), warm-up videos left out, and a
speedup above the pass-count bound flagged as noise. Folders without a manifest are fine: their
latency columns stay empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .. import records
from ..atomic import write_csv_atomic, write_text_atomic
from ..plots import save_png
from ..records import WARMUP_RULE, Speedup, VideoRecord
from .errors import MetricsError
from .evaluate import PairResult
from .video_io import VIDEO_SUFFIX, has_videos

MANIFEST = records.MANIFEST
LATENCIES = ("latency_total_s", "latency_transformer_s")


def read_manifest(directory: str | Path) -> dict[str, VideoRecord]:
    """Records of ``directory/manifest.jsonl`` by video file name (a later line wins); {} if absent."""
    try:
        return records.read_manifest(directory)
    except records.RecordError as exc:
        raise MetricsError(str(exc)) from exc


def batch_pairs(
    reference_dirs: Sequence[str | Path], generated_dirs: Sequence[str | Path]
) -> tuple[list[tuple[Path, list[Path]]], list[str]]:
    """Generated folders to compare with each reference folder, and notes on what was passed over.

    A shell glob such as ``samples/*`` also matches the reference folder, stray files, and folders
    without videos (empty, or a run that has not written any yet): all are passed over, the last two
    with a note.
    """
    notes, folders = [], []
    for generated in map(Path, generated_dirs):
        if not generated.is_dir():
            notes.append(f"skipping {generated}: not a folder")
        elif not has_videos(generated):
            notes.append(f"skipping {generated}: no {VIDEO_SUFFIX} videos in it")
        else:
            folders.append(generated)
    pairs = []
    for reference in map(Path, reference_dirs):
        compared = [g for g in folders if g.resolve() != reference.resolve()]
        if compared:
            pairs.append((reference, compared))
    if not pairs:
        raise MetricsError("no generated folder with videos to compare with the reference folders")
    return pairs, notes


@dataclass
class TableRow:
    reference_dir: Path
    generated_dir: Path
    method: str
    videos: int
    means: dict[str, float]
    latency: dict[str, float | None]  # median seconds per video over the generated folder's timed videos
    speedup: dict[str, float | None]  # median per-video reference / generated latency over paired videos
    speedup_stats: Speedup | None = None  # the same with spreads, pair count and pass-count bound

    def speedup_flagged(self, key: str) -> bool:
        """Whether the speedup exceeds what the pass counts allow (timing noise, not a result)."""
        stats = self.speedup_stats
        return stats is not None and stats.above_bound(stats.total if key == "latency_total_s" else stats.transformer)


def build_rows(results: Sequence[PairResult]) -> list[TableRow]:
    """One row per evaluated folder pair, joined with the folders' manifests where present."""
    manifests: dict[Path, dict[str, VideoRecord]] = {}

    def manifest(directory: Path) -> dict[str, VideoRecord]:
        if directory not in manifests:
            manifests[directory] = read_manifest(directory)
        return manifests[directory]

    rows = []
    for result in results:
        generated, reference = manifest(result.generated_dir), manifest(result.reference_dir)
        names = [v.name for v in result.videos]
        gen = [generated[n] for n in names if n in generated]
        ref = [reference[n] for n in names if n in reference]
        methods = sorted({r.method for r in gen if r.method})
        clocked = records.timed(gen)
        stats = records.speedup(records.pair(ref, gen))
        latency, speedup = {}, {}
        for key, ratio in (("latency_total_s", stats.total), ("latency_transformer_s", stats.transformer)):
            median = records.spread(getattr(r, key) for r in clocked)
            latency[key] = median.median if median else None
            speedup[key] = ratio.median if ratio else None
        rows.append(
            TableRow(
                reference_dir=result.reference_dir,
                generated_dir=result.generated_dir,
                method="/".join(methods) or result.generated_dir.name,
                videos=len(result.videos),
                means={m: result.mean(m) for m in result.metrics},
                latency=latency,
                speedup=speedup,
                speedup_stats=stats if stats.pairs else None,
            )
        )
    return rows


def speedup_notes(rows: Sequence[TableRow]) -> list[str]:
    """How to read the latency and speedup columns, and which speedups are noise; [] without any."""
    if not any(r.speedup_stats for r in rows):
        return []
    notes = [
        f"Latencies are medians; speedups are medians of per-video ratios over paired videos, with the "
        f"interquartile range in the IQR columns; {WARMUP_RULE}."
    ]
    for row in rows:
        if row.speedup_flagged("latency_total_s") or row.speedup_flagged("latency_transformer_s"):
            notes.append(
                f"{row.generated_dir}: a speedup above {row.speedup_stats.bound:.2f}x (reference passes / passes "
                f"of this folder) cannot come from skipping passes; the latencies are noisy: time both folders "
                f"on an idle machine with more videos."
            )
    return notes


def _header(metrics: Sequence[str]) -> list[str]:
    return [
        "reference",
        "generated",
        "method",
        "videos",
        *(m.upper() for m in metrics),
        "latency total s",
        "latency transformer s",
        "speedup total",
        "speedup transformer",
        "speedup total IQR",
        "speedup transformer IQR",
    ]


def _cells(row: TableRow, metrics: Sequence[str]) -> list[str]:
    def number(value: float | None, digits: int, suffix: str = "") -> str:
        return "" if value is None else f"{value:.{digits}f}{suffix}"

    def speedup(key: str) -> str:
        flag = f" (above the {row.speedup_stats.bound:.2f}x pass bound: noise)" if row.speedup_flagged(key) else ""
        return number(row.speedup[key], 2, "x") + flag

    def iqr(which: str) -> str:
        value = getattr(row.speedup_stats, which) if row.speedup_stats else None
        return "" if value is None else f"{value.low:.2f}-{value.high:.2f}x"

    return [
        str(row.reference_dir),
        str(row.generated_dir),
        row.method,
        str(row.videos),
        *(number(row.means.get(m), 2 if m == "psnr" else 4) for m in metrics),
        number(row.latency["latency_total_s"], 2),
        number(row.latency["latency_transformer_s"], 2),
        speedup("latency_total_s"),
        speedup("latency_transformer_s"),
        iqr("total"),
        iqr("transformer"),
    ]


def markdown_table(rows: Sequence[TableRow], metrics: Sequence[str]) -> str:
    header = _header(metrics)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cells(row, metrics)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_table(rows: Sequence[TableRow], metrics: Sequence[str], out: str | Path) -> list[Path]:
    """``OUT.md`` and ``OUT.csv``, written atomically."""
    out = Path(out)
    markdown = write_text_atomic(out.with_name(out.name + ".md"), markdown_table(rows, metrics))
    table = write_csv_atomic(out.with_name(out.name + ".csv"), _header(metrics), (_cells(r, metrics) for r in rows))
    return [markdown, table]


def plot_speedup(rows: Sequence[TableRow], metrics: Sequence[str], path: str | Path) -> Path | None:
    """Speedup (total latency) against LPIPS and PSNR, one line per method; None without speedups."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    timed = [r for r in rows if r.speedup["latency_total_s"] is not None]
    panels = [m for m in ("lpips", "psnr") if m in metrics]
    if not timed or not panels:
        return None
    figure = Figure(figsize=(5.5 * len(panels), 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    for index, metric in enumerate(panels, 1):
        axes = figure.add_subplot(1, len(panels), index)
        for method in sorted({r.method for r in timed}):
            points = sorted(
                (
                    r.speedup["latency_total_s"],
                    r.means[metric],
                    r.generated_dir.name
                    + (" (above the pass bound: noise)" if r.speedup_flagged("latency_total_s") else ""),
                )
                for r in timed
                if r.method == method
            )
            axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=method)
            for x, y, name in points:
                axes.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        axes.set_xlabel("speedup (total latency vs reference)")
        axes.set_ylabel(f"{metric.upper()} ({'lower' if metric == 'lpips' else 'higher'} is better)")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    return save_png(figure, path)
