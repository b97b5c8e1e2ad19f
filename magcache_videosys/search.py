"""The skip mask with the least predicted final error for a budget of full passes.

A mask of N steps is a path through its computed steps ``0 = c_0 < c_1 < ... < c_{P-1}`` to the
end ``N``: each hop ``(c_k, c_{k+1})`` is a segment whose skipped steps reuse ``c_k``'s residual,
with its measured error ``E[c_k][c_{k+1}]`` (:mod:`segment_errors`: a mean squared error of the
final video; 0 for a hop of one step). Three models of the error of a whole mask from its segments:

- ``sum``: ``sum E``, the segments' final-output errors add as the squared errors of independent
  perturbations do;
- ``rms``: ``(sum sqrt(E))^2``, they add as amplitudes (perturbations pointing the same way): by the
  triangle inequality the first-order bound on the joint error;
- ``max``: ``max E``, LeMiCa's minimax (ties broken by the sum).

For each, the dynamic program below is exact: it returns a mask whose predicted error is the least
over all masks with exactly ``passes`` computed steps, at most ``K`` consecutive skips and the first
``retain`` steps computed. What it approximates is the joint error: segments interact, and none of
the three is the error of the whole mask (on the test bed the measured error lies between the
``sum`` and the ``rms`` prediction, nearer the second at small budgets).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from .schedule import SchedulePlan, reaching_target, retention_steps, sweep
from .segment_errors import SegmentErrors
from .static_schedule import StaticScheduleConfig

OBJECTIVES = ("sum", "rms", "max")


class SearchError(ValueError):
    """A budget or constraint no mask can meet, or one the recording does not cover."""


def pass_range(num_steps: int, max_skip_steps: int, retain: int) -> tuple[int, int]:
    """The fewest and most full passes a mask can have under the constraints."""
    retain = max(1, retain)
    rest = num_steps - retain  # after the last retained step: at most K skips between computed steps
    return retain + max(0, math.ceil((rest - max_skip_steps) / (max_skip_steps + 1))), num_steps


def mask_segments(skip: Sequence[bool]) -> list[tuple[int, int]]:
    """The hops ``(computed step, next computed step or N)`` of a mask."""
    computed = [t for t, s in enumerate(skip) if not s] + [len(skip)]
    return list(zip(computed, computed[1:]))


def predicted_error(errors: SegmentErrors, skip: Sequence[bool], objective: str = "sum") -> float:
    """The mask's predicted final error under the ``sum``, ``rms`` or ``max`` model (see above)."""
    costs = [errors.error(i, j) for i, j in mask_segments(skip)]
    if objective == "max":
        return max(costs, default=0.0)
    if objective == "rms":
        return sum(math.sqrt(c) for c in costs) ** 2
    return sum(costs)


def _check(errors: SegmentErrors, passes: int, max_skip_steps: int, retain: int, objective: str) -> None:
    if objective not in OBJECTIVES:
        raise SearchError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}.")
    if max_skip_steps > errors.max_skip_steps:
        raise SearchError(
            f"K {max_skip_steps} is more than the recording's {errors.max_skip_steps}; search with K <= "
            f"{errors.max_skip_steps}, or record again with a larger --K."
        )
    if retain - 1 < errors.first_start:
        raise SearchError(
            f"{retain} retained step(s) let step {retain} be skipped, but the recording measured skips from step "
            f"{errors.first_start + 1} on; retain at least {errors.first_start + 1} steps (a larger "
            f"--retention-ratio), or record again with a smaller --retention-ratio."
        )
    low, high = pass_range(errors.num_steps, max_skip_steps, retain)
    if not low <= passes <= high:
        raise SearchError(
            f"{passes} passes is out of reach: with {errors.num_steps} steps, K {max_skip_steps} and {retain} retained "
            f"steps a mask has {low} to {high} passes."
        )


def _best_path(
    n: int, passes: int, edges: dict[int, list[tuple[int, float]]], combine: Any
) -> tuple[float, list[int]] | None:
    """Least-cost path 0 -> n with exactly ``passes`` hops; ``combine(acc, cost)`` is + or max."""
    inf = math.inf
    best = [[inf] * (n + 1) for _ in range(passes + 1)]
    back = [[-1] * (n + 1) for _ in range(passes + 1)]
    best[0][0] = 0.0
    for p in range(passes):
        row, nxt, nback = best[p], best[p + 1], back[p + 1]
        for i in range(n):
            if row[i] == inf:
                continue
            for j, cost in edges[i]:
                value = combine(row[i], cost)
                if value < nxt[j]:
                    nxt[j], nback[j] = value, i
    if best[passes][n] == inf:
        return None
    path, node = [n], n
    for p in range(passes, 0, -1):
        node = back[p][node]
        path.append(node)
    return best[passes][n], path[::-1]


