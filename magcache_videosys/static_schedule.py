"""A static skip schedule: a mask of N steps, saying which steps reuse the cached residual.

Any schedule known before a run (a searched one, ``python -m magcache_videosys search``, or one
written by hand) runs through this one policy on the shared runtime (``hooks.py``), on every model
family. It is a JSON file that keeps where it came from (``provenance``); loading checks it
completely, so a bad file is one clear error before any model is loaded.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from .atomic import write_json_atomic
from .hooks import BlockStackCache, get_cache
from .models import find_family

METHOD = "Schedule"
FORMAT = "magcache-videosys-schedule"
MAX_FILE_BYTES = 4 * 2**20  # a mask of 10000 steps with a long provenance is well below this


class ScheduleFileError(ValueError):
    """A schedule that cannot be used; the message says what is wrong and how to fix it."""


@dataclass(frozen=True)
class StaticScheduleConfig:
    """A fixed skip mask: ``skip[t]`` is True when step ``t`` reuses the residual of the last
    computed step. Step 0 is always computed (there is no residual before it).

    A run with another step count than ``len(skip)`` is an error: a mask is searched for one step
    count, and stretching it would execute a schedule nobody measured.

    Args:
        skip: one bool per step.
        name: a label for statistics and file names.
        provenance: how the mask was made (the search, its data, its settings); kept in the file.
    """

    skip: Sequence[bool]
    name: str = "schedule"
    provenance: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        mask = tuple(self.skip) if isinstance(self.skip, (list, tuple)) else None
        if mask is None or not all(isinstance(s, bool) for s in mask):
            raise ValueError(f"skip must be a list of True/False, one per step, got {self.skip!r}.")
        if len(mask) < 2:
            raise ValueError(f"a schedule needs at least 2 steps, got {len(mask)}.")
        if mask[0]:
            raise ValueError(
                "step 0 is skipped, but a skipped step reuses the residual of an earlier computed step and step 0 "
                "has none; compute step 0."
            )
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, got {self.name!r}.")
        if not isinstance(self.provenance, dict):
            raise ValueError(f"provenance must be a dict, got {type(self.provenance).__name__}.")
        object.__setattr__(self, "skip", mask)

    @classmethod
    def from_steps(cls, num_steps: int, skipped_steps: Sequence[int], **kwargs: Any) -> "StaticScheduleConfig":
        """The mask of ``num_steps`` steps that skips ``skipped_steps`` (0-based)."""
        bad = [s for s in skipped_steps if not 0 <= s < num_steps]
        if bad:
            raise ValueError(f"skipped step {bad[0]} is outside 0..{num_steps - 1}.")
        skipped = set(skipped_steps)
        return cls(skip=[t in skipped for t in range(num_steps)], **kwargs)

    @property
    def num_steps(self) -> int:
        return len(self.skip)

    @property
    def skipped_steps(self) -> list[int]:
        return [t for t, s in enumerate(self.skip) if s]

    @property
    def computed_steps(self) -> list[int]:
        return [t for t, s in enumerate(self.skip) if not s]

    @property
    def num_computed(self) -> int:
        """Full passes through the transformer block stack."""
        return len(self.computed_steps)

    @property
    def predicted_speedup(self) -> float:
        """Ideal transformer-loop speedup, ``num_steps / computed passes``."""
        return self.num_steps / self.num_computed

    @property
    def max_skip_steps(self) -> int:
        """The longest run of consecutive skipped steps (K)."""
        longest = run = 0
        for s in self.skip:
            run = run + 1 if s else 0
            longest = max(longest, run)
        return longest

    def check_steps(self, num_steps: int) -> None:
        """An error unless a run of ``num_steps`` steps is what this mask was made for."""
        if num_steps != self.num_steps:
            raise ValueError(
                f"schedule {self.name!r} is a mask of {self.num_steps} steps but the run has {num_steps}; "
                f"run {self.num_steps} steps, or search a schedule for {num_steps}."
            )

    def computed_steps_for(self, num_steps: int) -> list[int]:
        """The steps a run of ``num_steps`` steps computes (an error for another step count)."""
        self.check_steps(num_steps)
        return self.computed_steps

    def mask_text(self) -> str:
        """One character a step: ``C`` computed, ``s`` skipped."""
        return "".join("s" if s else "C" for s in self.skip)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "name": self.name,
            "num_steps": self.num_steps,
            "skip": list(self.skip),
            "computed_steps": self.computed_steps,
            "skipped_steps": self.skipped_steps,
            "passes": self.num_computed,
            "max_skip_steps": self.max_skip_steps,
            "mask": self.mask_text(),
            "provenance": self.provenance,
        }

    @classmethod
    def from_dict(cls, data: Any, origin: str = "schedule") -> "StaticScheduleConfig":
        """A config from :meth:`to_dict`'s form; every inconsistency is a :class:`ScheduleFileError`."""
        fix = "give a file that `magcache-videosys search` wrote, or fix it by hand"
        if not isinstance(data, dict):
            raise ScheduleFileError(f"{origin}: expected a JSON object, got {type(data).__name__}; {fix}.")
        if data.get("format", FORMAT) != FORMAT:
            raise ScheduleFileError(f"{origin}: format is {data['format']!r}, not {FORMAT!r}; {fix}.")
        skip = data.get("skip")
        if not isinstance(skip, list) or not all(isinstance(s, bool) for s in skip):
            raise ScheduleFileError(f"{origin}: 'skip' must be a list of true/false, one per step; {fix}.")
        steps = data.get("num_steps", len(skip))
        if steps != len(skip):
            raise ScheduleFileError(
                f"{origin}: 'skip' has {len(skip)} entries but num_steps is {steps!r}; the mask needs one entry a step."
            )
        try:
            config = cls(skip=skip, name=data.get("name", "schedule"), provenance=data.get("provenance", {}))
        except ValueError as exc:
            raise ScheduleFileError(f"{origin}: {exc}") from None
        for key in ("computed_steps", "skipped_steps"):
            if key in data and data[key] != getattr(config, key):
                raise ScheduleFileError(
                    f"{origin}: {key} {data[key]} disagrees with the mask in 'skip' ({getattr(config, key)}); "
                    f"'skip' is what runs: correct or delete {key}."
                )
        return config

    def save(self, path: str | os.PathLike) -> Path:
        """Write the schedule as JSON (atomically)."""
        return write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "StaticScheduleConfig":
        """Read a schedule file; a bad file is one :class:`ScheduleFileError` naming it."""
        return cls.from_dict(_read_json(Path(path)), origin=str(path))


