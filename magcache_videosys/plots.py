"""PNG figures: a ratio curve with its spread, and a sweep's heat map of full passes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from .atomic import write_atomic
from .ratios import RatioTable
from .schedule import SchedulePlan, reaching_target


def figure_module():
    """``matplotlib.pyplot`` on the Agg backend, or an ImportError that says how to install it."""
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
    plt = figure_module()
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


def plot_sweep(
    plans: Sequence[SchedulePlan],
    path: str | os.PathLike,
    target_passes: int | None = None,
    title: str | None = None,
) -> Path:
    """Write :func:`sweep_figure` as a PNG."""
    plt = figure_module()
    fig = sweep_figure(plans, target_passes, title)
    try:
        return save_png(fig, path)
    finally:
        plt.close(fig)


def sweep_figure(plans: Sequence[SchedulePlan], target_passes: int | None = None, title: str | None = None):
    """One heat map per retention ratio: K down, threshold across, full passes in each cell.

    One colour per pass count present (so 10 and 12 passes differ at a glance); with a target,
    a line encloses the cells that reach it, and the best of them (the most passes, then the most
    conservative knobs, as ``sweep`` lists them) is starred and named in the title.
    """
    plt = figure_module()
    from matplotlib.collections import LineCollection
    from matplotlib.colors import BoundaryNorm
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    retentions = sorted({p.retention_ratio for p in plans})
    thresholds = sorted({p.threshold for p in plans})
    ks = sorted({p.max_skip_steps for p in plans})
    passes = {_cell(p): p.num_computed for p in plans}
    low, high = min(passes.values()), max(passes.values())
    cmap = plt.get_cmap("viridis_r", high - low + 1)
    norm = BoundaryNorm([v - 0.5 for v in range(low, high + 2)], cmap.N)
    reach = reaching_target(plans, target_passes) if target_passes is not None else []
    reached = {_cell(p) for p in reach}
    best = reach[0] if reach else None

    size = (1.6 + 0.55 * len(thresholds) * len(retentions), 2.0 + 0.5 * len(ks))
    fig, axes = plt.subplots(1, len(retentions), figsize=size, squeeze=False, layout="constrained")
    for ax, retention in zip(axes[0], retentions):
        grid = [[passes[(retention, k, t)] for t in thresholds] for k in ks]
        image = ax.imshow(grid, cmap=cmap, norm=norm, aspect="auto")
        for i, k in enumerate(ks):
            for j, t in enumerate(thresholds):
                red, green, blue, _ = cmap(norm(grid[i][j]))
                dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
                ax.text(j, i, str(grid[i][j]), ha="center", va="center", fontsize=7, color="white" if dark else "black")
                if best is not None and (retention, k, t) == _cell(best):
                    ax.plot(j + 0.3, i - 0.27, marker="*", ms=10, color="red", mec="white", mew=0.6, gid="best")
        inside = [[(retention, k, t) in reached for t in thresholds] for k in ks]
        ax.add_collection(LineCollection(region_edges(inside), colors="red", linewidths=2.5, gid="target"))
        ax.set_xticks(range(len(thresholds)), [f"{t:g}" for t in thresholds], rotation=90, fontsize=7)
        ax.set_yticks(range(len(ks)), [str(k) for k in ks], fontsize=7)
        ax.set_xlabel("threshold")
        ax.set_ylabel("K (max skip steps)")
        ax.set_title(f"retention {retention:g}", fontsize=9)
    bar = fig.colorbar(image, ax=axes[0].tolist(), label="full transformer passes")
    bar.locator = MaxNLocator(integer=True)
    bar.update_ticks()
    num_steps = plans[0].num_steps
    lines = [f"{title}: full passes of {num_steps} steps" if title else f"full passes of {num_steps} steps"]
    if target_passes is not None:
        if best is None:
            lines.append(f"no setting here reaches {target_passes} passes or fewer; raise the thresholds or K")
        else:
            lines.append(
                f"inside the red line: {len(reach)} of {len(plans)} settings reach {target_passes} passes or fewer; "
                f"best (*): threshold {best.threshold:g}, K {best.max_skip_steps}, retention "
                f"{best.retention_ratio:g}, {best.num_computed} passes, {best.predicted_speedup:.2f}x"
            )
            handles = [
                Line2D([], [], color="red", lw=2.5, label=f"encloses <= {target_passes} passes"),
                Line2D([], [], ls="", marker="*", ms=10, color="red", mec="white", label="best"),
            ]
            fig.legend(handles=handles, loc="outside lower center", fontsize=7, ncol=2, frameon=False)
    fig.suptitle("\n".join(lines), fontsize=9)
    return fig


def _cell(plan: SchedulePlan) -> tuple[float, int, float]:
    return plan.retention_ratio, plan.max_skip_steps, plan.threshold


def region_edges(inside: Sequence[Sequence[bool]]) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """The cell sides (in image coordinates, cell ``[i][j]`` centred at ``(j, i)``) that separate
    the cells marked True from the others or from the border: the outline of the region."""
    rows, cols = len(inside), len(inside[0]) if inside else 0

    def marked(i: int, j: int) -> bool:
        return 0 <= i < rows and 0 <= j < cols and inside[i][j]

    edges = []
    for i in range(rows):
        for j in range(cols):
            if not inside[i][j]:
                continue
            top, bottom, left, right = i - 0.5, i + 0.5, j - 0.5, j + 0.5
            if not marked(i - 1, j):
                edges.append(((left, top), (right, top)))
            if not marked(i + 1, j):
                edges.append(((left, bottom), (right, bottom)))
            if not marked(i, j - 1):
                edges.append(((left, top), (left, bottom)))
            if not marked(i, j + 1):
                edges.append(((right, top), (right, bottom)))
    return edges
