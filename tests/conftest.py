"""Shared test set-up: tests marked ``videosys`` skip cleanly where VideoSys is not importable
(``references.py``: and fail instead where CI sets ``MAGCACHE_VIDEOSYS_STRICT=1``)."""

from __future__ import annotations

import json
import subprocess

import pytest
import torch
from references import STRICT

from magcache_videosys.videosys_compat import videosys_available

HAVE_VIDEOSYS = videosys_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if HAVE_VIDEOSYS:
        return
    if STRICT:
        raise pytest.UsageError("MAGCACHE_VIDEOSYS_STRICT=1 but VideoSys is not importable; put a copy on PYTHONPATH")
    skip = pytest.mark.skip(reason="VideoSys is not installed; see README, 'Tests that need VideoSys'")
    for item in items:
        if "videosys" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def tmpfs(tmp_path):
    """``tmpfs(size, readonly=False)`` mounts a small RAM file system and returns its folder: a full
    disk or a read-only one on demand. Skips where mounting is not allowed (not root)."""
    mounted = []

    def mount(size: str = "256k", readonly: bool = False):
        folder = tmp_path / f"tmpfs{len(mounted)}"
        folder.mkdir()
        options = f"size={size}" + (",ro" if readonly else "")
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
        if proc.returncode:
            pytest.skip("cannot mount a tmpfs here (needs root)")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)


# --- fixtures of the VideoSys tests (only tests marked videosys use them) -------------------------
@pytest.fixture(scope="session")
def videosys():
    from magcache_videosys.videosys_compat import import_videosys

    return import_videosys()


@pytest.fixture
def make_pipeline(videosys):
    """Fresh pipelines sharing nothing: each builds its own tiny models (same seed, same weights)."""
    from magcache_videosys.tiny import tiny_components

    def make(config=None, **config_kwargs):
        config = config or videosys.OpenSoraConfig(**config_kwargs)
        parts = tiny_components(seed=0)
        return config.pipeline_cls(config, device=torch.device("cpu"), dtype=torch.float32, **parts)

    return make


@pytest.fixture(scope="session")
def cli():
    """``experiments/opensora.py`` loaded as a module."""
    from videosys_helpers import load_experiment_cli

    return load_experiment_cli()


@pytest.fixture
def prompts(tmp_path):
    """A prompt file holding one prompt twice (generated once)."""
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps([{"prompt_en": "a red fox in the snow"}, {"prompt_en": "a red fox in the snow"}]))
    return path
