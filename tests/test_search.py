"""The schedule search: exact against brute force over every mask, hand-made cases with a known
optimum, the constraints and their errors, and segment-error files."""

from __future__ import annotations

import itertools
import json
import random

import pytest

from magcache_videosys.search import (
    SearchError,
    magcache_at_passes,
    mask_segments,
    pass_range,
    predicted_error,
    search,
    search_mask,
)
from magcache_videosys.segment_errors import SegmentErrors, SegmentErrorsError, recording_passes, segments


def matrix(num_steps: int, k: int, first_start: int = 0, value=None, seed: int = 0) -> SegmentErrors:
    rng = random.Random(seed)
    errors = {s: (rng.random() if value is None else value(*s)) for s in segments(num_steps, k, first_start)}
    return SegmentErrors(num_steps, k, first_start, errors)


def allowed(skip, k: int, retain: int) -> bool:
    run = longest = 0
    for s in skip:
        run = run + 1 if s else 0
        longest = max(longest, run)
    return longest <= k and not any(skip[:retain])


def brute_force(errors: SegmentErrors, passes: int, k: int, retain: int, objective: str):
    """The least (objective, then sum) over every mask of the constraints, and how many masks tie."""
    best = None
    for skip in itertools.product([False, True], repeat=errors.num_steps):
        if errors.num_steps - sum(skip) != passes or not allowed(skip, k, retain):
            continue
        key = (predicted_error(errors, skip, objective), predicted_error(errors, skip, "sum"))
        best = key if best is None or key < best else best
    return best


@pytest.mark.parametrize("objective", ["sum", "rms", "max"])
@pytest.mark.parametrize("num_steps", [8, 9, 10])
def test_the_search_finds_the_brute_force_optimum_for_every_budget(num_steps, objective):
    checked = 0
    for trial, (k, retain) in enumerate([(1, 1), (2, 1), (2, 3), (3, 2), (4, 1)]):
        errors = matrix(num_steps, 4, seed=100 * num_steps + trial)
        low, high = pass_range(num_steps, k, retain)
        assert brute_force(errors, low - 1, k, retain, objective) is None  # the range is tight
        for passes in range(low, high + 1):
            skip = search_mask(errors, passes, k, retain, objective)
            assert num_steps - sum(skip) == passes and allowed(skip, k, retain)
            got = (predicted_error(errors, skip, objective), predicted_error(errors, skip, "sum"))
            want = brute_force(errors, passes, k, retain, objective)
            assert got[0] == pytest.approx(want[0], abs=1e-12)
            if objective == "max":
                assert got[1] == pytest.approx(want[1], abs=1e-12)  # ties broken by the least sum
            checked += 1
    assert checked > 20


def test_a_hand_made_matrix_with_cheap_segments_gives_them():
    # 8 steps, K 2, 3 passes: the 5 skipped steps split 2, 2, 1; only 0->3->6->end is cheap.
    cheap = {(0, 3), (3, 6), (6, 8)}
    errors = matrix(8, 2, value=lambda i, j: 0.1 if (i, j) in cheap else 1.0)
    skip = search_mask(errors, 3, 2, 1)
    assert skip == [False, True, True, False, True, True, False, True]
    assert mask_segments(skip) == [(0, 3), (3, 6), (6, 8)]
    assert predicted_error(errors, skip) == pytest.approx(0.3)


def test_sum_and_max_disagree_where_one_long_segment_is_cheap_in_total():
    # 6 steps, K 2, 3 passes. One skip costs 1, two skips 1.5: the sum prefers a 2-skip and a 1-skip
    # (2.5 < 3), the minimax three single skips (max 1 < 1.5).
    errors = matrix(6, 2, value=lambda i, j: 1.0 if j - i == 2 else 1.5)
    by_sum = search_mask(errors, 3, 2, 1, "sum")
    by_max = search_mask(errors, 3, 2, 1, "max")
    assert predicted_error(errors, by_sum) == pytest.approx(2.5)
    assert by_max == [False, True, False, True, False, True]
    assert predicted_error(errors, by_max, "max") == 1.0


