"""The README's Python snippets run as written.

Each ```python block of README.md is executed in a fresh namespace. VideoSys's engine asserts CUDA
and loads Open-Sora's weights, so here ``VideoSysEngine`` is a CPU stand-in that does what each
rank of the real engine does (``config.pipeline_cls(config)``, which is where the plugin installs a
method) with tiny random-weight components, for the driver rank only, and generates at 144p x 17
frames unless told otherwise. A ``print(...)  # value`` line must print that value.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.videosys

README = Path(__file__).resolve().parents[1] / "README.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


class CPUEngine:
    """``VideoSysEngine`` without GPUs: the driver rank's pipeline, built from the config."""

    def __init__(self, config):
        from magcache_videosys.tiny import tiny_components

        self.config = config
        self.driver_worker = config.pipeline_cls(
            config, device=torch.device("cpu"), dtype=torch.float32, **tiny_components(seed=0)
        )

    def generate(self, *args, **kwargs):
        small = dict(resolution="144p", aspect_ratio="1:1", num_frames=17, verbose=False)
        return self.driver_worker.generate(*args, **{**small, **kwargs})


def expected_prints(snippet: str) -> list[str]:
    """The values the snippet's ``print(...)  # value`` comments promise, in order."""
    return [m.group(1).strip() for m in re.finditer(r"^print\(.*\)\s*#\s*(.+)$", snippet, flags=re.M)]


def test_the_readme_has_snippets():
    assert len(SNIPPETS) >= 3
    for snippet in SNIPPETS:
        ast.parse(snippet)  # each is valid Python on its own


@pytest.mark.parametrize("number", range(len(SNIPPETS)))
def test_snippet_runs_as_written(number, videosys, monkeypatch, capsys):
    monkeypatch.setattr(videosys, "VideoSysEngine", CPUEngine)
    snippet = SNIPPETS[number]
    exec(compile(snippet, f"README.md python snippet {number + 1}", "exec"), {"__name__": "__readme__"})
    printed = capsys.readouterr().out.splitlines()
    promised = expected_prints(snippet)
    if promised:
        assert printed[-len(promised) :] == promised
