"""Every preview of a schedule is the schedule a run executes.

For several tables (the shipped one, files with and without their own ratio power, resampled ones)
and knobs, the steps computed by ``schedule``, ``schedule --json``, the ``sweep`` row,
``MagCacheConfig.plan`` and ``experiments/opensora.py --dry-run`` must be the same, and the same as
``get_stats(...).computed_steps`` of a real tiny VideoSys pipeline given only the table and the knobs.
"""

from __future__ import annotations

import json
import re

import pytest
import torch
from videosys_helpers import GEN

from magcache_videosys import MagCacheConfig, disable_magcache, enable_magcache, get_stats
from magcache_videosys.cli import main as magcache_cli

OWN_RATIOS = [0.95, 0.97, 0.99, 0.98, 0.96, 0.94, 0.9, 0.85, 0.8]  # 10 steps

# (table, steps, threshold, K, retention ratio); "own" and "own-sqrt" are files written by the fixture
CASES = [
    ("opensora-v1.2", 30, 0.06, 4, 0.2),  # schedule used to preview 12 passes here, the run computed 11
    ("opensora-v1.2", 20, 0.24, 5, 0.1),  # resampled 30 -> 20
    ("opensora-v1.2", 12, 0.12, 3, 0.2),  # resampled 30 -> 12
    ("own", 10, 0.1, 2, 0.2),
    ("own-sqrt", 10, 0.1, 2, 0.2),  # the same ratios, the file says ratio_power 0.5
    ("own", 16, 0.2, 3, 0.0),  # resampled 10 -> 16
]


@pytest.fixture
def tables(tmp_path):
    paths = {"opensora-v1.2": "opensora-v1.2"}
    for name, extra in (("own", {}), ("own-sqrt", {"ratio_power": 0.5})):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"name": name, "ratios": OWN_RATIOS, **extra}))
        paths[name] = str(path)
    return paths


def _computed(text: str, pattern: str) -> list[int]:
    return [int(s) for s in re.search(pattern, text).group(1).split()]


def previews(capsys, cli, prompts, tmp_path, table: str, steps: int, threshold, k, retention) -> dict[str, list]:
    """The computed steps each preview shows."""
    knobs = ["--threshold", str(threshold), "--K", str(k), "--retention-ratio", str(retention)]
    fit = ["--steps", str(steps), "--resample", "nearest"]
    out = {}
    assert magcache_cli(["schedule", "--ratios", table, *knobs, *fit]) == 0
    out["schedule"] = _computed(capsys.readouterr().out, r"\(computed: ([\d ]+)\)")
    assert magcache_cli(["schedule", "--ratios", table, *knobs, *fit, "--json"]) == 0
    out["schedule --json"] = json.loads(capsys.readouterr().out)["computed_steps"]
    grid = ["--thresholds", str(threshold), "--K", str(k), "--retention-ratios", str(retention)]
    assert magcache_cli(["sweep", "--ratios", table, *grid, *fit, "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)["rows"]
    skipped = {int(s) for s in row["skipped_steps"].split()}
    out["sweep"] = [s for s in range(steps) if s not in skipped]
    assert len(out["sweep"]) == row["passes"]
    config = MagCacheConfig(mag_ratios=table, threshold=threshold, max_skip_steps=k, retention_ratio=retention)
    out["MagCacheConfig.plan"] = config.plan(steps).computed_steps
    dry = ["--method", "magcache", "--mag-ratios", table, *knobs, "--steps", steps, "--prompts", prompts]
    assert cli.main([str(a) for a in [*dry, "--out", tmp_path / "never", "--dry-run"]]) == 0
    out["opensora.py --dry-run"] = _computed(capsys.readouterr().out, r"computes +\d+ of \d+ steps: ([\d ]+)")
    return out


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}steps-{c[2]}-K{c[3]}-r{c[4]}")
def test_every_preview_shows_the_same_schedule(capsys, cli, prompts, tmp_path, tables, case):
    table, *rest = case
    shown = previews(capsys, cli, prompts, tmp_path, tables[table], *rest)
    assert len({tuple(v) for v in shown.values()}) == 1, shown


def test_the_table_power_changes_the_schedule_and_is_shown(capsys, tables):
    own = MagCacheConfig(mag_ratios=tables["own"], threshold=0.1, max_skip_steps=2, retention_ratio=0.2)
    sqrt = own.replace(mag_ratios=tables["own-sqrt"])
    assert (own.effective_ratio_power, sqrt.effective_ratio_power) == (1.0, 0.5)
    assert own.plan().computed_steps != sqrt.plan().computed_steps
    assert magcache_cli(["sweep", "--ratios", tables["own-sqrt"], "--K", "2", "--thresholds", "0.1"]) == 0
    assert "ratio power 0.5" in capsys.readouterr().out


@pytest.fixture(scope="module")
def tiny_parts(videosys):
    from magcache_videosys.tiny import tiny_components

    return tiny_components(seed=0)


@pytest.mark.videosys
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}steps-{c[2]}-K{c[3]}-r{c[4]}")
def test_a_run_computes_the_previewed_steps(capsys, cli, prompts, tmp_path, tables, videosys, tiny_parts, case):
    table, steps, threshold, k, retention = case
    shown = previews(capsys, cli, prompts, tmp_path, tables[table], steps, threshold, k, retention)
    config = videosys.OpenSoraConfig(num_sampling_steps=steps)
    pipeline = config.pipeline_cls(config, device=torch.device("cpu"), dtype=torch.float32, **tiny_parts)
    cfg = MagCacheConfig(mag_ratios=tables[table], threshold=threshold, max_skip_steps=k, retention_ratio=retention)
    enable_magcache(pipeline, cfg)
    try:
        pipeline.generate("a cat", seed=0, **{**GEN, "num_frames": 1})  # one frame: the schedule is the same
        ran = get_stats(pipeline).computed_steps
    finally:
        disable_magcache(pipeline)
    assert {name: ran for name in shown} == shown
