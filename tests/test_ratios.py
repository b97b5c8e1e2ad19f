"""Ratio tables: the shipped table, files, resampling and bad input."""

import json
import math
import os
import threading

import pytest
from reference_values import OPENSORA_RATIOS as REFERENCE

from magcache_videosys import RatioTable, RatioTableError, load_ratio_table, shipped_tables


def test_shipped_opensora_table_is_the_reference_table():
    assert "opensora-v1.2" in shipped_tables()
    table = load_ratio_table("opensora-v1.2")
    assert table.ratios == tuple(REFERENCE)
    assert table.num_steps == 30
    assert "Open-Sora 1.2" in table.model and table.source and table.settings["num_frames"] == 51
    assert table.ratio_power == 0.5  # the reference's square-root smoothing travels with the table


def test_resample_to_same_steps_is_identity():
    table = load_ratio_table("opensora-v1.2")
    assert table.resample(30) is table
    assert table.resample(30, "linear") is table


@pytest.mark.parametrize("steps", [15, 60, 2])
@pytest.mark.parametrize("method", ["nearest", "linear"])
def test_resample_keeps_the_last_ratio(steps, method):
    table = load_ratio_table("opensora-v1.2")
    out = table.resample(steps, method)
    assert out.num_steps == steps and len(out.ratios) == steps - 1
    assert out.ratios[-1] == pytest.approx(REFERENCE[-1])
    assert out.settings["resampled_from"] == {"num_steps": 30, "method": method}
    assert out.ratio_power == table.ratio_power == 0.5


def _step_table(num_steps: int) -> RatioTable:
    """A table whose ratio at step s is 10 * s, so a resampled value names the step it was read from."""
    return RatioTable(ratios=tuple(10.0 * s for s in range(1, num_steps)))


# The source step each target step 1 .. T-1 reads: round(j * (N - 1) / (T - 1)), worked out by hand.
# (Resampling the N - 1 ratios end to end instead reads another step at 5 of these for 30 -> 20 and
# at 10 for 30 -> 50 and 50 -> 30.)
# fmt: off
HAND_MAPPED = {
    (30, 20): [2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 23, 24, 26, 27, 29],
    (30, 50): [1, 1, 2, 2, 3, 4, 4, 5, 5, 6, 7, 7, 8, 8, 9, 9, 10, 11, 11, 12, 12, 13, 14, 14, 15,
               15, 16, 17, 17, 18, 18, 19, 20, 20, 21, 21, 22, 22, 23, 24, 24, 25, 25, 26, 27, 27, 28, 28, 29],
    (50, 30): [2, 3, 5, 7, 8, 10, 12, 14, 15, 17, 19, 20, 22, 24, 25, 27, 29, 30, 32, 34, 35, 37, 39, 41, 42,
               44, 46, 47, 49],
}
# fmt: on


@pytest.mark.parametrize("src, dst", sorted(HAND_MAPPED))
def test_nearest_reads_the_reference_source_step(src, dst):
    out = _step_table(src).resample(dst, "nearest")
    assert [int(v / 10) for v in out.ratios] == HAND_MAPPED[(src, dst)]


def test_nearest_rounds_half_to_even_and_reads_the_step0_entry():
    # 6 -> 11 steps: positions j / 2; 0.5 rounds to 0 (the step-0 entry, 1.0), 2.5 to 2, 4.5 to 4.
    table = RatioTable(ratios=(10.0, 20.0, 30.0, 40.0, 50.0), std=(1.0, 2.0, 3.0, 4.0, 5.0))
    out = table.resample(11, "nearest")
    assert out.ratios == (1.0, 10.0, 20.0, 20.0, 20.0, 30.0, 40.0, 40.0, 40.0, 50.0)
    assert out.std == (0.0, 1.0, 2.0, 2.0, 2.0, 3.0, 4.0, 4.0, 4.0, 5.0)
    assert table.resample(4, "nearest").ratios == (20.0, 30.0, 50.0)  # positions 5/3, 10/3, 5


def test_linear_interpolates_at_the_same_positions():
    table = RatioTable(ratios=(10.0, 20.0, 30.0, 40.0, 50.0))
    assert table.resample(11, "linear").ratios == pytest.approx((5.5, 10, 15, 20, 25, 30, 35, 40, 45, 50))
    # where a position is a whole step, linear reads exactly what nearest reads
    for src, dst in [(30, 59), (30, 88), (11, 21)]:
        near, lin = _step_table(src).resample(dst, "nearest"), _step_table(src).resample(dst, "linear")
        scale = (src - 1) / (dst - 1)
        whole = [j - 1 for j in range(1, dst) if (j * scale).is_integer()]
        assert whole and all(lin.ratios[i] == pytest.approx(near.ratios[i]) for i in whole)


