"""The GPU check's instruments: a clock (CUDA events on a GPU, ``perf_counter`` on the CPU), the
transformer loop's start and end, the block stack's share of the loop, peak memory, and a probe
that counts host-device synchronisations and can forbid them in the plugin's own code.

Only :class:`Clock`, :class:`PeakMemory` and the mode setter of :class:`SyncProbe` differ between
CUDA and the CPU; everything else runs the same code on both, so ``--small`` exercises it.
"""

from __future__ import annotations

import contextlib
import time
import traceback
import warnings
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

# What torch.cuda.set_sync_debug_mode("warn") says (c10/cuda/CUDAFunctions.cpp), and raises with "error".
SYNC_MESSAGE = "called a synchronizing CUDA operation"


class Clock:
    """Marks on the device's timeline: CUDA events on a GPU, ``time.perf_counter`` on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.name = "CUDA events" if self.cuda else "perf_counter (CPU wall time)"

    def mark(self) -> Any:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def seconds(self, start: Any, end: Any) -> float:
        if self.cuda:
            end.synchronize()
            return start.elapsed_time(end) / 1000.0
        return end - start


class LoopMarks:
    """Marks the start and end of every ``scheduler.sample`` call of a pipeline: its transformer loop."""

    def __init__(self, scheduler: Any, clock: Clock) -> None:
        self.clock = clock
        self.marks: tuple[Any, Any] | None = None
        inner = scheduler.sample

        def sample(*args: Any, **kwargs: Any) -> Any:
            start = clock.mark()
            out = inner(*args, **kwargs)
            self.marks = (start, clock.mark())
            return out

        scheduler.sample = sample

    def seconds(self) -> float:
        """The latest loop's duration."""
        return self.clock.seconds(*self.marks)


@contextlib.contextmanager
def stack_marks(blocks: Sequence[nn.Module], clock: Clock) -> Iterator[list[Any]]:
    """Marks taken as the first block of the stack starts and as the last one ends, every step."""
    marks: list[Any] = []
    handles = [
        blocks[0].register_forward_pre_hook(lambda *_: marks.append(clock.mark())),
        blocks[-1].register_forward_hook(lambda *_: marks.append(clock.mark())),
    ]
    try:
        yield marks
    finally:
        for handle in handles:
            handle.remove()


def stack_seconds(marks: list[Any], clock: Clock) -> float:
    """The time spent inside the block stack, summed over the steps ``stack_marks`` saw."""
    return sum(clock.seconds(start, end) for start, end in zip(marks[0::2], marks[1::2]))


class PeakMemory:
    """The most device memory a block allocated beyond what was allocated when it started (CUDA
    only; ``extra`` stays None on the CPU, where torch keeps no such statistics)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.extra: int | None = None

    def __enter__(self) -> "PeakMemory":
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.extra = torch.cuda.max_memory_allocated() - self.base


class SyncProbe:
    """Counts host-device synchronisations during sampling runs, split between the plugin's code
    and everything else, and can make any synchronisation in the plugin's code an error.

    The plugin's code is what runs in the transformer's forward pre-hooks (this package's run
    tracking) and in each block call around the VideoSys block body (the skip decision, the
    residual bookkeeping, the skipped path). Every block gets a pre-hook and a hook that mark the
    plugin region, and an inner ``forward`` that marks the VideoSys body: install the probe
    before enabling a method (so the method wraps the inner forward), then call
    :meth:`cover_pre_hooks` after. ``set_mode`` is ``torch.cuda.set_sync_debug_mode`` on CUDA; on
    the CPU, where nothing synchronises, a stand-in that only records the regions.
    """

    def __init__(self, transformer: nn.Module, blocks: Sequence[nn.Module], set_mode: Callable[[str], None]) -> None:
        self.transformer = transformer
        self.blocks = list(blocks)
        self.set_mode = set_mode
        self.active = False
        self.plugin_mode = "warn"
        self.plugin = self.other = self.regions = 0
        self._log: list[warnings.WarningMessage] = []
        self._seen = 0
        self._in_plugin = False
        self._handles = []
        for block in self.blocks:
            self._handles.append(block.register_forward_pre_hook(lambda *_: self._enter(), prepend=True))
            self._handles.append(block.register_forward_hook(lambda *_: self._to(False)))
            block.forward = self._videosys_body(block.forward)

    def _videosys_body(self, forward: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        def body(*args: Any, **kwargs: Any) -> torch.Tensor:
            self._to(False)
            try:
                return forward(*args, **kwargs)
            finally:
                self._to(True)

        return body

    def cover_pre_hooks(self) -> None:
        """Mark the transformer's forward pre-hooks registered so far as plugin code."""
        self._handles.append(self.transformer.register_forward_pre_hook(lambda *_: self._enter(), prepend=True))
        self._handles.append(self.transformer.register_forward_pre_hook(lambda *_: self._to(False)))

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        for block in self.blocks:
            block.__dict__.pop("forward", None)

    def _enter(self) -> None:
        if self.active:
            self.regions += 1
        self._to(True)

    def _to(self, plugin: bool) -> None:
        if not self.active:
            return
        new = self._log[self._seen :]
        self._seen = len(self._log)
        found = sum(SYNC_MESSAGE in str(w.message) for w in new)
        if self._in_plugin:
            self.plugin += found
        else:
            self.other += found
        self._in_plugin = plugin
        self.set_mode(self.plugin_mode if plugin else "warn")

    @contextlib.contextmanager
    def counting(self, strict: bool) -> Iterator["SyncProbe"]:
        """Count during the block; with ``strict`` the plugin's code runs in sync debug mode "error"."""
        self.plugin = self.other = self.regions = 0
        self.plugin_mode = "error" if strict else "warn"
        with warnings.catch_warnings(record=True) as log:
            warnings.simplefilter("always")
            self._log, self._seen, self._in_plugin, self.active = log, 0, False, True
            self.set_mode("warn")
            try:
                yield self
            finally:
                self._to(False)
                self.active = False
                self.set_mode("default")


def where_raised(error: BaseException, package: str = "magcache_videosys") -> str:
    """``file:line`` of the innermost frame of ``package`` in the error's traceback, else the innermost."""
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if f"/{package}/" in f.filename.replace("\\", "/")]
    frame = (ours or frames)[-1]
    return f"{frame.filename}:{frame.lineno} ({frame.name})"
