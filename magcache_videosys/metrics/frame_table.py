"""Per-frame metric values of a whole evaluation, held in a few large blocks instead of one small array
per video.

Why it matters at VBench scale: each video's values used to be kept as small arrays that torch had
allocated (with ``posix_memalign``, which glibc serves by cutting the largest free block, and during an
evaluation that is the frame buffer the previous video just released). Each of those few hundred bytes
pinned a freed frame buffer, the next video's buffers no longer fitted there, and the heap grew by about
one video's frames per video: 1.25 GB of RSS after 20 pairs of 480p x 17 frames, 1.7 GB after 40 (see
``benchmarks/bench_metrics.py`` for the flat numbers now). A table grown by doubling makes a handful of
allocations in a whole run, whatever the number of videos.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

_INITIAL_FRAMES = 4096


class FrameTable:
    """float64 values, one row per metric and one column per frame, videos appended one after another."""

    def __init__(self, metrics: Sequence[str]):
        self.metrics = tuple(metrics)
        self._rows = {metric: index for index, metric in enumerate(self.metrics)}
        self._data = np.empty((len(self.metrics), _INITIAL_FRAMES), dtype=np.float64)
        self.frames = 0

    def append(self, values: Mapping[str, np.ndarray]) -> int:
        """Copy one video's per-frame values in (every metric, same length); returns its first column."""
        lengths = {len(values[metric]) for metric in self.metrics}
        if len(lengths) != 1:
            raise ValueError(f"per-frame values of different lengths: {sorted(lengths)}")
        count = lengths.pop()
        start, end = self.frames, self.frames + count
        if end > self._data.shape[1]:
            grown = np.empty((len(self.metrics), max(2 * self._data.shape[1], end)), dtype=np.float64)
            grown[:, :start] = self._data[:, :start]
            self._data = grown
        for metric, row in self._rows.items():
            self._data[row, start:end] = values[metric]
        self.frames = end
        return start

    def view(self, metric: str, start: int, count: int) -> np.ndarray:
        """The values of ``count`` frames from column ``start``, as a view (copy it to keep it)."""
        return self._data[self._rows[metric], start : start + count]
