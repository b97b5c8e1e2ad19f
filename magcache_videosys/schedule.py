"""The MagCache skip rule, in plain Python.

The rule reads only the ratio table, the step index and three knobs, so the same object decides
inside a sampling run (no tensor work, no host-device synchronisation) and previews a whole
schedule before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


def retention_steps(num_steps: int, retention_ratio: float) -> int:
    """Number of leading steps that are always computed (the reference's ``int(N * ratio)``)."""
    return int(num_steps * retention_ratio)


class MagCacheDecider:
    """Online skip decisions for one sampling run.

    ``ratios[i]`` is the magnitude ratio between step ``i + 1`` and step ``i``, so a run of ``N``
    steps needs ``N - 1`` ratios. Step 0 and the first ``retention_steps`` steps are always computed.
    """

    def __init__(
        self,
        ratios: Sequence[float],
        threshold: float,
        max_skip_steps: int,
        retention_ratio: float,
    ) -> None:
        self.ratios = [float(r) for r in ratios]
        self.num_steps = len(self.ratios) + 1
        self.threshold = float(threshold)
        self.max_skip_steps = int(max_skip_steps)
        self.retain = max(1, retention_steps(self.num_steps, retention_ratio))
        self.reset()

    def reset(self) -> None:
        """Forget the accumulated error (start of a run, or after a computed step)."""
        self.acc_ratio = 1.0
        self.acc_steps = 0
        self.acc_err = 0.0
        self.seen_ratio = 1.0
        self.seen_err = 0.0

    def decide(self, step: int) -> bool:
        """Return True when ``step`` may reuse the cached residual; updates the accumulators.

        ``seen_ratio`` and ``seen_err`` keep the values the rule compared at this step, before a
        compute decision resets them.
        """
        if step < self.retain or step >= self.num_steps:
            self.reset()
            return False
        self.acc_ratio *= self.ratios[step - 1]
        self.acc_steps += 1
        self.acc_err += abs(1.0 - self.acc_ratio)
        self.seen_ratio, self.seen_err = self.acc_ratio, self.acc_err
        if self.acc_err <= self.threshold and self.acc_steps <= self.max_skip_steps:
            return True
        seen = self.seen_ratio, self.seen_err
        self.reset()
        self.seen_ratio, self.seen_err = seen
        return False


@dataclass(frozen=True)
class StepPlan:
    """What the rule does at one step: the ratio it reads and the accumulators it compared."""

    step: int
    skipped: bool
    ratio: float | None
    acc_ratio: float
    acc_err: float


@dataclass(frozen=True)
class SchedulePlan:
    """A whole run's schedule, as the rule will execute it."""

    num_steps: int
    threshold: float
    max_skip_steps: int
    retention_ratio: float
    steps: tuple[StepPlan, ...]

    @property
    def skipped_steps(self) -> list[int]:
        return [s.step for s in self.steps if s.skipped]

    @property
    def computed_steps(self) -> list[int]:
        return [s.step for s in self.steps if not s.skipped]

    @property
    def num_computed(self) -> int:
        """Full passes through the transformer block stack."""
        return len(self.computed_steps)

    @property
    def predicted_speedup(self) -> float:
        """Ideal transformer-loop speedup, ``num_steps / computed passes``."""
        return self.num_steps / self.num_computed

    def to_dict(self) -> dict:
        return {
            "num_steps": self.num_steps,
            "threshold": self.threshold,
            "max_skip_steps": self.max_skip_steps,
            "retention_ratio": self.retention_ratio,
            "computed_steps": self.computed_steps,
            "skipped_steps": self.skipped_steps,
            "num_computed": self.num_computed,
            "predicted_speedup": self.predicted_speedup,
            "steps": [
                {
                    "step": s.step,
                    "action": "skip" if s.skipped else "compute",
                    "ratio": s.ratio,
                    "acc_ratio": s.acc_ratio,
                    "acc_err": s.acc_err,
                }
                for s in self.steps
            ],
        }


def plan_schedule(
    ratios: Sequence[float], threshold: float, max_skip_steps: int, retention_ratio: float
) -> SchedulePlan:
    """Run the skip rule over every step of a run of ``len(ratios) + 1`` steps."""
    decider = MagCacheDecider(ratios, threshold, max_skip_steps, retention_ratio)
    steps = []
    for step in range(decider.num_steps):
        skipped = decider.decide(step)
        ratio = decider.ratios[step - 1] if step > 0 else None
        steps.append(StepPlan(step, skipped, ratio, decider.seen_ratio, decider.seen_err))
    return SchedulePlan(decider.num_steps, float(threshold), int(max_skip_steps), float(retention_ratio), tuple(steps))


def sweep(
    ratios: Sequence[float],
    thresholds: Sequence[float],
    max_skip_steps: Sequence[int],
    retention_ratios: Sequence[float],
) -> list[SchedulePlan]:
    """Every (retention ratio, K, threshold) setting's plan, in that nesting order."""
    return [
        plan_schedule(ratios, threshold, k, retention)
        for retention in retention_ratios
        for k in max_skip_steps
        for threshold in thresholds
    ]


def reaching_target(plans: Sequence[SchedulePlan], target_passes: int) -> list[SchedulePlan]:
    """The plans with at most ``target_passes`` full passes, best first: the most passes (the
    least skipping that reaches the target), then the most conservative knobs (lower threshold,
    lower K, higher retention ratio)."""
    reach = [p for p in plans if p.num_computed <= target_passes]
    return sorted(reach, key=lambda p: (-p.num_computed, p.threshold, p.max_skip_steps, -p.retention_ratio))
