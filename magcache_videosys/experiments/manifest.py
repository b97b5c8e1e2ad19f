"""What a run folder holds besides the videos: the part files and ``manifest.jsonl``, the claim that
ties the folder to one run, and the temporaries of video writes.

Processes never write the same file: each appends to ``.magcache/parts/shard<i>-of-<n>.jsonl`` (one
fsynced line per finished video, see :mod:`magcache_videosys.records`). Any process may merge; a merge
rewrites ``manifest.jsonl`` atomically and repeats if a part changed meanwhile, so the last process to
finish leaves a complete manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable

from ..atomic import TEMP_MARK, fsync_folder, write_jsonl_atomic
from ..models import family_named
from ..records import MANIFEST, BadLine, VideoRecord, append_record, read_records

STATE_DIR = ".magcache"  # one hidden entry next to the videos: run.json, parts/ and partial/
CLAIM = "run.json"
SIGNATURE_KEYS = ("method", "method_config", "settings")
# A writer renames its temporary file seconds after last writing it; one untouched this long belongs
# to no live writer, even on another host whose clock differs a little from this one's.
STALE_AFTER_S = 3600.0


class ManifestError(ValueError):
    """An output folder that holds or belongs to another run; the message names both and the fix."""


def state_dir(out_dir: Path) -> Path:
    return out_dir / STATE_DIR


def parts_dir(out_dir: Path) -> Path:
    return state_dir(out_dir) / "parts"


def partial_dir(out_dir: Path) -> Path:
    """Where videos are written before being renamed into place (same file system, atomic rename)."""
    return state_dir(out_dir) / "partial"


def claim_path(out_dir: Path) -> Path:
    return state_dir(out_dir) / CLAIM


# --- records -----------------------------------------------------------------------------------
def record_files(out_dir: Path) -> list[Path]:
    files = [out_dir / MANIFEST] if (out_dir / MANIFEST).is_file() else []
    return files + (sorted(parts_dir(out_dir).glob("*.jsonl")) if parts_dir(out_dir).is_dir() else [])


def load_records(out_dir: Path) -> tuple[dict[str, VideoRecord], list[BadLine]]:
    """Every record of a run folder by video file name (the latest where a video was redone), and
    the lines that hold no record (a writer killed mid-line), read leniently."""
    latest: dict[str, VideoRecord] = {}
    bad: list[BadLine] = []
    for source in record_files(out_dir):
        records, broken = read_records(source, strict=False)
        bad += broken
        for record in records:
            old = latest.get(record.video)
            if old is None or (record.finished_at or 0) >= (old.finished_at or 0):
                latest[record.video] = record
    return latest, bad


def has_records(out_dir: Path) -> bool:
    return bool(record_files(out_dir))


# --- the run's identity --------------------------------------------------------------------------
def _normal(value: Any) -> Any:
    return json.loads(json.dumps(value))


def signature(method: str, method_config: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """What makes two videos of a folder comparable: the method, its config, the generation settings."""
    return _normal({"method": method, "method_config": method_config, "settings": settings})


def differences(old: dict[str, Any], new: dict[str, Any], limit: int = 3) -> str:
    """``method_config.threshold: 0.2 there, 0.25 now`` for the first few keys that differ."""
    found = []
    for key in SIGNATURE_KEYS:
        a, b = old.get(key), new.get(key)
        if _normal(a) == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            found += [
                f"{key}.{k}: {a.get(k)!r} there, {b.get(k)!r} now"
                for k in sorted(set(a) | set(b))
                if _normal(a.get(k)) != b.get(k)
            ]
        else:
            found.append(f"{key}: {a!r} there, {b!r} now")
    return "; ".join(found[:limit])


def describe_run(sig: dict[str, Any]) -> str:
    """A run in one line: the method and the settings that tell runs apart."""
    config = {k: v for k, v in (sig.get("method_config") or {}).items() if k != "table_ratios"}
    s = sig.get("settings") or {}
    knobs = ", ".join(f"{k}={v}" for k, v in config.items() if k in ("threshold", "max_skip_steps", "retention_ratio"))
    try:
        options = family_named(str(s.get("model")), generating=True).generation.options
    except ValueError:  # a folder of an older version, or of a family this version does not know
        options = ()
    sizes = ", ".join(f"{o.flag.lstrip('-')} {s.get(o.name)}" for o in options)
    return (
        f"--method {sig.get('method')}{f' ({knobs})' if knobs else ''}: {s.get('model')} at {sizes}, "
        f"{s.get('num_steps')} steps, cfg {s.get('cfg_scale')}, {s.get('dtype')}, seed {s.get('seed')}"
        f"{', tiny' if s.get('tiny') else ''}"
    )


def _refuse(out_dir: Path, theirs: dict[str, Any], mine: dict[str, Any], where: str) -> ManifestError:
    return ManifestError(
        f"{out_dir} belongs to another run ({where}): that run is {describe_run(theirs)}; this one is "
        f"{describe_run(mine)} ({differences(theirs, mine)}). All processes of one run share a folder, and a "
        f"rerun resumes only the same command; choose another --out, or remove that folder to start over."
    )


def check_signature(records: Iterable[VideoRecord], expected: dict[str, Any], out_dir: Path) -> None:
    """Refuse to resume into a folder that holds videos of another method or other settings."""
    for record in records:
        found = {"method": record.method, "method_config": record.method_config, "settings": record.settings}
        if _normal(found) != expected:
            raise _refuse(out_dir, found, expected, f"first seen on {record.video!r}")


def read_claim(out_dir: Path) -> dict[str, Any] | None:
    """The signature of the run that owns ``out_dir``, or None before any process claimed it."""
    path = claim_path(out_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ManifestError(
            f"{path} cannot be read ({exc}); it says which run owns {out_dir}. Remove it only if no process "
            f"writes into that folder."
        ) from None
    return {k: data.get(k) for k in SIGNATURE_KEYS}


def check_claim(out_dir: Path, sig: dict[str, Any]) -> None:
    theirs = read_claim(out_dir)
    if theirs is not None and theirs != sig:
        raise _refuse(out_dir, theirs, sig, f"claimed in {claim_path(out_dir)}")


def claim(out_dir: Path, sig: dict[str, Any]) -> None:
    """Make ``out_dir`` this run's, atomically: the first process of any run creates the claim with its
    complete content in one step (a hard link, exclusive on local and network file systems); every
    later process compares it with its own run, so processes of one run (shards) are all accepted and
    a process of another run refuses to start."""
    folder = state_dir(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = claim_path(out_dir)
    if not path.exists():
        tmp = folder / f".{CLAIM}.{os.getpid()}.{uuid.uuid4().hex[:8]}{TEMP_MARK}"
        try:
            with open(tmp, "x", encoding="utf-8") as f:
                json.dump({**sig, "claimed_by": f"{socket.gethostname()}:{os.getpid()}", "at": time.time()}, f)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
                fsync_folder(folder)
            except FileExistsError:
                pass  # another process claimed it first: compared below like any later process
        finally:
            tmp.unlink(missing_ok=True)
    check_claim(out_dir, sig)


# --- part files and the merged manifest ----------------------------------------------------------
class PartWriter:
    """This process's own part file."""

    def __init__(self, out_dir: Path, shard_index: int, shard_count: int) -> None:
        folder = parts_dir(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"shard{shard_index}-of-{shard_count}.jsonl"

    def append(self, record: VideoRecord) -> None:
        append_record(self.path, record)


def _parts_state(out_dir: Path) -> dict[str, int]:
    folder = parts_dir(out_dir)
    return {p.name: p.stat().st_size for p in folder.glob("*.jsonl")} if folder.is_dir() else {}


def merge(out_dir: Path, order: Callable[[VideoRecord], Any] | None = None) -> list[VideoRecord]:
    """Rewrite ``manifest.jsonl`` from every part: one record per video file that exists."""
    for _ in range(20):
        before = _parts_state(out_dir)
        records = [r for r in load_records(out_dir)[0].values() if (out_dir / r.video).is_file()]
        records.sort(key=order or (lambda r: (r.prompt or "", r.index or 0, r.video)))
        write_jsonl_atomic(out_dir / MANIFEST, (r.to_dict() for r in records))
        if _parts_state(out_dir) == before:
            return records
    return records


# --- temporaries of killed writers ---------------------------------------------------------------
def temporary_name(final: Path) -> str:
    """A short name for ``final``'s temporary file in ``partial/`` (the final name may be near the
    file-name limit) that says which host and process writes it, for :func:`clean_partials`."""
    digest = hashlib.sha1(final.name.encode("utf-8")).hexdigest()[:12]
    return f"{socket.gethostname()}-{os.getpid()}-{digest}.mp4"


def _writer_is_gone(name: str) -> bool:
    """Whether the process named in a temporary's name is certainly dead: it ran on this host and
    it is this process (which writes nothing yet) or no process of that id exists."""
    writer, sep, _ = name.rpartition("-")  # host-pid-digest.mp4: the digest off, then the pid
    host, sep2, pid = writer.rpartition("-")
    if not (sep and sep2 and pid.isdigit()) or host != socket.gethostname():
        return False
    if int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def clean_partials(out_dir: Path, now: float | None = None) -> list[Path]:
    """Remove the temporaries that killed writers left, and only those that cannot belong to a live
    writer of this run: in ``partial/``, a file whose writer ran on this host and is gone, or any file
    untouched for :data:`STALE_AFTER_S` (writers on other hosts cannot be asked); beside the videos
    and in ``.magcache/``, the atomic writers' hidden ``.NAME.<pid>.<random>.tmp`` files untouched as long."""
    now = time.time() if now is None else now
    removed = []
    candidates = list(partial_dir(out_dir).iterdir()) if partial_dir(out_dir).is_dir() else []
    for folder in (out_dir, state_dir(out_dir)):
        candidates += [p for p in folder.glob(f".*{TEMP_MARK}*") if p.is_file()]
    for path in candidates:
        try:
            stale = now - path.stat().st_mtime > STALE_AFTER_S
        except FileNotFoundError:
            continue  # its writer renamed it meanwhile
        if stale or (path.parent == partial_dir(out_dir) and _writer_is_gone(path.name)):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
