"""The per-video record of a generation run, and the latency and speedup statistics read from records.

``experiments/opensora.py`` writes one JSON line per finished video (into its part file, merged into
``manifest.jsonl``); its resume, its summary and ``eval/common_metrics/batch_eval.py`` read them back.
The record's fields, how a line is written and read (lenient for resume, strict for evaluation) and the
statistics all live here, so the writer and every reader agree.

Latencies of a few videos on a shared machine are noisy (one base video took 43.8 s, the next 6.6 s), so
the statistics are medians with the interquartile range, speedups are medians of per-video ratios over
paired videos, and a speedup above what the pass counts allow is flagged as noise, not reported.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .atomic import fsync_folder

MANIFEST = "manifest.jsonl"
WARMUP_RULE = (
    "a process's first video (model loading, first kernel compiles) is its warm-up and is left out of "
    "latencies and speedups"
)


class RecordError(ValueError):
    """A line of a record file that is not a valid record; the message names the file and line."""


@dataclass(frozen=True, eq=True)
class VideoRecord:
    """One generated video: what it shows, how it was made, and how long it took.

    ``video`` is the file name next to the manifest; every other field may be absent in manifests
    written by other tools. ``extra`` holds method-specific values (e.g. the calibration ratios),
    written as top-level keys.
    """

    video: str
    prompt: str | None = None
    index: int | None = None
    seed: int | None = None
    method: str | None = None
    method_config: dict[str, Any] | None = None
    settings: dict[str, Any] | None = None
    latency_transformer_s: float | None = None  # the sampling loop
    latency_total_s: float | None = None  # text encoding, sampling and decoding
    cpu_transformer_s: float | None = None  # the sampling loop's CPU time (CPU runs: the test bed, --tiny)
    num_steps: int | None = None
    num_computed: int | None = None  # full transformer passes
    computed_steps: list[int] | None = None
    skipped_steps: list[int] | None = None
    warmup: bool = False  # the first video of its process: left out of latency statistics
    name_altered: bool = False  # the file name stands in for a prompt that cannot be one
    num_gpus: int | None = None
    shard: str | None = None
    host: str | None = None
    finished_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.video, str) or not self.video or "/" in self.video:
            raise ValueError(f'"video" must be a file name, got {self.video!r}')
        for name, kind in _TYPES.items():
            value = getattr(self, name)
            if value is not None and not _is(value, kind):
                raise ValueError(f'"{name}" must be {_KIND_TEXT[kind]}, got {value!r}')
        for name in SECONDS:
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value < 0):
                raise ValueError(f'"{name}" must be a finite number of seconds >= 0, got {value!r}')
        clash = set(self.extra) & _FIELD_NAMES
        if clash:
            raise ValueError(f"extra values may not reuse record fields: {sorted(clash)}")

    @property
    def identity(self) -> tuple[str | None, int | None, int | None]:
        """What the video shows: prompt, sample index and seed."""
        return self.prompt, self.index, self.seed

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        return {**{k: v for k, v in data.items() if v is not None}, **self.extra}

    def to_line(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VideoRecord:
        """A record from one decoded JSON object; raises ValueError naming the bad field."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a record is a JSON object, got {type(data).__name__}")
        if "video" not in data:
            raise ValueError(_NO_VIDEO)
        known = {k: v for k, v in data.items() if k in _FIELD_NAMES}
        extra = {k: v for k, v in data.items() if k not in _FIELD_NAMES}
        for name in SECONDS:
            if isinstance(known.get(name), int) and not isinstance(known[name], bool):
                known[name] = float(known[name])
        return cls(**known, extra=extra)


SECONDS = ("latency_transformer_s", "latency_total_s", "cpu_transformer_s")
_NO_VIDEO = 'has no "video" field; each line must describe one video'
_FIELD_NAMES = {f.name for f in fields(VideoRecord)} - {"extra"}
_TYPES = {
    "prompt": str,
    "index": int,
    "seed": int,
    "method": str,
    "method_config": dict,
    "settings": dict,
    "latency_transformer_s": float,
    "latency_total_s": float,
    "cpu_transformer_s": float,
    "num_steps": int,
    "num_computed": int,
    "computed_steps": list,
    "skipped_steps": list,
    "warmup": bool,
    "name_altered": bool,
    "num_gpus": int,
    "shard": str,
    "host": str,
    "finished_at": float,
}
_KIND_TEXT = {
    str: "a string",
    int: "a whole number",
    float: "a number",
    dict: "a JSON object",
    list: "a list of whole numbers",
    bool: "true or false",
}


def _is(value: Any, kind: type) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is list:
        return isinstance(value, list) and all(_is(v, int) for v in value)
    return isinstance(value, kind)


# --- reading and writing ------------------------------------------------------------------------
@dataclass(frozen=True)
class BadLine:
    """A line that holds no valid record (in lenient reading)."""

    path: Path
    line: int
    reason: str
    torn: bool  # the file's last line, cut short: a writer was killed while appending it

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


