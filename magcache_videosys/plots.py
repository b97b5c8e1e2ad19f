"""PNG figures: a ratio curve with its spread, and a sweep's heat map of full passes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from .atomic import write_atomic
from .ratios import RatioTable
from .schedule import SchedulePlan


def _figure_module():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("plots need matplotlib: pip install 'magcache_videosys[plot]'") from None
    return plt


def save_png(fig, path: str | os.PathLike) -> Path:
    """Write a matplotlib figure as PNG, atomically."""
    return write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png"))


def plot_ratio_curve(table: RatioTable, path: str | os.PathLike) -> Path:
    """Mean ratio per step with a +-std band, and the cosine distance on a second axis."""
    plt = _figure_module()
    steps = list(range(1, table.num_steps))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, table.ratios, marker="o", ms=3, label="mean ratio ||r_t|| / ||r_t-1||")
    if table.std is not None:
        lo = [r - s for r, s in zip(table.ratios, table.std)]
        hi = [r + s for r, s in zip(table.ratios, table.std)]
        ax.fill_between(steps, lo, hi, alpha=0.25, label="token-wise std")
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("step t")
    ax.set_ylabel("magnitude ratio")
    ax.set_title(f"{table.name}: {table.model}", fontsize=9)
    handles, labels = ax.get_legend_handles_labels()
    if table.cosine_distance is not None:
        ax2 = ax.twinx()
        ax2.plot(steps, table.cosine_distance, color="tab:red", lw=1, label="cosine distance")
        ax2.set_ylabel("cosine distance", color="tab:red")
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, fontsize=8, loc="lower left")
    try:
        return save_png(fig, path)
    finally:
        plt.close(fig)


def plot_sweep(plans: Sequence[SchedulePlan], path: str | os.PathLike) -> Path:
    """One heat map per retention ratio: K down, threshold across, full passes in each cell."""
    plt = _figure_module()
    retentions = sorted({p.retention_ratio for p in plans})
    thresholds = sorted({p.threshold for p in plans})
    ks = sorted({p.max_skip_steps for p in plans})
    size = (1.0 + 0.55 * len(thresholds) * len(retentions), 1.2 + 0.5 * len(ks))
    fig, axes = plt.subplots(1, len(retentions), figsize=size, squeeze=False)
    lookup = {(p.retention_ratio, p.max_skip_steps, p.threshold): p.num_computed for p in plans}
    num_steps = plans[0].num_steps
    for ax, retention in zip(axes[0], retentions):
        grid = [[lookup[(retention, k, t)] for t in thresholds] for k in ks]
        image = ax.imshow(grid, cmap="viridis_r", vmin=1, vmax=num_steps, aspect="auto")
        for i, row in enumerate(grid):
            for j, passes in enumerate(row):
                colour = "white" if passes >= num_steps / 2 else "black"
                ax.text(j, i, str(passes), ha="center", va="center", fontsize=7, color=colour)
        ax.set_xticks(range(len(thresholds)), [f"{t:g}" for t in thresholds], rotation=90, fontsize=7)
        ax.set_yticks(range(len(ks)), [str(k) for k in ks], fontsize=7)
        ax.set_xlabel("threshold")
        ax.set_ylabel("K (max skip steps)")
        ax.set_title(f"retention {retention:g}: full passes of {num_steps}", fontsize=9)
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="full transformer passes")
    try:
        return save_png(fig, path)
    finally:
        plt.close(fig)
