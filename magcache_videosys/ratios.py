"""Magnitude-ratio tables: the shipped ones, user files, resampling and atomic saving.

A table holds, for a model and a step count ``N``, the ``N - 1`` mean ratios
``||r_{i+1}|| / ||r_i||`` of consecutive block-stack residuals (optionally with their std and the
token-wise cosine distance), plus where and how they were measured.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

from .atomic import write_json_atomic

RESAMPLE_METHODS = ("nearest", "linear")
_TABLE_PACKAGE = "magcache_videosys.ratio_tables"


class RatioTableError(ValueError):
    """A ratio table that cannot be used; the message says what is wrong and how to fix it."""


@dataclass(frozen=True)
class RatioTable:
    """Per-step magnitude ratios of one model at one step count."""

    ratios: tuple[float, ...]
    name: str = "custom"
    model: str = "unknown"
    std: tuple[float, ...] | None = None
    cosine_distance: tuple[float, ...] | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "ratios", _check_values("ratios", self.ratios, self.name, positive=True))
        for key in ("std", "cosine_distance"):
            values = getattr(self, key)
            if values is not None:
                values = _check_values(key, values, self.name, positive=False)
                if len(values) != len(self.ratios):
                    raise RatioTableError(
                        f"ratio table {self.name!r}: {key} has {len(values)} values but ratios has "
                        f"{len(self.ratios)}; they must be per step, the same length."
                    )
                object.__setattr__(self, key, values)

    @property
    def num_steps(self) -> int:
        """Sampling steps this table describes (one more than its ratios)."""
        return len(self.ratios) + 1

    def resample(self, num_steps: int, method: str = "nearest") -> "RatioTable":
        """This table for a run of ``num_steps`` steps.

        ``nearest`` is the reference's index mapping, ``linear`` interpolates; both keep the first
        and last ratio, and resampling to the table's own step count is the identity.
        """
        if method not in RESAMPLE_METHODS:
            raise RatioTableError(f"unknown resampling method {method!r}; use one of {', '.join(RESAMPLE_METHODS)}.")
        if not isinstance(num_steps, int) or num_steps < 2:
            raise RatioTableError(f"cannot resample to {num_steps!r} steps; a run needs at least 2 steps.")
        if num_steps == self.num_steps:
            return self
        length = num_steps - 1
        pick = _nearest if method == "nearest" else _linear
        settings = dict(self.settings)
        settings["resampled_from"] = {"num_steps": self.num_steps, "method": method}
        return replace(
            self,
            ratios=pick(self.ratios, length),
            std=pick(self.std, length) if self.std is not None else None,
            cosine_distance=pick(self.cosine_distance, length) if self.cosine_distance is not None else None,
            settings=settings,
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["num_steps"] = self.num_steps
        for key in ("ratios", "std", "cosine_distance"):
            if data[key] is not None:
                data[key] = list(data[key])
        return data

    def save(self, path: str | os.PathLike) -> Path:
        """Write the table as JSON atomically (a temporary file renamed into place)."""
        path = Path(path)
        write_json_atomic(path, self.to_dict())
        return path

    @classmethod
    def from_dict(cls, data: Any, origin: str = "table") -> "RatioTable":
        if not isinstance(data, dict):
            raise RatioTableError(f"{origin}: expected a JSON object with a 'ratios' list, got {type(data).__name__}.")
        if "ratios" not in data:
            raise RatioTableError(f"{origin}: no 'ratios' list; a table needs the per-step magnitude ratios.")
        steps = data.get("num_steps")
        ratios = data["ratios"]
        if steps is not None and isinstance(ratios, list) and steps != len(ratios) + 1:
            raise RatioTableError(
                f"{origin}: num_steps is {steps} but there are {len(ratios)} ratios; a table for N steps "
                f"holds N - 1 ratios."
            )
        known = {"ratios", "name", "model", "std", "cosine_distance", "settings", "source"}
        return cls(**{k: data[k] for k in known if data.get(k) is not None})


def _check_values(key: str, values: Any, name: str, positive: bool) -> tuple[float, ...]:
    if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__iter__"):
        raise RatioTableError(f"ratio table {name!r}: {key} must be a list of numbers, got {type(values).__name__}.")
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError) as exc:
        raise RatioTableError(f"ratio table {name!r}: {key} must hold numbers only ({exc}).") from None
    if key == "ratios" and not out:
        raise RatioTableError(f"ratio table {name!r} is empty; it needs one ratio per step after the first.")
    bad = [i for i, v in enumerate(out) if not math.isfinite(v) or (positive and v <= 0) or v < 0]
    if bad:
        i = bad[0]
        kind = "positive finite" if positive else "finite, non-negative"
        raise RatioTableError(
            f"ratio table {name!r}: {key}[{i}] = {out[i]!r} ({len(bad)} bad values); every value must be "
            f"{kind}. Recalibrate, or fix the file."
        )
    return out


def _nearest(values: Sequence[float], length: int) -> tuple[float, ...]:
    if length == 1:
        return (values[-1],)
    scale = (len(values) - 1) / (length - 1)
    # Round half to even, as numpy's round does in the reference.
    return tuple(values[int(round(i * scale))] for i in range(length))


def _linear(values: Sequence[float], length: int) -> tuple[float, ...]:
    if length == 1:
        return (values[-1],)
    if len(values) == 1:
        return tuple(values[0] for _ in range(length))
    scale = (len(values) - 1) / (length - 1)
    out = []
    for i in range(length):
        pos = i * scale
        lo = min(int(math.floor(pos)), len(values) - 2)
        frac = pos - lo
        out.append(values[lo] * (1.0 - frac) + values[lo + 1] * frac)
    return tuple(out)


def shipped_tables() -> list[str]:
    """Names of the ratio tables that ship with the package."""
    folder = resources.files(_TABLE_PACKAGE)
    return sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))


TABLES_PATH_ENV = "MAGCACHE_VIDEOSYS_TABLES"


def _user_table(name: str) -> Path | None:
    """``<name>.json`` in a folder of ``$MAGCACHE_VIDEOSYS_TABLES`` (os.pathsep-separated), if any."""
    for folder in filter(None, os.environ.get(TABLES_PATH_ENV, "").split(os.pathsep)):
        candidate = Path(folder) / f"{name}.json"
        if candidate.is_file():
            return candidate
    return None


def load_ratio_table(name_or_path: str | os.PathLike) -> RatioTable:
    """Load a table by name (shipped, or ``<name>.json`` in a ``$MAGCACHE_VIDEOSYS_TABLES`` folder)
    or by path."""
    text_name = os.fspath(name_or_path)
    if text_name in shipped_tables():
        raw = resources.files(_TABLE_PACKAGE).joinpath(f"{text_name}.json").read_text(encoding="utf-8")
        return RatioTable.from_dict(json.loads(raw), origin=f"shipped table {text_name!r}")
    path = _user_table(text_name) or Path(text_name)
    if not path.is_file():
        raise RatioTableError(
            f"unknown ratio table {text_name!r}: not a shipped table ({', '.join(shipped_tables())}), not in "
            f"${TABLES_PATH_ENV}, and no such file."
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RatioTableError(f"{path}: not valid JSON ({exc}).") from None
    return RatioTable.from_dict(data, origin=str(path))