def test_rms_adds_amplitudes_so_one_long_segment_can_beat_two_short_ones():
    # 4 steps, K 2, 2 passes: 0 and 2 computed (two single skips, 0.01 each) or one double skip (0.03).
    # sum: 0.02 < 0.03; rms: (0.1 + 0.1)^2 = 0.04 > 0.03.
    errors = matrix(4, 2, value=lambda i, j: 0.01 if j - i == 2 else 0.03)
    assert search_mask(errors, 2, 2, 1, "sum") == [False, True, False, True]
    by_rms = search_mask(errors, 2, 2, 1, "rms")
    assert predicted_error(errors, by_rms, "rms") == pytest.approx(0.03)
    assert by_rms in ([False, False, True, True], [False, True, True, False])


def test_retention_and_k_are_kept_and_every_pass_count_is_reachable():
    errors = matrix(10, 3)
    assert pass_range(10, 3, 2) == (4, 10)  # CC sssC sssC: 8 steps after the retained 2, gaps of at most 3
    for passes in range(4, 11):
        skip = search_mask(errors, passes, 3, 2)
        assert skip[:2] == [False, False] and allowed(skip, 3, 2)


def test_budgets_and_constraints_the_recording_cannot_serve_are_clear_errors():
    errors = matrix(10, 2, first_start=1)
    with pytest.raises(SearchError, match="3 passes is out of reach: .* a mask has 4 to 10 passes"):
        search_mask(errors, 3, 2, 2)
    with pytest.raises(SearchError, match="K 3 is more than the recording's 2"):
        search_mask(errors, 6, 3, 2)
    with pytest.raises(SearchError, match="retain at least 2 steps"):
        search_mask(errors, 6, 2, 1)
    with pytest.raises(SearchError, match="objective must be one of sum, rms, max"):
        search_mask(errors, 6, 2, 2, "mean")


def test_search_reports_magcache_at_the_same_passes_on_the_recorded_table():
    errors = matrix(12, 3, first_start=1)
    ratios = [0.99, 0.98, 0.97, 0.97, 0.96, 0.95, 0.94, 0.93, 0.9, 0.88, 0.85]
    result = search(errors, 7, 3, 0.2, ratios=ratios)
    plan = result.magcache
    assert plan.num_computed == 7 and plan.max_skip_steps == 3
    assert plan == magcache_at_passes(ratios, 7, 3, 0.2)
    mc_skip = [s.skipped for s in plan.steps]
    assert result.magcache_predicted == predicted_error(errors, mc_skip)
    assert result.predicted <= result.magcache_predicted  # the optimum over the masks MagCache's is one of
    assert result.schedule.provenance["passes"] == 7 and result.schedule.num_computed == 7


def test_recording_cost_counts_full_passes():
    # 6 steps, K 1, from step 0: segments (i, i+2) for i = 0..4, each N - i - 1 passes, plus the uncached run.
    assert segments(6, 1, 0) == [(0, 2), (1, 3), (2, 4), (3, 5), (4, 6)]
    assert recording_passes(6, 1, 0) == 6 + (5 + 4 + 3 + 2 + 1)


def test_segment_errors_round_trip_and_bad_files(tmp_path):
    errors = matrix(8, 2, first_start=1)
    errors = SegmentErrors(8, 2, 1, errors.errors, samples=({"prompt": "p", "seed": 3, "errors": errors.errors},))
    path = errors.save(tmp_path / "errors.json")
    again = SegmentErrors.load(path)
    assert again.errors == errors.errors and again.samples[0]["seed"] == 3
    data = json.loads(path.read_text())
    data["errors"] = data["errors"][1:]
    (tmp_path / "short.json").write_text(json.dumps(data))
    with pytest.raises(SegmentErrorsError, match=r"short.json: segment errors miss segment \(1, 3\)"):
        SegmentErrors.load(tmp_path / "short.json")
    (tmp_path / "other.json").write_text(json.dumps({"skip": [False]}))
    with pytest.raises(SegmentErrorsError, match="not a segment-error file"):
        SegmentErrors.load(tmp_path / "other.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(SegmentErrorsError, match="not valid JSON"):
        SegmentErrors.load(tmp_path / "broken.json")
    with pytest.raises(SegmentErrorsError, match="segment .* has error -1"):
        SegmentErrors(4, 1, 0, {(0, 2): -1.0, (1, 3): 0.0, (2, 4): 0.0})
