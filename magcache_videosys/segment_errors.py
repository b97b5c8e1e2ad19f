"""What a schedule search needs: the final-output error of every cached segment, measured.

A *segment* ``(i, j)`` computes step ``i``, lets steps ``i+1 .. j-1`` reuse step ``i``'s residual and
computes step ``j`` again (``j = N``: the segment runs to the end); every other step is computed.
``E[i][j]`` is the mean squared error of the final video (frames in [0, 1]) against the uncached
video of the same prompt and seed, averaged over the calibration prompts and seeds.

Measuring it restarts the sampler at step ``i`` from the uncached run: the transformer's outputs of
that run are kept and handed back, without running the model, for every call before step ``i``
(the sampler's arithmetic then reproduces the uncached latent at step ``i`` exactly; this is
checked once per recording). So a segment costs ``N - i - (j - i - 1)`` full block-stack passes per
CFG branch, and a recording with K skips at most and segments starting from step ``s`` costs
about ``K * (N - s)^2 / 2`` passes per prompt and seed, plus one uncached run, which also gives the
MagCache ratio table (calibration mode) for comparison at the same budget.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from .atomic import write_json_atomic
from .hooks import get_cache
from .magcache import MagCacheConfig
from .plugin import disable_magcache, disable_schedule, enable_magcache, enable_schedule, get_stats
from .ratios import RatioTable
from .static_schedule import StaticScheduleConfig

FORMAT = "magcache-videosys-segment-errors"
METRIC = "mse of the final video in [0, 1] against the uncached video"
REPLAY_TOLERANCE = 1e-12  # the replay check: a restart without skips must give the uncached video


class SegmentErrorsError(ValueError):
    """A segment-error file that cannot be used; the message says what is wrong and the fix."""


def segments(num_steps: int, max_skip_steps: int, first_start: int) -> list[tuple[int, int]]:
    """Every segment ``(i, j)`` with ``1 <= j - i - 1 <= max_skip_steps``, ``i >= first_start`` and
    ``j <= num_steps``, in recording order (by start, then length)."""
    return [
        (i, i + m + 1)
        for i in range(first_start, num_steps - 1)
        for m in range(1, max_skip_steps + 1)
        if i + m + 1 <= num_steps
    ]


def segment_passes(num_steps: int, i: int, j: int) -> int:
    """Full block-stack passes (per CFG branch) that measuring segment ``(i, j)`` runs: steps
    ``i .. N-1`` less the skipped ones (a skipped step still calls the transformer, whose embedders
    and final layer run, but not its blocks)."""
    return (num_steps - i) - (j - i - 1)


def recording_passes(num_steps: int, max_skip_steps: int, first_start: int) -> int:
    """Full passes (per CFG branch) a recording spends on one calibration video: the uncached run
    and every segment."""
    return num_steps + sum(segment_passes(num_steps, i, j) for i, j in segments(num_steps, max_skip_steps, first_start))


@dataclass(frozen=True)
class SegmentErrors:
    """The measured segment errors of one model, step count and sampler setting.

    Args:
        num_steps: the run's step count N.
        max_skip_steps: the longest segment recorded (K); a search may use any K up to it.
        first_start: the earliest segment start recorded; a search must keep steps
            ``0 .. first_start`` computed (retention of at least ``first_start + 1`` steps).
        errors: ``(i, j) -> E[i][j]``, the mean over the samples.
        samples: per calibration video, its ``prompt``, ``seed`` and ``errors`` (same keys).
        ratio_table: the MagCache ratio table of the uncached runs (for a comparison).
        provenance: settings, cost and versions of the recording.
    """

    num_steps: int
    max_skip_steps: int
    first_start: int
    errors: dict[tuple[int, int], float]
    samples: tuple[dict[str, Any], ...] = ()
    ratio_table: RatioTable | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        expected = set(segments(self.num_steps, self.max_skip_steps, self.first_start))
        missing = sorted(expected - set(self.errors))
        if missing:
            raise SegmentErrorsError(f"segment errors miss segment {missing[0]} (and {len(missing) - 1} more).")
        bad = [k for k, v in self.errors.items() if not (isinstance(v, float) and math.isfinite(v) and v >= 0)]
        if bad:
            raise SegmentErrorsError(f"segment {bad[0]} has error {self.errors[bad[0]]!r}; errors are finite and >= 0.")

    def error(self, i: int, j: int) -> float:
        """``E[i][j]``; 0 for ``j = i + 1`` (nothing skipped)."""
        if j == i + 1:
            return 0.0
        if (i, j) not in self.errors:
            raise SegmentErrorsError(
                f"segment ({i}, {j}) (steps {i + 1}..{j - 1} skipped) was not recorded; this recording has segments of "
                f"at most {self.max_skip_steps} skips starting at step {self.first_start} or later."
            )
        return self.errors[(i, j)]

    def to_dict(self) -> dict[str, Any]:
        def rows(errors: dict[tuple[int, int], float]) -> list[list]:
            return [[i, j, e] for (i, j), e in sorted(errors.items())]

        return {
            "format": FORMAT,
            "metric": METRIC,
            "num_steps": self.num_steps,
            "max_skip_steps": self.max_skip_steps,
            "first_start": self.first_start,
            "errors": rows(self.errors),
            "samples": [{**s, "errors": rows(s["errors"])} for s in self.samples],
            "ratio_table": None if self.ratio_table is None else self.ratio_table.to_dict(),
            "provenance": self.provenance,
        }

    @classmethod
    def from_dict(cls, data: Any, origin: str = "segment errors") -> "SegmentErrors":
        fix = "give the file `magcache-videosys search-calibrate` wrote"
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise SegmentErrorsError(f"{origin}: not a segment-error file (no format {FORMAT!r}); {fix}.")
        try:
            errors = _rows(data["errors"])
            samples = tuple({**s, "errors": _rows(s["errors"])} for s in data.get("samples", []))
            table = data.get("ratio_table")
            return cls(
                num_steps=int(data["num_steps"]),
                max_skip_steps=int(data["max_skip_steps"]),
                first_start=int(data["first_start"]),
                errors=errors,
                samples=samples,
                ratio_table=None if table is None else RatioTable.from_dict(table, origin=f"{origin}: ratio_table"),
                provenance=dict(data.get("provenance", {})),
            )
        except SegmentErrorsError as exc:
            raise SegmentErrorsError(f"{origin}: {exc}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise SegmentErrorsError(f"{origin}: malformed ({type(exc).__name__}: {exc}); {fix}.") from None

    def save(self, path: str | os.PathLike) -> Path:
        return write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SegmentErrors":
        try:
            text = Path(path).read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise SegmentErrorsError(f"cannot read segment errors {path}: {exc}.") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SegmentErrorsError(f"{path}: not valid JSON ({exc}).") from None
        return cls.from_dict(data, origin=str(path))


def _rows(rows: Iterable[Sequence[Any]]) -> dict[tuple[int, int], float]:
    out = {}
    for i, j, e in rows:
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (i, j)) or not 0 <= i < j:
            raise SegmentErrorsError(f"segment ({i!r}, {j!r}) is not two step indices i < j.")
        out[(i, j)] = float(e)
    return out


# --- recording ----------------------------------------------------------------------------------
class OutputReplay:
    """Wraps a transformer's ``forward``: in a reference run it keeps every call's output; later,
    for the calls of a run before ``until`` (a call index within the run, as the caching runtime
    counts them), it hands back the kept output instead of running the model."""

    def __init__(self, transformer: nn.Module) -> None:
        self.transformer = transformer
        self._previous = transformer.__dict__.get("forward")
        self._forward = transformer.forward
        self.outputs: dict[int, Any] = {}
        self.recording = False
        self.until = 0
        self.calls = 0  # calls that ran the model
        transformer.forward = self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        cache = get_cache(self.transformer)
        index = None if cache is None else cache.call
        if not self.recording and index is not None and index < self.until:
            return _clone(self.outputs[index])
        out = self._forward(*args, **kwargs)
        self.calls += 1
        if self.recording:
            if index is None:
                raise RuntimeError("recording a reference run needs a caching method installed to count its calls.")
            self.outputs[index] = _clone(out)
        return out

    def remove(self) -> None:
        if self._previous is None:
            del self.transformer.forward
        else:
            self.transformer.forward = self._previous


def _clone(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return out.detach().clone()
    if isinstance(out, tuple):
        return type(out)(_clone(o) for o in out) if type(out) is tuple else out
    return out


def video_error(video: Any, reference: Any) -> float:
    """Mean squared error of two videos of uint8 frames, on the [0, 1] scale."""
    a, b = (torch.as_tensor(v).double() / 255.0 for v in (video, reference))
    if a.shape != b.shape:
        raise ValueError(f"videos of different shapes {tuple(a.shape)} and {tuple(b.shape)}.")
    return float(((a - b) ** 2).mean())


def record_segment_errors(
    pipeline: Any,
    generate: Callable[[str, int], Any],
    samples: Sequence[tuple[str, int]],
    num_steps: int,
    max_skip_steps: int,
    first_start: int,
    progress: bool = True,
    provenance: dict[str, Any] | None = None,
) -> SegmentErrors:
    """Measure ``E[i][j]`` on ``pipeline`` for every ``(prompt, seed)`` of ``samples``.

    ``generate(prompt, seed)`` runs the pipeline (``num_steps`` steps) and returns the video's
    uint8 frames. Per sample: one uncached run in MagCache calibration mode (the reference video,
    the transformer outputs to restart from, and the ratio table), then every segment with the
    static schedule that skips only its steps, restarted at its first step.
    """
    if not samples:
        raise ValueError("give at least one (prompt, seed) to calibrate on.")
    if max_skip_steps < 1 or not 0 <= first_start < num_steps - 1:
        raise ValueError(
            f"need K >= 1 and 0 <= first_start < {num_steps - 1}, got K {max_skip_steps}, first_start {first_start}."
        )
    todo = segments(num_steps, max_skip_steps, first_start)
    replay = OutputReplay(pipeline.transformer)
    per_sample: list[dict[str, Any]] = []
    ratios: list[list[float]] = []
    replay_check = None
    started = time.perf_counter()
    bar = tqdm(total=len(samples) * (len(todo) + 1), desc="segment errors", unit="run", disable=not progress)
    try:
        for prompt, seed in samples:
            replay.recording, replay.outputs = True, {}
            enable_magcache(pipeline, MagCacheConfig(calibrate=True, num_steps=num_steps))
            try:
                reference = generate(prompt, seed)
                stats = get_stats(pipeline)
            finally:
                disable_magcache(pipeline)
                replay.recording = False
            branches = len(replay.outputs) // num_steps
            ratios.append(stats.measured.get("ratio", []))
            bar.update(1)
            if replay_check is None:  # a restart that skips nothing must give the uncached video
                replay_check = _run_mask(
                    pipeline, replay, generate, prompt, seed, num_steps, (), num_steps // 2, branches
                )
                replay_check = video_error(replay_check, reference)
                if replay_check > REPLAY_TOLERANCE:
                    raise RuntimeError(
                        f"restarting the sampler from the kept transformer outputs changed the video (mse "
                        f"{replay_check:.3g}): this sampler does not depend on the model outputs alone, so segment "
                        f"errors cannot be measured by restarting it."
                    )
            errors = {}
            for i, j in todo:
                video = _run_mask(pipeline, replay, generate, prompt, seed, num_steps, range(i + 1, j), i, branches)
                errors[(i, j)] = video_error(video, reference)
                bar.update(1)
            per_sample.append({"prompt": prompt, "seed": seed, "errors": errors})
    finally:
        bar.close()
        replay.remove()
    mean = {key: sum(s["errors"][key] for s in per_sample) / len(per_sample) for key in todo}
    per_video = recording_passes(num_steps, max_skip_steps, first_start)
    passes = (per_video * len(samples) + num_steps - num_steps // 2) * branches  # with the replay check
    table = _ratio_table(ratios, num_steps)
    info = {
        "metric": METRIC,
        "samples": [{"prompt": p, "seed": s} for p, s in samples],
        "segments": len(todo),
        "full_passes": passes,
        "full_passes_per_video": per_video * branches,
        "uncached_runs_equivalent": round(passes / (num_steps * branches), 2),
        "transformer_calls": replay.calls,
        "seconds": round(time.perf_counter() - started, 1),
        "replay_check_mse": replay_check,
        **(provenance or {}),
    }
    return SegmentErrors(num_steps, max_skip_steps, first_start, mean, tuple(per_sample), table, provenance=info)


def _run_mask(
    pipeline: Any,
    replay: OutputReplay,
    generate: Callable[[str, int], Any],
    prompt: str,
    seed: int,
    num_steps: int,
    skipped: Iterable[int],
    restart: int,
    branches: int,
) -> Any:
    """One run that skips ``skipped``, restarted at step ``restart`` from the kept outputs."""
    enable_schedule(pipeline, StaticScheduleConfig.from_steps(num_steps, list(skipped), name="segment"))
    replay.until = restart * branches
    try:
        return generate(prompt, seed)
    finally:
        replay.until = 0
        disable_schedule(pipeline)


def _ratio_table(ratios: list[list[float]], num_steps: int) -> RatioTable | None:
    usable = [r for r in ratios if len(r) == num_steps - 1]
    if not usable:
        return None
    return RatioTable(
        ratios=tuple(sum(v) / len(v) for v in zip(*usable)),
        name="segment-errors-calibration",
        source="the uncached runs of `magcache-videosys search-calibrate` (MagCache calibration mode)",
    )
