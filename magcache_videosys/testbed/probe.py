"""Reading a generated clip back: background, shape colour, shape and motion from pixel statistics.

Used to check that the test bed learned its task: nothing here knows the model, only the frames
``OpenSoraPipeline.generate`` returns (``(T, H, W, 3)`` uint8). The background is the median colour;
the shape is every pixel far from it; its colour is the mean of those pixels, its direction that of
its centroid's move from the first to the last frame, and it is a square when it fills most of its
bounding box (a disc fills pi / 4).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from .task import BACKGROUNDS, COLOURS, DIRECTIONS, ClipSpec

SHAPE_DISTANCE = 0.35  # RGB distance (values in [0, 1]) from the background that counts as the shape
MIN_MOVE = 0.05  # a centroid moving less than this (in frame sizes) is read as not moving
SQUARE_FILL = 0.89  # bounding-box fill between a disc's 0.785 and a square's 1.0


@dataclass(frozen=True)
class ClipReading:
    """What the frames show; ``None`` where nothing could be read (no shape, no motion)."""

    background: str
    colour: str | None
    shape: str | None
    direction: str | None
    move: tuple[float, float]  # centroid displacement, first to last frame, in frame sizes
    shape_fraction: float  # share of pixels that belong to the shape, averaged over frames

    def matches(self, spec: ClipSpec) -> dict[str, bool]:
        return {key: getattr(self, key) == getattr(spec, key) for key in ("background", "colour", "shape", "direction")}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _nearest(rgb: torch.Tensor, palette: dict[str, tuple[float, float, float]]) -> str:
    names = list(palette)
    distances = (torch.tensor([palette[n] for n in names]) - rgb).norm(dim=1)
    return names[int(distances.argmin())]


def read_clip(video: Any) -> ClipReading:
    """Read a ``(T, H, W, 3)`` uint8 clip (a tensor or a numpy array)."""
    frames = torch.as_tensor(video)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames (T, H, W, 3), got shape {tuple(frames.shape)}.")
    frames = frames.float() / 255.0
    t, h, w, _ = frames.shape
    median = frames[:, ::4, ::4].reshape(-1, 3).median(dim=0).values  # every 16th pixel is plenty
    background = _nearest(median, BACKGROUNDS)
    distance = (frames - median).norm(dim=-1)  # (T, H, W)
    mask = distance > SHAPE_DISTANCE
    fraction = float(mask.float().mean())
    if not mask.any():
        return ClipReading(background, None, None, None, (0.0, 0.0), 0.0)
    colour = _nearest(frames[mask].mean(dim=0), COLOURS)
    ys = torch.arange(h, dtype=torch.float32)[:, None] / h
    xs = torch.arange(w, dtype=torch.float32)[None, :] / w

    def centroid(k: int) -> tuple[float, float] | None:
        weight = mask[k].float()
        total = float(weight.sum())
        return None if total == 0 else (float((weight * xs).sum()) / total, float((weight * ys).sum()) / total)

    first, last = centroid(0), centroid(t - 1)
    direction, move = None, (0.0, 0.0)
    if first is not None and last is not None:
        move = (last[0] - first[0], last[1] - first[1])
        if max(abs(move[0]), abs(move[1])) >= MIN_MOVE:
            direction = max(DIRECTIONS, key=lambda d: DIRECTIONS[d][0] * move[0] + DIRECTIONS[d][1] * move[1])
    return ClipReading(background, colour, _shape(mask), direction, move, fraction)


def _shape(mask: torch.Tensor) -> str | None:
    """Square or circle from the mean bounding-box fill over the frames that show the shape."""
    fills = []
    for frame in mask:
        rows, cols = frame.any(dim=1).nonzero(), frame.any(dim=0).nonzero()
        if len(rows) == 0:
            continue
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        fills.append(float(frame.sum()) / float(box))
    if not fills:
        return None
    return "square" if sum(fills) / len(fills) >= SQUARE_FILL else "circle"
