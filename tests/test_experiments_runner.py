"""The generation loop without VideoSys: a fake generator stands in for the model, so resume,
atomic writes, the manifest, sharded runs and the summary are tested on any machine."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from magcache_videosys.experiments import manifest as mf
from magcache_videosys.experiments.manifest import ManifestError
from magcache_videosys.experiments.runner import Options, Sample, finish, make_plan, run
from magcache_videosys.experiments.summary import summarize
from magcache_videosys.records import VideoRecord

PROMPTS = ["a red fox", "a blue whale", "a/b slash", "a red fox"]


class FakeGenerator:
    """Writes the prompt and seed as the 'video'; raises after ``fail_after`` videos."""

    def __init__(self, latency=(2.0, 3.0), fail_after=None, fail_in_save=False):
        self.calls = []
        self.latency = latency
        self.fail_after = fail_after
        self.fail_in_save = fail_in_save
        self.closed = False

    def __call__(self, plan):  # the factory the runner calls (only when there is work)
        return self

    def generate(self, prompt, seed):
        if self.fail_after is not None and len(self.calls) == self.fail_after and not self.fail_in_save:
            raise KeyboardInterrupt
        self.calls.append((prompt, seed))
        return Sample(video=f"{prompt}|{seed}", latency_transformer_s=self.latency[0], latency_total_s=self.latency[1])

    def save(self, sample, path):
        path.write_bytes(b"partial")
        if self.fail_in_save and len(self.calls) == self.fail_after + 1:
            raise KeyboardInterrupt
        path.write_text(sample.video)

    def check(self, sample, path):
        if path.read_text() != sample.video:
            raise OSError(5, "does not read back", str(path))

    def close(self):
        self.closed = True


@pytest.fixture
def prompt_file(tmp_path):
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps([{"prompt_en": p} for p in PROMPTS]))
    return path


def options(prompt_file, out, **kw):
    return Options(**{"method": "magcache-fast", "out": out, "prompts": str(prompt_file), "num_samples": 2, **kw})


def videos(out: Path):
    return sorted(p.name for p in out.iterdir() if p.suffix == ".mp4")


def test_full_run_writes_videos_manifest_and_summary(prompt_file, tmp_path):
    out = tmp_path / "run"
    gen = FakeGenerator()
    result = run(make_plan(options(prompt_file, out)), gen, progress=False)
    assert result.generated == 6 and result.complete and gen.closed
    assert videos(out) == [
        "a blue whale-0.mp4",
        "a blue whale-1.mp4",
        "a red fox-0.mp4",
        "a red fox-1.mp4",
        "a_b slash-0.mp4",
        "a_b slash-1.mp4",
    ]
    assert (out / "a red fox-1.mp4").read_text() == "a red fox|1"
    lines = (out / mf.MANIFEST).read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [(r["prompt"], r["index"], r["seed"]) for r in records] == [
        ("a red fox", 0, 0),
        ("a red fox", 1, 1),
        ("a blue whale", 0, 0),
        ("a blue whale", 1, 1),
        ("a/b slash", 0, 0),
        ("a/b slash", 1, 1),
    ]
    r = records[0]
    assert VideoRecord.from_dict(r).to_dict() == r
    assert r["video"] == "a red fox-0.mp4" and r["method"] == "magcache-fast"
    assert r["method_config"]["threshold"] == 0.12 and r["method_config"]["max_skip_steps"] == 3
    assert len(r["method_config"]["table_ratios"]) == 29
    assert (
        r["settings"]["num_steps"] == 30 and r["settings"]["resolution"] == "480p" and r["settings"]["dtype"] == "bf16"
    )
    assert (r["latency_transformer_s"], r["latency_total_s"]) == (2.0, 3.0)
    assert r["warmup"] is True and not any(x["warmup"] for x in records[1:])
    assert records[4]["name_altered"] is True
    assert json.loads((out / "vbench_prompts.json").read_text())["a_b slash-1.mp4"] == "a/b slash"
    assert "| magcache-fast | 6/6 | 2.000 [2.000-2.000] | 3.000 [3.000-3.000] | 30.0/30 |" in result.summary
    assert "over 5 timed videos; a process's first video" in result.summary
    assert not list(mf.partial_dir(out).iterdir())


def test_interrupted_run_resumes_without_doing_work_twice(prompt_file, tmp_path):
    out = tmp_path / "run"
    first = FakeGenerator(fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        run(make_plan(options(prompt_file, out)), first, progress=False)
    assert len(videos(out)) == 2 and first.closed
    plan = make_plan(options(prompt_file, out))
    assert len(plan.done) == 2 and len(plan.pending) == 4
    second = FakeGenerator()
    result = run(plan, second, progress=False)
    assert second.calls == [("a blue whale", 0), ("a blue whale", 1), ("a/b slash", 0), ("a/b slash", 1)]
    assert result.complete and len(result.records) == 6
    third = FakeGenerator()
    again = run(make_plan(options(prompt_file, out)), third, progress=False)
    assert third.calls == [] and again.generated == 0 and again.complete


def test_interruption_while_writing_leaves_no_complete_looking_file(prompt_file, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run(make_plan(options(prompt_file, out)), FakeGenerator(fail_after=1, fail_in_save=True), progress=False)
    assert videos(out) == ["a red fox-0.mp4"]
    assert not list(mf.partial_dir(out).iterdir())
    assert make_plan(options(prompt_file, out)).pending[0].video == "a red fox-1.mp4"


def test_video_without_record_is_generated_again(prompt_file, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "a red fox-0.mp4").write_text("written, then interrupted before its record")
    plan = make_plan(options(prompt_file, out, limit=1))
    assert plan.orphans == 1 and [j.video for j in plan.pending] == ["a red fox-0.mp4", "a red fox-1.mp4"]
    run(plan, FakeGenerator(), progress=False)
    assert (out / "a red fox-0.mp4").read_text() == "a red fox|0"


def test_deleted_video_is_redone_and_its_latest_record_kept(prompt_file, tmp_path):
    out = tmp_path / "run"
    run(make_plan(options(prompt_file, out, limit=1)), FakeGenerator(latency=(1.0, 1.0)), progress=False)
    (out / "a red fox-1.mp4").unlink()
    result = run(make_plan(options(prompt_file, out, limit=1)), FakeGenerator(latency=(5.0, 6.0)), progress=False)
    assert result.generated == 1
    redone = [r for r in result.records if r.video == "a red fox-1.mp4"]
    assert len(redone) == 1 and redone[0].latency_transformer_s == 5.0


def test_resume_refuses_another_method_or_settings(prompt_file, tmp_path):
    out = tmp_path / "run"
    run(make_plan(options(prompt_file, out, limit=1)), FakeGenerator(), progress=False)
    with pytest.raises(ManifestError, match="method: 'magcache-fast' there, 'base' now"):
        make_plan(options(prompt_file, out, limit=1, method="base"))
    with pytest.raises(ManifestError, match="settings.num_steps: 30 there, 10 now"):
        make_plan(options(prompt_file, out, limit=1, num_steps=10))
    mine = tmp_path / "mine"
    run(
        make_plan(options(prompt_file, mine, limit=1, method="magcache", knobs={"threshold": 0.2})),
        FakeGenerator(),
        progress=False,
    )
    with pytest.raises(ManifestError, match="method_config.threshold: 0.2 there, 0.25 now"):
        make_plan(options(prompt_file, mine, limit=1, method="magcache", knobs={"threshold": 0.25}))
    assert make_plan(options(prompt_file, mine, limit=1, method="magcache", knobs={"threshold": 0.2})).pending == []


def test_shards_write_their_own_parts_and_the_last_one_completes_the_manifest(prompt_file, tmp_path):
    out = tmp_path / "run"
    gens = [FakeGenerator(), FakeGenerator(), FakeGenerator()]
    results = [run(make_plan(options(prompt_file, out, shard=f"{i}/3")), gens[i], progress=False) for i in range(3)]
    assert [r.complete for r in results] == [False, False, True]
    assert "4 of 6 videos" in results[1].summary
    assert sorted(os.listdir(mf.parts_dir(out))) == ["shard0-of-3.jsonl", "shard1-of-3.jsonl", "shard2-of-3.jsonl"]
    assert sum(len(g.calls) for g in gens) == 6
    assert len(results[2].records) == 6 and "6/6" in results[2].summary


def test_merge_skips_a_line_cut_short_and_keeps_records_of_existing_videos(prompt_file, tmp_path):
    out = tmp_path / "run"
    plan = make_plan(options(prompt_file, out, limit=1))
    run(plan, FakeGenerator(), progress=False)
    part = next(mf.parts_dir(out).glob("*.jsonl"))
    with open(part, "a") as f:
        f.write('{"video": "a red fox-0.mp4", "prompt": "a red f')
    (out / "a red fox-1.mp4").unlink()
    records = finish(make_plan(options(prompt_file, out, limit=1))).records
    assert [r.video for r in records] == ["a red fox-0.mp4"]
    # the next record starts on a fresh line instead of joining the fragment (and being lost with it,
    # leaving the stale record of the deleted video in the manifest)
    result = run(make_plan(options(prompt_file, out, limit=1)), FakeGenerator(latency=(5.0, 6.0)), progress=False)
    assert result.generated == 1 and result.complete
    assert [(r.video, r.latency_transformer_s) for r in result.records] == [
        ("a red fox-0.mp4", 2.0),
        ("a red fox-1.mp4", 5.0),
    ]


def test_summary_speedup_against_the_base_run(prompt_file, tmp_path):
    base, fast = tmp_path / "base", tmp_path / "fast"
    run(make_plan(options(prompt_file, base, method="base")), FakeGenerator(latency=(10.0, 12.0)), progress=False)
    result = run(
        make_plan(options(prompt_file, fast, baseline=base)), FakeGenerator(latency=(4.0, 6.0)), progress=False
    )
    [row] = summarize(result.records, list(mf.load_records(base)[0].values()))
    assert row.method == "magcache-fast" and row.speedup.pairs == 5  # the warm-up video is left out
    assert row.speedup.transformer.median == pytest.approx(2.5) and row.speedup.total.median == pytest.approx(2.0)
    assert (
        "| magcache-fast | 6/6 | 4.000 [4.000-4.000] | 6.000 [6.000-6.000] | 30.0/30 | 2.50x [2.50-2.50] "
        "| 2.00x [2.00-2.00] | 5 |" in result.summary
    )
    base_records = list(mf.load_records(base)[0].values())
    assert all(r.num_computed == 30 and r.skipped_steps == [] for r in base_records)
    other = tmp_path / "other"
    result = run(make_plan(options(prompt_file, other, num_steps=10, baseline=base)), FakeGenerator(), progress=False)
    assert "| - | - | 0 (no timed video in common with the same settings) |" in result.summary


def test_baseline_without_a_manifest_is_an_error(prompt_file, tmp_path):
    from magcache_videosys.experiments.runner import RunError

    with pytest.raises(RunError, match="--baseline"):
        make_plan(options(prompt_file, tmp_path / "x", baseline=tmp_path))


def test_calibration_table_is_the_mean_over_videos(tmp_path):
    from magcache_videosys.experiments.methods import save_calibration
    from magcache_videosys.ratios import load_ratio_table

    settings = {"model": "opensora", "num_steps": 3, "transformer": "tiny"}
    records = [
        VideoRecord.from_dict(
            {
                "video": f"{prompt}-0.mp4",
                "prompt": prompt,
                "settings": settings,
                "ratio": ratio,
                "ratio_std": std,
                "cosine_distance": distance,
            }
        )
        for prompt, ratio, std, distance in [
            ("a", [1.0, 0.8], [0.1, 0.2], [0.0, 0.2]),
            ("b", [0.8, 0.6], [0.3, 0.2], [0.2, 0.4]),
        ]
    ]
    [path] = save_calibration(tmp_path, records)
    table = load_ratio_table(path)
    assert table.ratios == pytest.approx((0.9, 0.7)) and table.std == pytest.approx((0.2, 0.2))
    assert table.num_steps == 3 and table.settings["videos"] == 2 and table.settings["prompts"] == ["a", "b"]
    assert table.model.startswith("opensora (transformer tiny") and "torch" in table.settings["versions"]
    assert table.settings["ratio_std_across_videos"] == pytest.approx([0.1, 0.1])


def test_pipeline_builder_travels_to_spawned_ranks():
    import pickle

    import torch

    from magcache_videosys.experiments.generation import PipelineBuilder

    builder = pickle.loads(pickle.dumps(PipelineBuilder(dict, dtype=torch.float16)))
    assert builder({"a": 1}, device="cpu") == {"a": 1, "dtype": torch.float16, "device": "cpu"}
    assert builder.__name__ == "dict"


def _shard_process(prompt_file, out, index, count):
    import time as _time

    class Slow(FakeGenerator):
        def generate(self, prompt, seed):
            _time.sleep(0.01 * ((index + seed) % 3))
            return super().generate(prompt, seed)

    result = run(make_plan(options(prompt_file, out, shard=f"{index}/{count}", num_samples=3)), Slow(), progress=False)
    os._exit(0 if result.complete else 3)


def test_concurrent_shards_leave_a_complete_manifest(prompt_file, tmp_path):
    import multiprocessing

    out = tmp_path / "run"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_shard_process, args=(prompt_file, out, i, 4)) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode in (0, 3) for p in procs) and any(p.exitcode == 0 for p in procs)
    records = [json.loads(line) for line in (out / mf.MANIFEST).read_text().splitlines()]
    assert len(records) == len({r["video"] for r in records}) == 9 == len(videos(out))
