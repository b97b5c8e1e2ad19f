"""Where the tests find VideoSys's and the reference implementations' code: one mechanism for all.

The references are read at test time from local copies named by environment variables and are
never part of this repository:

- ``MAGCACHE_REFERENCE``: a copy of github.com/Zehong-Ma/MagCache (``eval/magcache/experiments/``);
- ``TEACACHE_REFERENCE``: a copy of github.com/ali-vilab/TeaCache (``eval/teacache/experiments/``).

Where one is missing the test that needs it skips, saying which variable to set. CI sets
``MAGCACHE_VIDEOSYS_STRICT=1`` in its VideoSys runs: there a missing VideoSys or reference fails
the test instead, so a green run proves that every comparison ran.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path
from typing import NoReturn

STRICT = os.environ.get("MAGCACHE_VIDEOSYS_STRICT") == "1"

REFERENCES = {
    "MAGCACHE_REFERENCE": "github.com/Zehong-Ma/MagCache",
    "TEACACHE_REFERENCE": "github.com/ali-vilab/TeaCache",
}


def unavailable(reason: str) -> NoReturn:
    """Skip the test, or fail it where CI requires everything to run."""
    import pytest

    if STRICT:
        pytest.fail(f"MAGCACHE_VIDEOSYS_STRICT=1 and {reason}")
    pytest.skip(reason)


def reference_file(variable: str, relative: str, in_snapshot: bool = True) -> Path:
    """``relative`` inside the reference copy named by ``variable``; skips (or fails) without it.

    ``in_snapshot=False`` marks a file the project's snapshot of the repository does not hold
    (``../shared/third_party`` keeps only part of it): its absence from a copy skips even in
    strict runs, and only a full clone runs the test."""
    root = os.environ.get(variable)
    path = Path(root or "") / relative
    if root and not path.is_file() and not in_snapshot:
        import pytest

        pytest.skip(f"{variable}={root} has no {relative}: a full clone of {REFERENCES[variable]} has it")
    if not root or not path.is_file():
        where = f"{variable}={root} has no {relative}" if root else f"{variable} is not set"
        unavailable(f"{where}; set it to a copy of {REFERENCES[variable]} to run this comparison")
    return path


def load_reference_script(variable: str, relative: str, name: str) -> types.ModuleType:
    """Import a reference experiment script against the VideoSys on the path.

    The scripts import helpers they do not need here (``utils``) and the older VideoSys module
    path ``videosys.core.comm``; both are provided before the import, nothing in them is changed.
    """
    path = reference_file(variable, relative)
    from magcache_videosys.videosys_compat import import_videosys

    import_videosys()
    sys.modules.setdefault("utils", types.SimpleNamespace(generate_func=None, read_prompt_list=None))
    if importlib.util.find_spec("videosys.core.comm") is None:
        import videosys.core.distributed.comm as comm

        sys.modules["videosys.core.comm"] = comm
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
