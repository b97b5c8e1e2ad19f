"""The table a run prints at the end: per method the videos done, latency medians, passes, and the
speedup over a base run, with the rules of :mod:`magcache_videosys.records` stated under it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..records import WARMUP_RULE, Speedup, Spread, VideoRecord, mean_passes, pair, speedup, spread, timed


@dataclass(frozen=True)
class SummaryRow:
    method: str
    videos: int
    timed: int  # videos the latencies are over
    transformer: Spread | None  # seconds of the sampling loop
    total: Spread | None  # seconds of the whole generation
    passes: float | None  # mean full transformer passes per video
    num_steps: int | None
    speedup: Speedup | None = None  # over the base run's videos, when one was given


def summarize(records: Sequence[VideoRecord], baseline: Sequence[VideoRecord] | None = None) -> list[SummaryRow]:
    """One row per method in ``records``; with ``baseline`` (a base run's records) the speedup over it."""
    rows = []
    for method in dict.fromkeys(r.method for r in records):
        mine = [r for r in records if r.method == method]
        clocked = timed(mine)
        rows.append(
            SummaryRow(
                method=str(method),
                videos=len(mine),
                timed=len(clocked),
                transformer=spread(r.latency_transformer_s for r in clocked),
                total=spread(r.latency_total_s for r in clocked),
                passes=mean_passes(mine),
                num_steps=mine[0].num_steps,
                speedup=speedup(pair(baseline, mine)) if baseline is not None else None,
            )
        )
    return rows


def format_summary(rows: Sequence[SummaryRow], planned: int, baseline: bool) -> str:
    """A Markdown table (seconds), then how to read it."""
    head = ["method", "videos", "transformer s", "total s", "passes/steps"]
    if baseline:
        head += ["speedup (transformer)", "speedup (total)", "paired"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        passes = "-" if row.passes is None else f"{row.passes:.1f}"
        cells = [
            row.method,
            f"{row.videos}/{planned}",
            row.transformer.text() if row.transformer else "-",
            row.total.text() if row.total else "-",
            f"{passes}/{row.num_steps}",
        ]
        if baseline:
            s = row.speedup
            if s is not None and s.pairs:
                cells += [s.text("transformer"), s.text("total"), str(s.pairs)]
            else:
                cells += ["-", "-", "0 (no timed video in common with the same settings)"]
        lines.append("| " + " | ".join(cells) + " |")
    clocked = sum(r.timed for r in rows)
    if clocked:
        lines.append(f"Latencies: median [interquartile range] over {clocked} timed videos; {WARMUP_RULE}.")
    else:
        lines.append(f"No latency yet: {WARMUP_RULE}, and every video so far was one. Generate more per process.")
    if baseline:
        lines.append(
            "Speedups: median [interquartile range] of per-video ratios, base / this, over paired videos (same "
            "prompt, sample and seed, same settings, neither a warm-up)."
        )
        bounded = [r for r in rows if r.speedup is not None and r.speedup.bound is not None]
        if any(r.speedup.above_bound(r.speedup.transformer) or r.speedup.above_bound(r.speedup.total) for r in bounded):
            lines.append(
                "A speedup ABOVE its bound (base passes / passes of the method: "
                + ", ".join(f"{r.method} {r.speedup.bound:.2f}x" for r in bounded)
                + ") cannot come from skipping passes: the latencies are noisy (a busy machine, a slow first "
                "video). Time both runs on an idle machine with more videos."
            )
    return "\n".join(lines)