def read_records(path: str | os.PathLike, strict: bool = True) -> tuple[list[VideoRecord], list[BadLine]]:
    """The records of a JSON-lines file, in file order.

    ``strict`` (evaluation): any line that is not a valid record raises :class:`RecordError` naming
    ``file:line``. Lenient (resume): such lines are returned as :class:`BadLine` and skipped, so a line
    cut short by a killed writer costs only its own video, which is then generated again.
    """
    path = Path(path)
    data = path.read_bytes()
    lines = data.split(b"\n")
    records, bad = [], []
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        torn = number == len(lines)  # the last line has no end-of-line: its writer stopped mid-write
        try:
            record = VideoRecord.from_dict(json.loads(raw.decode("utf-8"), parse_constant=_no_constant))
        except UnicodeDecodeError as exc:
            reason = f"is not UTF-8 text ({exc.reason})"
        except json.JSONDecodeError as exc:
            reason = f"is not JSON ({exc.msg} at column {exc.colno})"
        except (ValueError, TypeError) as exc:
            reason = str(exc) if str(exc) == _NO_VIDEO else f"is not a valid record: {exc}"
        else:
            records.append(record)
            continue
        if torn:
            reason += " (the last line, cut short: a writer was killed mid-write)"
        if strict:
            raise RecordError(f"{path}:{number} {reason}; fix or delete that line")
        bad.append(BadLine(path, number, reason, torn))
    return records, bad


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a record may hold")


def read_manifest(folder: str | os.PathLike) -> dict[str, VideoRecord]:
    """``folder/manifest.jsonl`` read strictly, by video file name (a later line wins); {} if absent."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return {}
    records, _ = read_records(path, strict=True)
    return {r.video: r for r in records}


def append_record(path: str | os.PathLike, record: VideoRecord) -> None:
    """Append ``record`` as one line, flushed to disk before returning.

    The line always starts on a fresh line: when the file ends in a line cut short by a killed
    writer, that fragment stays a bad line of its own instead of swallowing this record.
    """
    path = Path(path)
    data = record.to_line().encode("utf-8")
    created = not path.exists()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        fsync_folder(path.parent)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# --- statistics ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Spread:
    """The median of some values with their interquartile range (``low``..``high``)."""

    median: float
    low: float
    high: float
    n: int

    def text(self, digits: int = 3, unit: str = "") -> str:
        return f"{self.median:.{digits}f}{unit} [{self.low:.{digits}f}-{self.high:.{digits}f}]"


def spread(values: Iterable[float]) -> Spread | None:
    """Median and interquartile range; None without values."""
    ordered = sorted(values)
    if not ordered:
        return None
    low, high = (ordered[0], ordered[0]) if len(ordered) == 1 else _quartiles(ordered)
    return Spread(statistics.median(ordered), low, high, len(ordered))


def _quartiles(ordered: Sequence[float]) -> tuple[float, float]:
    q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    return q1, q3


def timed(records: Iterable[VideoRecord]) -> list[VideoRecord]:
    """The records whose latencies count: no warm-up video, both latencies present."""
    return [
        r for r in records if not r.warmup and r.latency_transformer_s is not None and r.latency_total_s is not None
    ]


def pair(base: Iterable[VideoRecord], method: Iterable[VideoRecord]) -> list[tuple[VideoRecord, VideoRecord]]:
    """(base, method) records of the same video: same file name, prompt, sample index and seed, equal
    settings where both record them, both timed (no warm-up on either side)."""
    by_name = {r.video: r for r in timed(base)}
    pairs = []
    for record in timed(method):
        other = by_name.get(record.video)
        if other is None or other.identity != record.identity:
            continue
        if other.settings is not None and record.settings is not None and other.settings != record.settings:
            continue
        pairs.append((other, record))
    return pairs


def mean_passes(records: Iterable[VideoRecord]) -> float | None:
    """Mean full transformer passes per video; None when a record does not say."""
    passes = [r.num_computed for r in records]
    if not passes or any(p is None for p in passes):
        return None
    return sum(passes) / len(passes)


@dataclass(frozen=True)
class Speedup:
    """Per-video speedups (base latency / method latency) over paired videos."""

    pairs: int
    transformer: Spread | None
    total: Spread | None
    bound: float | None  # base passes / method passes when the method skips passes: no honest speedup exceeds it

    def above_bound(self, value: Spread | None) -> bool:
        return value is not None and self.bound is not None and value.median > self.bound

    def text(self, which: str) -> str:
        """``2.47x [2.41-2.52]``, or the value flagged when it exceeds what the pass counts allow."""
        value = self.transformer if which == "transformer" else self.total
        if value is None:
            return "-"
        shown = value.text(2, "x")
        if self.above_bound(value):
            return f"{shown} ABOVE the {self.bound:.2f}x bound: timing noise, not a result"
        return shown


def speedup(pairs: Sequence[tuple[VideoRecord, VideoRecord]]) -> Speedup:
    """The median per-video speedup of the transformer loop and of the whole generation, with the
    pass-count bound (base passes / method passes; only for methods that skip passes: PAB runs every
    pass and gains inside it)."""
    transformer = spread(b.latency_transformer_s / m.latency_transformer_s for b, m in pairs if m.latency_transformer_s)
    total = spread(b.latency_total_s / m.latency_total_s for b, m in pairs if m.latency_total_s)
    base_passes, method_passes = mean_passes(b for b, _ in pairs), mean_passes(m for _, m in pairs)
    bound = None
    if base_passes and method_passes and method_passes < base_passes:
        bound = base_passes / method_passes
    return Speedup(len(pairs), transformer, total, bound)
