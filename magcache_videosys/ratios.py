"""Magnitude-ratio tables: the shipped ones, user files, resampling and atomic saving.

A table holds, for a model and a step count ``N``, the ``N - 1`` mean ratios
``||r_{i+1}|| / ||r_i||`` of consecutive block-stack residuals (optionally with their std and the
token-wise cosine distance), the power the skip rule raises them to, and where and how they were
measured.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import stat
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

from .atomic import write_json_atomic

RESAMPLE_METHODS = ("nearest", "linear")
_TABLE_PACKAGE = "magcache_videosys.ratio_tables"
MAX_TABLE_BYTES = 16 * 2**20  # a table of 1000 steps with std and cosine distance is about 60 KB
# The reference keeps N entries for N steps, entry 0 standing in for step 0 (no previous residual).
# Resampling reads that entry too: these are its values for the ratios, the std and the distance.
_STEP0 = {"ratios": 1.0, "std": 0.0, "cosine_distance": 0.0}


class RatioTableError(ValueError):
    """A ratio table that cannot be used; the message says what is wrong and how to fix it."""


@dataclass(frozen=True)
class RatioTable:
    """Per-step magnitude ratios of one model at one step count.

    ``ratio_power`` is the power the skip rule raises the ratios to: it belongs to the table, since
    the thresholds that suit a table were tuned with it. 1 uses the ratios as measured (the
    reference's generation scripts for Wan 2.1, HunyuanVideo, FLUX and Qwen-Image, and diffusers);
    the reference's Open-Sora 1.2 table is used with 0.5.
    """

    ratios: tuple[float, ...]
    name: str = "custom"
    model: str = "unknown"
    std: tuple[float, ...] | None = None
    cosine_distance: tuple[float, ...] | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    ratio_power: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "ratios", _check_values("ratios", self.ratios, self.name, positive=True))
        if not _is_number(self.ratio_power) or not math.isfinite(self.ratio_power) or self.ratio_power <= 0:
            raise RatioTableError(
                f"ratio table {self.name!r}: ratio_power must be a finite number > 0, got {self.ratio_power!r}; "
                f"it is the power the ratios are raised to (1 uses them as measured)."
            )
        object.__setattr__(self, "ratio_power", float(self.ratio_power))
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

    def powered(self, ratio_power: float | None = None) -> tuple[float, ...]:
        """The ratios the skip rule reads: raised to ``ratio_power``, or to the table's own when None."""
        power = self.ratio_power if ratio_power is None else ratio_power
        return self.ratios if power == 1.0 else tuple(r**power for r in self.ratios)

    def resample(self, num_steps: int, method: str = "nearest") -> "RatioTable":
        """This table for a run of ``num_steps`` steps.

        Both methods work where the reference's ``nearest_interp`` does: on the N-entry table whose
        entry 0 stands for step 0, target step ``j`` reading source position ``j * (N - 1) / (T - 1)``.
        ``nearest`` reads the entry at that position rounded half to even (the reference exactly,
        including the step-0 entry 1.0 when upsampling more than about twice); ``linear``
        interpolates the two entries around it. Both keep the last ratio; resampling to the table's
        own step count is the identity.
        """
        if method not in RESAMPLE_METHODS:
            raise RatioTableError(f"unknown resampling method {method!r}; use one of {', '.join(RESAMPLE_METHODS)}.")
        if not isinstance(num_steps, int) or num_steps < 2:
            raise RatioTableError(f"cannot resample to {num_steps!r} steps; a run needs at least 2 steps.")
        if num_steps == self.num_steps:
            return self
        pick = _nearest if method == "nearest" else _linear
        settings = dict(self.settings)
        settings["resampled_from"] = {"num_steps": self.num_steps, "method": method}
        fitted = {
            key: None if getattr(self, key) is None else pick((_STEP0[key], *getattr(self, key)), num_steps)
            for key in _STEP0
        }
        return replace(self, settings=settings, **fitted)

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
        """A table from its JSON form; every error message starts with ``origin`` (the file)."""
        if not isinstance(data, dict):
            raise RatioTableError(f"{origin}: expected a JSON object with a 'ratios' list, got {type(data).__name__}.")
        if "ratios" not in data:
            raise RatioTableError(f"{origin}: no 'ratios' list; a table needs the per-step magnitude ratios.")
        if data["ratios"] is None:
            raise RatioTableError(
                f"{origin}: 'ratios' is null; it must be a list of numbers, one per step after the first."
            )
        steps = data.get("num_steps")
        ratios = data["ratios"]
        if steps is not None and isinstance(ratios, list) and steps != len(ratios) + 1:
            raise RatioTableError(
                f"{origin}: num_steps is {steps} but there are {len(ratios)} ratios; a table for N steps "
                f"holds N - 1 ratios."
            )
        for key, kind in (("name", str), ("model", str), ("source", str), ("settings", dict)):
            if data.get(key) is not None and not isinstance(data[key], kind):
                what = "a JSON object" if kind is dict else "a string"
                raise RatioTableError(f"{origin}: {key!r} must be {what}, got {data[key]!r}.")
        known = {"ratios", "name", "model", "std", "cosine_distance", "settings", "source", "ratio_power"}
        try:
            return cls(**{k: data[k] for k in known if data.get(k) is not None})
        except RatioTableError as exc:
            raise RatioTableError(f"{origin}: {exc}") from None


def _is_number(value: Any) -> bool:
    """A real number; not a bool (JSON's true is no ratio), not a string that looks like one."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_values(key: str, values: Any, name: str, positive: bool) -> tuple[float, ...]:
    if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__iter__"):
        raise RatioTableError(f"ratio table {name!r}: {key} must be a list of numbers, got {type(values).__name__}.")
    values = list(values)
    wrong = [i for i, v in enumerate(values) if not _is_number(v)]
    if wrong:
        i = wrong[0]
        raise RatioTableError(
            f"ratio table {name!r}: {key} must hold numbers only, but {key}[{i}] is {values[i]!r} "
            f"({len(wrong)} such values); write them as plain JSON numbers such as 0.99."
        )
    out = tuple(float(v) for v in values)
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


def _positions(num_entries: int, num_steps: int) -> list[float]:
    """Source positions of target steps 1 .. T - 1 in an N-entry table (entry t read at step t):
    the reference's ``arange(T) * ((N - 1) / (T - 1))`` in float64, step 0 left out."""
    scale = (num_entries - 1) / (num_steps - 1)
    return [j * scale for j in range(1, num_steps)]


def _nearest(entries: Sequence[float], num_steps: int) -> tuple[float, ...]:
    # Python's round() rounds half to even, as numpy's round does in the reference.
    return tuple(entries[round(pos)] for pos in _positions(len(entries), num_steps))


def _linear(entries: Sequence[float], num_steps: int) -> tuple[float, ...]:
    out = []
    for pos in _positions(len(entries), num_steps):
        lo = min(int(pos), len(entries) - 2)
        frac = pos - lo
        out.append(entries[lo] * (1.0 - frac) + entries[lo + 1] * frac)
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
    if not os.path.lexists(path):
        raise RatioTableError(
            f"unknown ratio table {text_name!r}: not a shipped table ({', '.join(shipped_tables())}), not in "
            f"${TABLES_PATH_ENV}, and no such file."
        )
    raw = _read_table_file(path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RatioTableError(
            f"{path}: not UTF-8 text (byte {exc.start} is {raw[exc.start : exc.start + 1]!r}), so not a ratio "
            f"table; give the JSON file that `magcache-videosys calibrate` wrote, or re-save it as UTF-8."
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RatioTableError(f"{path}: not valid JSON ({exc}).") from None
    return RatioTable.from_dict(data, origin=str(path))


def _not_a_file(path: Path, mode: int) -> str | None:
    """Why ``path`` (of ``mode``) cannot be a table file, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return (
            f"ratio table {path} is a folder; give the table's JSON file inside it, or put the folder in "
            f"${TABLES_PATH_ENV} and give the table's name."
        )
    kind = "a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
    return f"ratio table {path} is {kind}, not a file; give the table's JSON file."


def _read_table_file(path: Path) -> bytes:
    """The bytes of a regular file of table size. Opened without blocking and checked before
    reading, so a folder, a FIFO or a device such as /dev/zero is named, never waited on or read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:  # a socket cannot be opened; anything else is permissions or a race
        problem = _not_a_file(path, os.stat(path).st_mode) if os.path.exists(path) else None
        raise RatioTableError(
            problem or f"cannot read ratio table {path}: {exc.strerror}; check the path and its permissions."
        ) from None
    try:
        info = os.fstat(fd)
        problem = _not_a_file(path, info.st_mode)
        if problem:
            raise RatioTableError(problem)
        if info.st_size > MAX_TABLE_BYTES:
            raise RatioTableError(
                f"ratio table {path} is {info.st_size} bytes, far more than any table "
                f"(the limit is {MAX_TABLE_BYTES // 2**20} MiB); give the table's JSON file."
            )
        with open(fd, "rb", closefd=False) as f:
            return f.read(MAX_TABLE_BYTES + 1)
    except OSError as exc:
        raise RatioTableError(f"cannot read ratio table {path}: {exc.strerror}.") from None
    finally:
        os.close(fd)
