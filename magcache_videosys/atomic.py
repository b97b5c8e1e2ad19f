"""Writing files so that a reader never sees half of one: a temporary file beside the target,
flushed to disk, checked, then renamed into place (and the folder entry flushed too).

Every file this package writes goes through :func:`write_atomic`; the text, JSON, JSON-lines and
CSV helpers are thin layers over it. A failure at any point (a full disk, an exception, a check
that fails) leaves the target as it was and no temporary file behind; ``kill -9`` can leave only a
hidden ``.NAME.<pid>.<random>.tmp`` file, never a half-written target.
"""

from __future__ import annotations

import csv
import io
import json
import os
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

TEMP_MARK = ".tmp"


def temporary_sibling(path: str | os.PathLike) -> Path:
    """A fresh hidden name in ``path``'s folder (same file system, so the final rename is atomic)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{TEMP_MARK}{path.suffix}")


def write_atomic(
    path: str | os.PathLike,
    write: Callable[[Path], None],
    verify: Callable[[Path], None] | None = None,
    temporary: str | os.PathLike | None = None,
) -> Path:
    """Call ``write(tmp)`` to produce the file at a temporary name, then ``verify(tmp)`` (raise if
    it is not what it should be), then rename it over ``path``. The file is fsynced before the
    rename and the folder after it, so a record written afterwards never points at lost data.

    ``temporary`` names the temporary file where a hidden sibling does not suit (a name near the
    file-name limit, or a folder whose every file other tools read); it must be on ``path``'s file
    system and is created, like the sibling, only by ``write``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path) if temporary is None else Path(temporary)
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if verify is not None:
            verify(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # readable by the others who share a results folder
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    def write(tmp: Path) -> None:
        with open(tmp, "x", encoding="utf-8", newline="") as f:
            f.write(text)

    return write_atomic(path, write)


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    return write_text_atomic(path, json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def write_jsonl_atomic(path: str | os.PathLike, records: Iterable[Any]) -> Path:
    return write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def write_csv_atomic(path: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return write_text_atomic(path, buffer.getvalue())


def fsync_folder(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename into it) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
