"""The one atomic writer every output goes through: all or nothing, on errors and on a full disk."""

from __future__ import annotations

import json
import os
import stat

import pytest

from magcache_videosys.atomic import write_atomic, write_csv_atomic, write_json_atomic, write_jsonl_atomic


def test_writes_and_replaces(tmp_path):
    path = tmp_path / "sub" / "a.json"
    write_json_atomic(path, {"x": 1, "name": "café"})
    assert json.loads(path.read_text(encoding="utf-8")) == {"x": 1, "name": "café"}
    write_jsonl_atomic(path, [{"a": 1}, {"b": 2}])
    assert path.read_text().splitlines() == ['{"a": 1}', '{"b": 2}']
    write_csv_atomic(tmp_path / "t.csv", ["k", "v"], [["a", 1]])
    assert (tmp_path / "t.csv").read_text() == "k,v\na,1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub", "t.csv"]


def test_permissions_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_json_atomic(tmp_path / "a.json", [])
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_failed_check_keeps_the_old_file_and_leaves_nothing(tmp_path):
    path = tmp_path / "video.mp4"
    path.write_bytes(b"old")

    def verify(tmp):
        assert tmp.read_bytes() == b"new" and tmp.parent == tmp_path
        raise ValueError("truncated")

    with pytest.raises(ValueError, match="truncated"):
        write_atomic(path, lambda tmp: tmp.write_bytes(b"new"), verify)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["video.mp4"]


def test_full_disk_keeps_the_old_file_and_leaves_nothing(tmpfs):
    folder = tmpfs("64k")
    path = folder / "table.json"
    write_json_atomic(path, {"ok": True})
    with pytest.raises(OSError) as error:
        write_json_atomic(path, {"big": "x" * 200_000})
    assert error.value.errno == 28  # ENOSPC
    assert json.loads(path.read_text()) == {"ok": True}
    assert [p.name for p in folder.iterdir()] == ["table.json"]


def test_an_explicit_temporary_path_is_used_and_never_left(tmp_path):
    """Videos are encoded under .magcache/partial/ (their final names may be near the file-name
    limit, and every .mp4 beside them is read by VBench)."""
    scratch = tmp_path / "partial"
    scratch.mkdir()
    seen = []

    def write(tmp):
        seen.append(tmp)
        tmp.write_bytes(b"video")

    path = write_atomic(tmp_path / ("x" * 251 + ".mp4"), write, temporary=scratch / "short.mp4")
    assert seen == [scratch / "short.mp4"] and path.read_bytes() == b"video"
    assert not list(scratch.iterdir())

    def truncated(tmp):
        raise ValueError("reads back as 3 of 51 frames")

    with pytest.raises(ValueError, match="3 of 51"):
        write_atomic(tmp_path / "b.mp4", write, truncated, temporary=scratch / "t.mp4")
    assert not list(scratch.iterdir()) and not (tmp_path / "b.mp4").exists()
