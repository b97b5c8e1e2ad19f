"""The batch table: fidelity means per (reference, generated) folder pair, with latency and speedup
when the folders carry the ``manifest.jsonl`` that ``experiments/opensora.py`` writes, and a plot
of speedup against LPIPS / PSNR per method.

A manifest holds one JSON object per line and per video, with at least ``video`` (file name),
``method``, ``latency_transformer_s`` and ``latency_total_s``. As in the experiment's own summary,
videos flagged ``warmup`` (a process's first video) are left out of latency means when others are
timed, and a speedup pairs only videos generated with equal ``settings``. Folders without a
manifest are fine: their latency columns stay empty.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..atomic import write_csv_atomic, write_text_atomic
from ..plots import save_png
from .errors import MetricsError
from .evaluate import PairResult
from .video_io import VIDEO_SUFFIX, has_videos

MANIFEST = "manifest.jsonl"
LATENCIES = ("latency_total_s", "latency_transformer_s")


def read_manifest(directory: str | Path) -> dict[str, dict[str, Any]]:
    """Entries of ``directory/manifest.jsonl`` by video file name (a later line wins); {} if absent."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        return {}
    entries: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise MetricsError(f"{path}:{number} is not JSON ({exc}); fix or delete that line") from exc
        if not isinstance(entry, dict) or "video" not in entry:
            raise MetricsError(f'{path}:{number} has no "video" field; each line must describe one video')
        entries[Path(str(entry["video"])).name] = entry
    return entries


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


def _timed(entries: dict[str, dict[str, Any]], names: Sequence[str]) -> list[str]:
    """The names with an entry, without warm-up videos unless there is nothing else."""
    listed = [n for n in names if n in entries]
    warm = [n for n in listed if not entries[n].get("warmup")]
    return warm or listed


def _same_settings(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return "settings" not in a or "settings" not in b or a["settings"] == b["settings"]


def _mean_latency(entries: dict[str, dict[str, Any]], names: Sequence[str], key: str) -> float | None:
    values = [entries[n][key] for n in names if isinstance(entries.get(n, {}).get(key), (int, float))]
    return sum(values) / len(values) if values else None


@dataclass
class TableRow:
    reference_dir: Path
    generated_dir: Path
    method: str
    videos: int
    means: dict[str, float]
    latency: dict[str, float | None]  # mean seconds per video, over the videos both manifests time
    speedup: dict[str, float | None]  # reference latency / generated latency, same videos


def build_rows(results: Sequence[PairResult]) -> list[TableRow]:
    """One row per evaluated folder pair, joined with the folders' manifests where present."""
    manifests: dict[Path, dict[str, dict[str, Any]]] = {}

    def manifest(directory: Path) -> dict[str, dict[str, Any]]:
        if directory not in manifests:
            manifests[directory] = read_manifest(directory)
        return manifests[directory]

    rows = []
    for result in results:
        generated, reference = manifest(result.generated_dir), manifest(result.reference_dir)
        names = [v.name for v in result.videos]
        methods = sorted({str(generated[n]["method"]) for n in names if "method" in generated.get(n, {})})
        timed = _timed(generated, names)
        both = [n for n in _timed(reference, timed) if _same_settings(generated[n], reference[n])]
        latency, speedup = {}, {}
        for key in LATENCIES:
            latency[key] = _mean_latency(generated, timed, key)
            gen, ref = _mean_latency(generated, both, key), _mean_latency(reference, both, key)
            speedup[key] = ref / gen if gen and ref else None
        rows.append(
            TableRow(
                reference_dir=result.reference_dir,
                generated_dir=result.generated_dir,
                method="/".join(methods) or result.generated_dir.name,
                videos=len(result.videos),
                means={m: result.mean(m) for m in result.metrics},
                latency=latency,
                speedup=speedup,
            )
        )
    return rows


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
    ]


def _cells(row: TableRow, metrics: Sequence[str]) -> list[str]:
    def number(value: float | None, digits: int, suffix: str = "") -> str:
        return "" if value is None else f"{value:.{digits}f}{suffix}"

    return [
        str(row.reference_dir),
        str(row.generated_dir),
        row.method,
        str(row.videos),
        *(number(row.means.get(m), 2 if m == "psnr" else 4) for m in metrics),
        number(row.latency["latency_total_s"], 2),
        number(row.latency["latency_transformer_s"], 2),
        number(row.speedup["latency_total_s"], 2, "x"),
        number(row.speedup["latency_transformer_s"], 2, "x"),
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
                (r.speedup["latency_total_s"], r.means[metric], r.generated_dir.name)
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
