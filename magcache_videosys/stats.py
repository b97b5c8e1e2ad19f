"""Statistics of one sampling run, as :func:`magcache_videosys.get_stats` returns them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch


@dataclass
class RunStats:
    """What a caching method did in one sampling run.

    ``computed_steps`` and ``skipped_steps`` are 0-based step indices. ``acc_err`` holds, per step,
    the accumulated error the skip rule compared with the threshold (0 on always-computed steps).
    In calibration runs ``measured`` holds, per step from step 1, what the method measured of the
    residual against the previous step's. Where CFG runs as separate
    calls (branches), the decisions and measurements are the first branch's, and
    ``branch_disagreements`` lists the steps where another branch decided otherwise.
    """

    method: str
    num_steps: int
    computed_steps: list[int] = field(default_factory=list)
    skipped_steps: list[int] = field(default_factory=list)
    acc_err: list[float] = field(default_factory=list)
    calibrating: bool = False
    branch_disagreements: list[int] = field(default_factory=list)
    _measured: list[dict[str, torch.Tensor]] = field(default_factory=list, repr=False)

    @property
    def steps_seen(self) -> int:
        return len(self.computed_steps) + len(self.skipped_steps)

    @property
    def complete(self) -> bool:
        """True once every step of the run went through the transformer."""
        return self.steps_seen == self.num_steps

    @property
    def speedup(self) -> float:
        """Ideal block-stack speedup of this run, ``num_steps / computed passes``."""
        return self.num_steps / max(1, len(self.computed_steps))

    def add_measurement(self, values: Mapping[str, torch.Tensor]) -> None:
        """Keep one computed step's measurements (scalar tensors by name), still on the device."""
        self._measured.append(dict(values))

    @property
    def measured(self) -> dict[str, list[float]]:
        """The per-step measurements of a calibrating policy, by name (MagCache's: ``ratio``,
        ``ratio_std``, ``cosine_distance``); one host transfer for the whole run, never per step."""
        if not self._measured:
            return {}
        names = list(self._measured[0])
        values = torch.stack([torch.stack([m[n] for n in names]) for m in self._measured]).float().cpu()
        return {name: values[:, i].tolist() for i, name in enumerate(names)}

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "method": self.method,
            "num_steps": self.num_steps,
            "computed_steps": list(self.computed_steps),
            "skipped_steps": list(self.skipped_steps),
            "num_computed": len(self.computed_steps),
            "acc_err": list(self.acc_err),
        }
        if self.branch_disagreements:
            data["branch_disagreements"] = list(self.branch_disagreements)
        if self.calibrating:
            data.update(self.measured)
        return data
