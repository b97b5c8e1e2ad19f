"""Ratio tables: the shipped table, files, resampling and bad input."""

import json
import math

import pytest
from reference_values import OPENSORA_RATIOS as REFERENCE

from magcache_videosys import RatioTable, RatioTableError, load_ratio_table, shipped_tables


def test_shipped_opensora_table_is_the_reference_table():
    assert "opensora-v1.2" in shipped_tables()
    table = load_ratio_table("opensora-v1.2")
    assert table.ratios == tuple(REFERENCE)
    assert table.num_steps == 30
    assert "Open-Sora 1.2" in table.model and table.source and table.settings["num_frames"] == 51


def test_resample_to_same_steps_is_identity():
    table = load_ratio_table("opensora-v1.2")
    assert table.resample(30) is table
    assert table.resample(30, "linear") is table


@pytest.mark.parametrize("steps", [15, 60, 2])
@pytest.mark.parametrize("method", ["nearest", "linear"])
def test_resample_keeps_endpoints(steps, method):
    table = load_ratio_table("opensora-v1.2")
    out = table.resample(steps, method)
    assert out.num_steps == steps
    if steps > 2:
        assert out.ratios[0] == pytest.approx(REFERENCE[0])
    assert out.ratios[-1] == pytest.approx(REFERENCE[-1])
    assert out.settings["resampled_from"] == {"num_steps": 30, "method": method}


def test_nearest_follows_the_reference_index_mapping():
    # reference: index = numpy.round(arange(L) * (len - 1) / (L - 1)), halves to even
    table = RatioTable(ratios=(1.0, 2.0, 3.0, 4.0, 5.0))
    assert table.resample(4, "nearest").ratios == (1.0, 3.0, 5.0)
    assert table.resample(9, "nearest").ratios == (1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 5.0)
    assert table.resample(10, "nearest").ratios == (1.0, 1.0, 2.0, 3.0, 3.0, 3.0, 4.0, 5.0, 5.0)


@pytest.mark.parametrize("steps", [8, 15, 31, 50, 60, 100])
def test_nearest_equals_numpy_formula_on_shipped_table(steps):
    np = pytest.importorskip("numpy")
    src = np.array(REFERENCE)
    idx = np.round(np.arange(steps - 1) * (len(src) - 1) / (steps - 2)).astype(int)
    assert load_ratio_table("opensora-v1.2").resample(steps).ratios == tuple(src[idx].tolist())


def test_linear_interpolates_between_points():
    table = RatioTable(ratios=(1.0, 3.0))
    assert table.resample(4, "linear").ratios == pytest.approx((1.0, 2.0, 3.0))


def test_save_and_load_roundtrip(tmp_path):
    table = RatioTable(
        ratios=(0.9, 0.8),
        std=(0.01, 0.02),
        cosine_distance=(0.1, 0.2),
        name="mine",
        model="m",
        settings={"resolution": "144p"},
        source="test",
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
        ('{"ratios": []}', "is empty"),
        ('{"ratios": [0.9, NaN]}', "ratios[1]"),
        ('{"ratios": [0.9, -1.0]}', "positive finite"),
        ('{"ratios": [0.9, 0.0]}', "positive finite"),
        ('{"ratios": "0.9"}', "must be a list"),
        ('{"ratios": [0.9, "x"]}', "numbers only"),
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
    assert message in str(err.value)


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