def search_mask(
    errors: SegmentErrors, passes: int, max_skip_steps: int, retain: int, objective: str = "sum"
) -> list[bool]:
    """The skip mask of least predicted error with exactly ``passes`` computed steps, at most
    ``max_skip_steps`` consecutive skips and steps ``0 .. retain - 1`` computed."""
    retain = max(1, retain)
    _check(errors, passes, max_skip_steps, retain, objective)
    n = errors.num_steps
    cost = math.sqrt if objective == "rms" else float  # rms: the least sum of amplitudes
    edges: dict[int, list[tuple[int, float]]] = {}
    for i in range(n):
        longest = max_skip_steps if i >= retain - 1 else 0
        edges[i] = [(j, cost(errors.error(i, j))) for j in range(i + 1, min(n, i + longest + 1) + 1)]
    if objective == "max":
        bound, _ = _best_path(n, passes, edges, max)
        tolerance = bound * 1e-12
        edges = {i: [(j, c) for j, c in out if c <= bound + tolerance] for i, out in edges.items()}
    found = _best_path(n, passes, edges, lambda acc, cost: acc + cost)
    computed = set(found[1][:-1])
    return [t not in computed for t in range(n)]


@dataclass(frozen=True)
class SearchResult:
    """A searched schedule with its prediction, and MagCache's greedy rule at the same budget."""

    schedule: StaticScheduleConfig
    predicted: float
    magcache: SchedulePlan | None
    magcache_predicted: float | None

    def to_dict(self) -> dict[str, Any]:
        mc = self.magcache
        return {
            "schedule": self.schedule.to_dict(),
            "predicted_error": self.predicted,
            "magcache": None
            if mc is None
            else {
                "threshold": mc.threshold,
                "K": mc.max_skip_steps,
                "retention_ratio": mc.retention_ratio,
                "passes": mc.num_computed,
                "skipped_steps": mc.skipped_steps,
                "predicted_error": self.magcache_predicted,
            },
        }


def magcache_at_passes(
    ratios: Sequence[float], passes: int, max_skip_steps: int, retention_ratio: float
) -> SchedulePlan | None:
    """MagCache's rule at the lowest threshold (0 to 2 in steps of 0.0005) that reaches ``passes``
    full passes with this K and retention (or the closest below); None when none reaches it."""
    thresholds = [round(k * 0.0005, 4) for k in range(4001)]
    reach = reaching_target(sweep(ratios, thresholds, [max_skip_steps], [retention_ratio]), passes)
    return reach[0] if reach else None


def search(
    errors: SegmentErrors,
    passes: int,
    max_skip_steps: int,
    retention_ratio: float,
    objective: str = "sum",
    ratios: Sequence[float] | None = None,
    name: str = "searched",
) -> SearchResult:
    """:func:`search_mask` with the provenance it needs, and MagCache at the same budget on
    ``ratios`` (default: the recording's own calibrated table, as measured)."""
    retain = max(1, retention_steps(errors.num_steps, retention_ratio))
    skip = search_mask(errors, passes, max_skip_steps, retain, objective)
    provenance = {
        "method": "exact dynamic program over measured segment errors (magcache_videosys.search)",
        "objective": objective,
        "passes": passes,
        "K": max_skip_steps,
        "retention_ratio": retention_ratio,
        "retained_steps": retain,
        "segment_errors": {k: v for k, v in errors.provenance.items() if k != "samples"},
        "calibration_samples": errors.provenance.get("samples"),
    }
    schedule = StaticScheduleConfig(skip=skip, name=name, provenance=provenance)
    if ratios is None and errors.ratio_table is not None:
        ratios = errors.ratio_table.ratios
    plan = None if ratios is None else magcache_at_passes(ratios, passes, max_skip_steps, retention_ratio)
    mc_error = None
    if plan is not None:
        mc_error = predicted_error(errors, [s.skipped for s in plan.steps], objective)
    return SearchResult(schedule, predicted_error(errors, skip, objective), plan, mc_error)
