"""Resampling a table against the MagCache reference's own ``nearest_interp``.

The reference scripts for Wan 2.1, HunyuanVideo, FLUX and Qwen-Image each define ``nearest_interp``
and apply it to an N-entry table whose entry 0 stands for step 0. The function is read at test time
from a clone of github.com/Zehong-Ma/MagCache named by ``MAGCACHE_REFERENCE`` (its source only: the
scripts import model packages this project does not need) and is never part of this repo. The
project's snapshot of that repository (``../shared/third_party``) holds only its ``eval/`` and
``videosys/``, so these run with a full clone only; the hand-computed indices in ``test_ratios.py``
check the same mapping everywhere.
"""

from __future__ import annotations

import ast
from typing import Callable

import pytest
from reference_values import OPENSORA_RATIOS
from references import reference_file

from magcache_videosys import RatioTable, load_ratio_table

np = pytest.importorskip("numpy")

SCRIPTS = [
    "MagCache4Wan2.1/magcache_generate.py",
    "MagCache4HunyuanVideo/magcache_sample_video.py",
    "MagCache4FLUX/magcache_flux.py",
    "MagCache4QwenImage/magcache_generate.py",
]


def reference_nearest_interp(script: str) -> Callable:
    path = reference_file("MAGCACHE_REFERENCE", script, in_snapshot=False)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    [function] = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "nearest_interp"]
    namespace = {"np": np}
    exec(compile(ast.Module(body=[function], type_ignores=[]), str(path), "exec"), namespace)
    return namespace["nearest_interp"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_nearest_is_the_reference_nearest_interp(script):
    nearest_interp = reference_nearest_interp(script)
    table = load_ratio_table("opensora-v1.2")
    for steps in (2, 8, 15, 20, 29, 31, 50, 60, 100):
        expected = nearest_interp(np.array([1.0, *OPENSORA_RATIOS]), steps)
        assert (1.0, *table.resample(steps, "nearest").ratios) == tuple(expected.tolist()), steps
    for src, dst in ((50, 30), (6, 11), (10, 37), (41, 7)):
        values = [1.0 - 0.001 * s for s in range(1, src)]
        expected = nearest_interp(np.array([1.0, *values]), dst)
        assert (1.0, *RatioTable(ratios=tuple(values)).resample(dst, "nearest").ratios) == tuple(expected.tolist())
