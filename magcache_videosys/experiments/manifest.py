"""The run's record: one JSON line per video, written by each process into its own part file and
merged into ``manifest.jsonl`` next to the videos, plus the summary table built from it.

Processes never write the same file: each appends to ``.magcache/parts/shard<i>-of-<n>.jsonl``
(one flushed, fsynced line per finished video). Any process may merge; a merge rewrites
``manifest.jsonl`` atomically and repeats if a part changed meanwhile, so the last process to
finish leaves a complete manifest.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from ..atomic import write_jsonl_atomic

logger = logging.getLogger("magcache_videosys.experiments")

MANIFEST = "manifest.jsonl"
STATE_DIR = ".magcache"  # one hidden entry next to the videos: parts/ and partial/
SIGNATURE_KEYS = ("method", "method_config", "settings")


class ManifestError(ValueError):
    """An output folder whose existing records do not belong to this run."""


def parts_dir(out_dir: Path) -> Path:
    return out_dir / STATE_DIR / "parts"


def partial_dir(out_dir: Path) -> Path:
    """Where videos are written before being renamed into place (same file system, atomic rename)."""
    return out_dir / STATE_DIR / "partial"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of one JSON-lines file; a line cut short by an interruption is skipped."""
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                logger.warning("%s line %d is incomplete (an interrupted write); ignored.", path, number)
                continue
            if isinstance(record, dict) and "video" in record:
                records.append(record)
    return records


def load_records(out_dir: Path) -> dict[str, dict[str, Any]]:
    """Every record of a run folder by video file name, the latest one where a video was redone."""
    sources = []
    if (out_dir / MANIFEST).is_file():
        sources.append(out_dir / MANIFEST)
    if parts_dir(out_dir).is_dir():
        sources.extend(sorted(parts_dir(out_dir).glob("*.jsonl")))
    latest: dict[str, dict[str, Any]] = {}
    for source in sources:
        for record in read_jsonl(source):
            old = latest.get(record["video"])
            if old is None or record.get("finished_at", 0) >= old.get("finished_at", 0):
                latest[record["video"]] = record
    return latest


def _normal(value: Any) -> Any:
    return json.loads(json.dumps(value))


def signature(method: str, method_config: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """What makes two videos of a folder comparable: the method, its config, the generation settings."""
    return _normal({"method": method, "method_config": method_config, "settings": settings})


def check_signature(records: Iterable[dict[str, Any]], expected: dict[str, Any], out_dir: Path) -> None:
    """Refuse to resume into a folder that holds videos of another method or other settings."""
    for record in records:
        for key in SIGNATURE_KEYS:
            if _normal(record.get(key)) != expected[key]:
                old, new = record.get(key), expected[key]
                if isinstance(old, dict) and isinstance(new, dict):
                    diff = sorted(k for k in set(old) | set(new) if _normal(old.get(k)) != new.get(k))
                    what = ", ".join(f"{key}.{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in diff[:3])
                else:
                    what = f"{key}: {old!r} there, {new!r} now"
                raise ManifestError(
                    f"{out_dir} already holds videos of another run ({what}; first seen on {record['video']!r}). "
                    f"A rerun resumes only the same command; choose another --out, or remove that folder to start over."
                )


class PartWriter:
    """This process's own part file."""

    def __init__(self, out_dir: Path, shard_index: int, shard_count: int) -> None:
        folder = parts_dir(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"shard{shard_index}-of-{shard_count}.jsonl"

    def append(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _parts_state(out_dir: Path) -> dict[str, int]:
    folder = parts_dir(out_dir)
    return {p.name: p.stat().st_size for p in folder.glob("*.jsonl")} if folder.is_dir() else {}


def merge(out_dir: Path, order: Callable[[dict[str, Any]], Any] | None = None) -> list[dict[str, Any]]:
    """Rewrite ``manifest.jsonl`` from every part: one record per video file that exists."""
    for _ in range(20):
        before = _parts_state(out_dir)
        records = [r for r in load_records(out_dir).values() if (out_dir / r["video"]).is_file()]
        records.sort(key=order or (lambda r: (r["prompt"], r["index"])))
        write_jsonl_atomic(out_dir / MANIFEST, records)
        if _parts_state(out_dir) == before:
            return records
    return records


# --- summary ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SummaryRow:
    method: str
    videos: int
    timed: int  # videos the latency means are over (a process's first video is warm-up)
    latency_transformer_s: float
    latency_total_s: float
    passes: float  # mean full transformer passes per video
    num_steps: int
    speedup_transformer: float | None = None
    speedup_total: float | None = None
    paired: int = 0  # videos the speedup is measured on (present in both runs)


def _timed(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    warm = [r for r in records if not r.get("warmup")]
    return warm or records


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def summarize(records: list[dict[str, Any]], baseline: list[dict[str, Any]] | None = None) -> list[SummaryRow]:
    """Per method: videos, mean latencies over the timed videos, mean passes, and the speedup over
    ``baseline`` (the base run's records) on the videos both runs generated with the same settings."""
    base = {
        r["video"]: r for r in _timed([r for r in baseline or [] if r.get("method") == "base"] or list(baseline or []))
    }
    rows = []
    for method in dict.fromkeys(r["method"] for r in records):
        mine = [r for r in records if r["method"] == method]
        timed = _timed(mine)
        row = dict(
            method=method,
            videos=len(mine),
            timed=len(timed),
            latency_transformer_s=_mean([r["latency_transformer_s"] for r in timed]),
            latency_total_s=_mean([r["latency_total_s"] for r in timed]),
            passes=_mean([float(r["num_computed"]) for r in mine]),
            num_steps=int(mine[0]["num_steps"]),
        )
        # Same video name and the same generation settings: the same prompt, seed and size.
        pairs = [
            (base[r["video"]], r)
            for r in timed
            if r["video"] in base and base[r["video"]].get("settings") == r.get("settings")
        ]
        if pairs:
            row.update(
                speedup_transformer=_mean([b["latency_transformer_s"] for b, _ in pairs])
                / _mean([m["latency_transformer_s"] for _, m in pairs]),
                speedup_total=_mean([b["latency_total_s"] for b, _ in pairs])
                / _mean([m["latency_total_s"] for _, m in pairs]),
                paired=len(pairs),
            )
        rows.append(SummaryRow(**row))
    return rows


def format_summary(rows: list[SummaryRow], planned: int, baseline: bool) -> str:
    """A Markdown table; latencies in seconds."""
    head = ["method", "videos", "transformer s", "total s", "passes/steps"]
    if baseline:
        head += ["speedup (transformer)", "speedup (total)", "paired"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [
            row.method,
            f"{row.videos}/{planned}",
            f"{row.latency_transformer_s:.3f}",
            f"{row.latency_total_s:.3f}",
            f"{row.passes:.1f}/{row.num_steps}",
        ]
        if baseline:
            if row.paired:
                cells += [f"{row.speedup_transformer:.2f}x", f"{row.speedup_total:.2f}x", str(row.paired)]
            else:
                cells += ["-", "-", "0 (no video in common with the same settings)"]
        lines.append("| " + " | ".join(cells) + " |")
    timed = sum(r.timed for r in rows)
    videos = sum(r.videos for r in rows)
    if timed < videos:
        lines.append(f"Latencies are means over {timed} videos: each process's first video (warm-up) is left out.")
    return "\n".join(lines)