def test_save_and_load_roundtrip(tmp_path):
    table = RatioTable(
        ratios=(0.9, 0.8),
        std=(0.01, 0.02),
        cosine_distance=(0.1, 0.2),
        name="mine",
        model="m",
        settings={"resolution": "144p"},
        source="test",
        ratio_power=0.5,
    )
    path = table.save(tmp_path / "sub" / "mine.json")
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
    again = load_ratio_table(path)
    assert again == table
    assert json.loads(path.read_text())["num_steps"] == 3


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ('{"std": [1.0]}', "no 'ratios' list"),
        ('{"ratios": null}', "'ratios' is null; it must be a list of numbers"),
        ('{"ratios": []}', "is empty"),
        ('{"ratios": [0.9, NaN]}', "ratios[1]"),
        ('{"ratios": [0.9, -1.0]}', "positive finite"),
        ('{"ratios": [0.9, 0.0]}', "positive finite"),
        ('{"ratios": "0.9"}', "must be a list"),
        ('{"ratios": [0.9, "x"]}', "ratios[1] is 'x'"),
        ('{"ratios": [0.9, "0.95"]}', "ratios[1] is '0.95' (1 such values); write them as plain JSON numbers"),
        ('{"ratios": [true, 0.9, false]}', "ratios[0] is True (2 such values)"),
        ('{"ratios": [0.9], "std": [true]}', "std[0] is True"),
        ('{"ratios": [0.9], "ratio_power": 0}', "ratio_power must be a finite number > 0"),
        ('{"ratios": [0.9], "ratio_power": "0.5"}', "ratio_power must be a finite number > 0"),
        ('{"ratios": [0.9], "settings": [1]}', "'settings' must be a JSON object"),
        ('{"ratios": [0.9, 0.9], "num_steps": 30}', "num_steps is 30 but there are 2 ratios"),
        ('{"ratios": [0.9, 0.9], "std": [0.1]}', "std has 1 values"),
        ("[0.9, 0.8]", "expected a JSON object"),
    ],
)
def test_bad_table_files_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "t.json"
    path.write_text(content)
    with pytest.raises(RatioTableError) as err:
        load_ratio_table(path)
    assert message in str(err.value) and str(path) in str(err.value)


def _load_in_thread(path) -> str:
    """The error loading ``path`` gives, failing the test instead of hanging on a FIFO or a device."""
    result = []

    def load():
        try:
            load_ratio_table(path)
            result.append("loaded")
        except RatioTableError as exc:
            result.append(str(exc))

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(timeout=20)
    assert result, f"loading {path} did not return"
    return result[0]


def test_a_folder_a_fifo_and_a_device_are_named_not_read(tmp_path):
    message = _load_in_thread(tmp_path)
    assert f"ratio table {tmp_path} is a folder; give the table's JSON file inside it" in message
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    assert f"ratio table {fifo} is a named pipe (FIFO), not a file" in _load_in_thread(fifo)
    assert "ratio table /dev/zero is a device, not a file; give the table's JSON file." == _load_in_thread("/dev/zero")


def test_non_utf8_and_oversized_files_name_the_file(tmp_path):
    latin = tmp_path / "latin1.json"
    latin.write_bytes('{"ratios": [0.9], "name": "caf\u00e9"}'.encode("latin-1"))
    assert f"{latin}: not UTF-8 text (byte 30 is b'\\xe9')" in _load_in_thread(latin)
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as f:
        f.truncate(17 * 2**20)  # sparse: no disk used
    assert f"ratio table {huge} is 17825792 bytes, far more than any table" in _load_in_thread(huge)


def test_a_utf8_file_with_a_byte_order_mark_loads(tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + b'{"ratios": [0.9, 0.8]}')
    assert load_ratio_table(path).ratios == (0.9, 0.8)


@pytest.mark.parametrize("bad", [True, "0.9", None, [0.9]])
def test_ratios_in_memory_must_be_numbers(bad):
    with pytest.raises(RatioTableError, match=r"ratios\[1\] is .*write them as plain JSON numbers"):
        RatioTable(ratios=(0.9, bad))


def test_unknown_table_name_lists_shipped_ones():
    with pytest.raises(RatioTableError, match=r"unknown ratio table 'nope'.*opensora-v1.2"):
        load_ratio_table("nope")


def test_bad_resample_requests():
    table = load_ratio_table("opensora-v1.2")
    with pytest.raises(RatioTableError, match="unknown resampling method 'cubic'"):
        table.resample(20, "cubic")
    with pytest.raises(RatioTableError, match="at least 2 steps"):
        table.resample(1)


def test_infinite_value_rejected_in_memory():
    with pytest.raises(RatioTableError, match="finite"):
        RatioTable(ratios=(0.9, math.inf))


def test_saved_files_are_readable_like_any_new_file(tmp_path):
    import os
    import stat

    mask = os.umask(0o022)
    try:
        path = RatioTable(ratios=(0.9,)).save(tmp_path / "t.json")
    finally:
        os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_saved_tables_load_by_name_from_the_tables_path(tmp_path, monkeypatch):
    RatioTable(ratios=(0.95, 0.9), name="my-model-3").save(tmp_path / "my-model-3.json")
    with pytest.raises(RatioTableError, match="not in \\$MAGCACHE_VIDEOSYS_TABLES"):
        load_ratio_table("my-model-3")
    monkeypatch.setenv("MAGCACHE_VIDEOSYS_TABLES", f"{tmp_path / 'missing'}:{tmp_path}")
    assert load_ratio_table("my-model-3").ratios == (0.95, 0.9)
    assert load_ratio_table("opensora-v1.2").name == "opensora-v1.2"  # shipped names come first
