"""TeaCache's polynomial fitted for a model (``teacache_fit``) and the coefficients shipped for the test bed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import magcache_videosys
from magcache_videosys.experiments.methods import build_config, get_method
from magcache_videosys.models import teacache_coefficients
from magcache_videosys.teacache import TeaCacheConfig
from magcache_videosys.teacache_fit import fit_polynomial, relative_l1

FIT = Path(magcache_videosys.__file__).parent / "testbed" / "teacache" / "teacache_fit.json"


def test_fit_recovers_a_degree_4_polynomial():
    truth = (3.0, -2.0, 0.5, 0.25, 0.05)
    x = [i / 20 for i in range(20)]
    y = [sum(c * v ** (4 - k) for k, c in enumerate(truth)) for v in x]
    assert fit_polynomial(x, y) == pytest.approx(truth, abs=1e-9)
    with pytest.raises(ValueError, match="needs more than 4"):
        fit_polynomial(x[:4], y[:4])


def test_relative_l1_is_teacaches_distance():
    import torch

    previous, current = torch.tensor([1.0, -2.0, 3.0]), torch.tensor([1.5, -2.0, 2.0])
    assert relative_l1(current, previous) == pytest.approx((0.5 + 0.0 + 1.0) / 6.0)


def test_shipped_testbed_coefficients_are_the_recorded_fit():
    record = json.loads(FIT.read_text())
    assert teacache_coefficients()["opensora-testbed"] == tuple(record["coefficients"])
    assert fit_polynomial(record["x"], record["y"]) == pytest.approx(record["coefficients"], rel=1e-9)
    assert len(record["x"]) == len(record["prompts"]) * len(record["seeds"]) * (record["steps"] - 1)
    assert TeaCacheConfig(threshold=0.1, coefficients="opensora-testbed").polynomial == tuple(record["coefficients"])
    fitted = build_config(get_method("teacache"), {"threshold": 0.2, "coefficients": "opensora-testbed"})
    assert fitted == TeaCacheConfig.preset("teacache-fast", coefficients="opensora-testbed")  # last step computed


@pytest.mark.videosys
def test_recorder_pairs_every_step_after_the_first_of_each_run():
    from magcache_videosys.teacache_fit import ChangeRecorder
    from magcache_videosys.tiny import tiny_opensora_pipeline

    pipeline = tiny_opensora_pipeline(num_sampling_steps=5)
    recorder = ChangeRecorder(pipeline.transformer)
    for seed in (0, 1):
        recorder.new_run()
        pipeline.generate("a cat", seed=seed, verbose=False, resolution="144p", aspect_ratio="9:16", num_frames=17)
    recorder.close()
    assert len(recorder.x) == len(recorder.y) == 2 * 4
    assert all(v > 0 for v in recorder.x + recorder.y)
    before = (len(recorder.x), len(recorder.y))
    pipeline.generate("a cat", seed=0, verbose=False, resolution="144p", aspect_ratio="9:16", num_frames=17)
    assert (len(recorder.x), len(recorder.y)) == before  # closed: the hooks are gone
