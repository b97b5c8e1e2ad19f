"""Shared test set-up: tests marked ``videosys`` skip cleanly where VideoSys is not importable."""

from __future__ import annotations

import pytest

from magcache_videosys.videosys_compat import videosys_available

HAVE_VIDEOSYS = videosys_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if HAVE_VIDEOSYS:
        return
    skip = pytest.mark.skip(reason="VideoSys is not installed; see README, 'Tests that need VideoSys'")
    for item in items:
        if "videosys" in item.keywords:
            item.add_marker(skip)