def load_schedule(path: str | os.PathLike) -> StaticScheduleConfig:
    """Read a schedule file (see :class:`StaticScheduleConfig`)."""
    return StaticScheduleConfig.load(path)


def _read_json(path: Path) -> Any:
    """The JSON in a regular file of schedule size; anything else is a :class:`ScheduleFileError`."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise ScheduleFileError(f"cannot read schedule {path}: {exc.strerror}.") from None
    if not stat.S_ISREG(mode):
        raise ScheduleFileError(f"schedule {path} is not a file; give the JSON file `magcache-videosys search` wrote.")
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ScheduleFileError(f"cannot read schedule {path}: {exc.strerror}.") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ScheduleFileError(f"schedule {path} is over {MAX_FILE_BYTES >> 20} MiB, too large to be a schedule.")
    try:
        return json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise ScheduleFileError(f"schedule {path} is not UTF-8 text, so not a schedule file.") from None
    except json.JSONDecodeError as exc:
        raise ScheduleFileError(f"schedule {path} is not valid JSON ({exc}).") from None


class StaticSchedulePolicy:
    """Executes the mask; nothing is measured and nothing depends on the data."""

    method = METHOD
    calibrating = False

    def __init__(self, config: StaticScheduleConfig) -> None:
        self.config = config

    def begin_run(self, num_steps: int) -> None:
        self.config.check_steps(num_steps)

    def wants_skip(self, step: int, hidden: torch.Tensor, args: tuple, kwargs: dict) -> bool:
        return self.config.skip[step]

    def computed_anyway(self, step: int) -> None:
        pass

    def step_error(self) -> float:
        return 0.0

    def observe_residual(self, step: int, residual: torch.Tensor) -> None:
        return None


def apply_static_schedule(module: nn.Module, config: StaticScheduleConfig, pipeline: Any = None) -> BlockStackCache:
    """Install a static schedule on a transformer of a known family; returns its runtime
    (``pipeline`` as for :func:`~magcache_videosys.apply_magcache`)."""
    if not isinstance(config, StaticScheduleConfig):
        raise TypeError(
            f"expected a StaticScheduleConfig, got {type(config).__name__}; try StaticScheduleConfig.load('FILE')."
        )
    binding = find_family(module).bind(module)
    return BlockStackCache(module, binding, lambda: StaticSchedulePolicy(config), config.num_steps, pipeline)


def remove_static_schedule(module: nn.Module) -> None:
    """Undo :func:`apply_static_schedule`; a module without it is left as it is."""
    cache = get_cache(module)
    if cache is not None and cache.policy.method == METHOD:
        cache.detach()
