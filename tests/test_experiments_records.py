"""The one per-video record type (fields, writing, lenient and strict reading) and the latency and
speedup statistics that the run's summary and batch_eval.py both read from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from magcache_videosys.experiments import manifest as mf
from magcache_videosys.experiments.runner import Options, finish, make_plan
from magcache_videosys.metrics.errors import MetricsError
from magcache_videosys.metrics.report import TableRow, markdown_table, read_manifest
from magcache_videosys.records import (
    RecordError,
    VideoRecord,
    append_record,
    pair,
    read_records,
    speedup,
    spread,
)


def record(video="a-0.mp4", **fields):
    return VideoRecord(**{"video": video, "prompt": "a", "index": 0, "seed": 0, "method": "base", **fields})


def test_a_record_round_trips_through_one_json_line(tmp_path):
    r = record(latency_transformer_s=1.5, latency_total_s=2, settings={"num_steps": 30}, extra={"ratio": [0.9, 0.8]})
    line = r.to_line()
    assert line.endswith("\n") and line.count("\n") == 1
    data = json.loads(line)
    assert data["ratio"] == [0.9, 0.8] and "extra" not in data and "num_steps" not in data  # None fields left out
    assert VideoRecord.from_dict(data) == r and r.identity == ("a", 0, 0)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"latency_total_s": float("nan")}, '"latency_total_s" must be a finite number of seconds'),
        ({"latency_total_s": -1.0}, '"latency_total_s" must be a finite number of seconds'),
        ({"index": "0"}, '"index" must be a whole number'),
        ({"index": True}, '"index" must be a whole number'),
        ({"computed_steps": [0, 1.5]}, '"computed_steps" must be a list of whole numbers'),
        ({"video": "sub/a-0.mp4"}, '"video" must be a file name'),
    ],
)
def test_invalid_fields_are_refused_when_a_record_is_made(fields, message):
    with pytest.raises(ValueError, match=message):
        record(**fields)


def test_strict_reading_names_file_and_line(tmp_path):
    path = tmp_path / "manifest.jsonl"
    good = record().to_line()
    for text, where, reason in [
        (good + '{"video": \n', ":2 ", "is not JSON"),
        (good + '{"video": "b-0.mp4", "latency_total_s": NaN}\n', ":2 ", "NaN is not a number a record may hold"),
        ('{"method": "x"}\n', ":1 ", 'has no "video" field'),
        (good + good[:20], ":2 ", "cut short: a writer was killed mid-write"),
    ]:
        path.write_text(text)
        with pytest.raises(RecordError, match="manifest.jsonl" + where) as error:
            read_records(path, strict=True)
        assert reason in str(error.value) and "fix or delete that line" in str(error.value)
        with pytest.raises(MetricsError, match=where.strip()):
            read_manifest(tmp_path)  # batch_eval.py reads manifests strictly


def test_lenient_reading_skips_bad_lines_and_marks_a_torn_last_line(tmp_path):
    path = tmp_path / "part.jsonl"
    path.write_text(record("a-0.mp4").to_line() + "not json\n" + record("a-1.mp4").to_line() + '{"video": "a-2')
    records, bad = read_records(path, strict=False)
    assert [r.video for r in records] == ["a-0.mp4", "a-1.mp4"]
    assert [(b.line, b.torn) for b in bad] == [(2, False), (4, True)]


def test_an_append_after_a_cut_line_starts_on_a_fresh_line(tmp_path):
    path = tmp_path / "part.jsonl"
    append_record(path, record("a-0.mp4"))
    with open(path, "a") as f:
        f.write(record("a-1.mp4").to_line()[:25])  # a killed writer's fragment
    append_record(path, record("a-2.mp4"))
    records, bad = read_records(path, strict=False)
    assert [r.video for r in records] == ["a-0.mp4", "a-2.mp4"]
    assert [b.line for b in bad] == [2] and not bad[0].torn


def test_spread_is_the_median_and_the_interquartile_range():
    s = spread([6.6, 43.8, 6.5, 6.7, 6.4])
    assert (s.median, s.low, s.high, s.n) == (6.6, 6.5, 6.7, 5)  # one 43.8 s outlier moves nothing
    assert spread([]) is None and spread([2.0]).text() == "2.000 [2.000-2.000]"


def test_pairs_need_the_same_video_identity_and_settings_and_no_warmup():
    base = [
        record("a-0.mp4", latency_transformer_s=9.0, latency_total_s=10.0, warmup=True),
        record("a-1.mp4", index=1, seed=1, latency_transformer_s=9.0, latency_total_s=10.0),
        record("a-2.mp4", index=2, seed=2, latency_transformer_s=9.0, latency_total_s=10.0, settings={"x": 1}),
        record("a-3.mp4", index=3, seed=3, latency_transformer_s=9.0, latency_total_s=10.0),
        record("a-4.mp4", index=4, seed=4, latency_transformer_s=9.0, latency_total_s=10.0),
    ]
    method = [
        record("a-0.mp4", latency_transformer_s=3.0, latency_total_s=4.0),  # its base is a warm-up
        record("a-1.mp4", index=1, seed=1, latency_transformer_s=3.0, latency_total_s=4.0),
        record("a-2.mp4", index=2, seed=2, latency_transformer_s=3.0, latency_total_s=4.0, settings={"x": 2}),
        record("a-3.mp4", index=3, seed=7, latency_transformer_s=3.0, latency_total_s=4.0),  # another seed
        record("a-4.mp4", index=4, seed=4, latency_transformer_s=3.0, latency_total_s=4.0, warmup=True),
    ]
    assert [(b.video, m.video) for b, m in pair(base, method)] == [("a-1.mp4", "a-1.mp4")]


def _run_folder(path: Path, plan, latencies: list[tuple[float, float]], passes: int) -> None:
    """A finished run folder as experiments/opensora.py leaves it for ``plan`` (videos and manifest)."""
    path.mkdir()
    lines = []
    for index, (transformer, total) in enumerate(latencies):
        name = f"a cat-{index}.mp4"
        (path / name).write_text("video")
        lines.append(
            record(
                name,
                prompt="a cat",
                index=index,
                seed=index,
                method=plan.method.name,
                method_config=plan.signature["method_config"],
                settings=plan.signature["settings"],
                latency_transformer_s=transformer,
                latency_total_s=total,
                num_steps=30,
                num_computed=passes,
                warmup=index == 0,
            ).to_line()
        )
    (path / "manifest.jsonl").write_text("".join(lines))


def test_a_speedup_above_the_pass_count_bound_is_flagged_not_reported(tmp_path):
    """The reported 3.58x for turbo (10 of 30 passes: at most 3.00x) came from a busy CPU during
    the base run (one base video took 43.8 s, another 6.6 s) and means over few videos."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n")

    def options(method, out, **kw):
        return Options(method=method, out=out, prompts=str(prompts), num_samples=6, **kw)

    base_busy = [(50.0, 52.0), (43.8, 45.0), (6.6, 7.6), (6.5, 7.5), (6.7, 7.7), (6.4, 7.4)]
    turbo = [(20.0, 21.0), (4.1, 5.1), (2.0, 3.0), (2.1, 3.1), (2.1, 3.1), (2.0, 3.0)]
    _run_folder(tmp_path / "base", make_plan(options("base", tmp_path / "x")), base_busy, 30)
    _run_folder(tmp_path / "turbo", make_plan(options("magcache-turbo", tmp_path / "x")), turbo, 10)
    summary = finish(make_plan(options("magcache-turbo", tmp_path / "turbo", baseline=tmp_path / "base"))).summary
    assert "| magcache-turbo | 6/6 | 2.100 [2.000-2.100] |" in summary
    # the old means: (43.8 + 6.6 + 6.5 + 6.7 + 6.4) / (4.1 + 2.0 + 2.1 + 2.1 + 2.0) = 5.69x, printed as a result
    assert "3.20x [3.19-3.30] ABOVE the 3.00x bound: timing noise, not a result" in summary
    assert "A speedup ABOVE its bound (base passes / passes of the method: magcache-turbo 3.00x)" in summary
    assert "a process's first video (model loading, first kernel compiles) is its warm-up" in summary

    stats = speedup(pair(*(mf.load_records(tmp_path / d)[0].values() for d in ("base", "turbo"))))
    assert stats.bound == pytest.approx(3.0) and stats.above_bound(stats.transformer)
    row = TableRow(Path("base"), Path("turbo"), "magcache-turbo", 6, {}, {}, {}, stats)
    row.latency = {"latency_total_s": 3.1, "latency_transformer_s": 2.1}
    row.speedup = {"latency_total_s": stats.total.median, "latency_transformer_s": stats.transformer.median}
    table = markdown_table([row], [])
    assert "3.20x (above the 3.00x pass bound: noise)" in table and "3.19-3.30x" in table


def test_a_speedup_within_the_bound_is_reported_with_its_spread():
    base = [
        record(f"a-{i}.mp4", index=i, seed=i, latency_transformer_s=t, latency_total_s=t + 1, num_computed=30)
        for i, t in enumerate([10.0, 10.2, 9.8, 10.1])
    ]
    fast = [
        record(f"a-{i}.mp4", index=i, seed=i, latency_transformer_s=t, latency_total_s=t + 1, num_computed=12)
        for i, t in enumerate([4.0, 4.2, 4.1, 4.0])
    ]
    stats = speedup(pair(base, fast))
    assert stats.pairs == 4 and stats.bound == pytest.approx(2.5)
    assert stats.text("transformer") == "2.46x [2.42-2.51]" and not stats.above_bound(stats.transformer)
    pab = [
        record(f"a-{i}.mp4", index=i, seed=i, latency_transformer_s=7.0, latency_total_s=8.0, num_computed=30)
        for i in range(4)
    ]
    assert speedup(pair(base, pab)).bound is None  # PAB runs every pass: the pass count bounds nothing
