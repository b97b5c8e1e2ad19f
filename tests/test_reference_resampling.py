"""Resampling a table against the MagCache reference's own ``nearest_interp``.

The reference scripts for Wan 2.1, HunyuanVideo, FLUX and Qwen-Image each define ``nearest_interp``
and apply it to an N-entry table whose entry 0 stands for step 0. The function is read at test time
from a clone of github.com/Zehong-Ma/MagCache named by ``MAGCACHE_REFERENCE`` (its source only: the
scripts import model packages this project does not need) and is never part of this repo.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Callable

import pytest
from reference_values import OPENSORA_RATIOS

from magcache_videosys import RatioTable, load_ratio_table

np = pytest.importorskip("numpy")

SCRIPTS = [
    "MagCache4Wan2.1/magcache_generate.py",
    "MagCache4HunyuanVideo/magcache_sample_video.py",
    "MagCache4FLUX/magcache_flux.py",
    "MagCache4QwenImage/magcache_generate.py",
]


def reference_nearest_interp(script: str) -> Callable:
    root = os.environ.get("MAGCACHE_REFERENCE")
    if not root:
        pytest.skip("set MAGCACHE_REFERENCE to a clone of github.com/Zehong-Ma/MagCache to run this comparison")
    path = Path(root) / script
    if not path.is_file():
        pytest.skip(f"{path} is not in MAGCACHE_REFERENCE (a full clone of Zehong-Ma/MagCache has it)")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    [function] = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "nearest_interp"]
    namespace = {"np": np}
    exec(compile(ast.Module(body=[function], type_ignores=[]), str(path), "exec"), namespace)
    return namespace["nearest_interp"]


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("steps", [2, 8, 15, 20, 29, 31, 50, 60, 100])
def test_nearest_is_the_reference_nearest_interp(script, steps):
    nearest_interp = reference_nearest_interp(script)
    table = load_ratio_table("opensora-v1.2")
    expected = nearest_interp(np.array([1.0, *OPENSORA_RATIOS]), steps)
    assert (1.0, *table.resample(steps, "nearest").ratios) == tuple(expected.tolist())


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("src, dst", [(50, 30), (6, 11), (10, 37), (41, 7)])
def test_other_step_counts_match_the_reference(script, src, dst):
    nearest_interp = reference_nearest_interp(script)
    values = [1.0 - 0.001 * s for s in range(1, src)]
    expected = nearest_interp(np.array([1.0, *values]), dst)
    assert (1.0, *RatioTable(ratios=tuple(values)).resample(dst, "nearest").ratios) == tuple(expected.tolist())
