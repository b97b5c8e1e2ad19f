"""The test bed's synthetic text-to-video task: one shape moving on a plain background.

A prompt names four things, ``"a {colour} {shape} moves {direction} on a {background} background"``;
the clip shows exactly that. Colours of shapes are saturated hues and backgrounds are achromatic,
so the two vocabularies never overlap and each can be read back from pixels (``probe.py``). The
shape's size, start position and position across the motion are drawn from a seeded generator;
it moves at constant speed and stays inside the frame. Clips are rendered in pixels, values in
[-1, 1] as Open-Sora's VAE expects, and every prompt has the same number of words (VideoSys's CPU
cross-attention needs equal caption lengths within a batch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "yellow": (1.0, 1.0, 0.0),
    "magenta": (1.0, 0.0, 1.0),
    "cyan": (0.0, 1.0, 1.0),
}
BACKGROUNDS: dict[str, tuple[float, float, float]] = {
    "black": (0.0, 0.0, 0.0),
    "gray": (0.5, 0.5, 0.5),
    "white": (1.0, 1.0, 1.0),
}
SHAPES = ("circle", "square")
# Unit vectors in image coordinates (x to the right, y downwards).
DIRECTIONS: dict[str, tuple[float, float]] = {
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
}

# Geometry in frame sizes (x across the width, y down the height); ranges are drawn uniformly.
TRAVEL = 0.5  # distance the centre moves over the whole clip
START = (0.22, 0.28)  # where the centre starts along the motion, from the edge it moves away from
ACROSS = (0.45, 0.55)  # the centre's position across the motion
RADIUS = (0.16, 0.19)  # radius of a circle, half the side of a square
TEMPLATE = "a {colour} {shape} moves {direction} on a {background} background"
# Every word a prompt can hold: the template's fixed words, then the four choices.
VOCABULARY = tuple(
    dict.fromkeys(
        [*TEMPLATE.format(colour="", shape="", direction="", background="").split(), *COLOURS, *SHAPES]
        + [*DIRECTIONS, *BACKGROUNDS]
    )
)


@dataclass(frozen=True)
class ClipSpec:
    """One clip: what the prompt names plus where the shape starts (centre, in frame sizes)."""

    colour: str
    shape: str
    direction: str
    background: str
    x: float = 0.5
    y: float = 0.5
    radius: float = 0.17

    def __post_init__(self) -> None:
        for value, known, what in (
            (self.colour, COLOURS, "colour"),
            (self.shape, SHAPES, "shape"),
            (self.direction, DIRECTIONS, "direction"),
            (self.background, BACKGROUNDS, "background"),
        ):
            if value not in known:
                raise ValueError(f"unknown {what} {value!r}; the task knows {', '.join(known)}.")

    @property
    def prompt(self) -> str:
        return TEMPLATE.format(
            colour=self.colour, shape=self.shape, direction=self.direction, background=self.background
        )

    def centre(self, progress: float) -> tuple[float, float]:
        """The centre after ``progress`` (0 at the first frame, 1 at the last) of the motion."""
        dx, dy = DIRECTIONS[self.direction]
        return self.x + TRAVEL * progress * dx, self.y + TRAVEL * progress * dy


def all_prompts() -> list[str]:
    """Every prompt of the task (6 colours x 2 shapes x 4 directions x 3 backgrounds = 144)."""
    return [
        TEMPLATE.format(colour=c, shape=s, direction=d, background=b)
        for c in COLOURS
        for s in SHAPES
        for d in DIRECTIONS
        for b in BACKGROUNDS
    ]


def parse_prompt(prompt: str) -> ClipSpec:
    """The spec a prompt names (start position at the default); the inverse of ``ClipSpec.prompt``."""
    words = prompt.lower().strip().rstrip(".").split()
    template = TEMPLATE.split()
    slots = {}
    if len(words) == len(template):
        for word, slot in zip(words, template):
            if slot.startswith("{"):
                slots[slot[1:-1]] = word
            elif word != slot:
                break
        else:
            return ClipSpec(**slots)
    raise ValueError(f"{prompt!r} is not a test-bed prompt; write it as {TEMPLATE!r}.")


def sample_specs(n: int, generator: torch.Generator) -> list[ClipSpec]:
    """``n`` random clips: uniform over the prompt's four choices, start and size inside the frame."""

    def pick(options) -> str:
        options = list(options)
        return options[int(torch.randint(len(options), (1,), generator=generator))]

    def uniform(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=generator))

    specs = []
    for _ in range(n):
        colour, shape, direction, background = pick(COLOURS), pick(SHAPES), pick(DIRECTIONS), pick(BACKGROUNDS)
        dx, dy = DIRECTIONS[direction]
        across, start = uniform(*ACROSS), uniform(*START)
        along = start if dx + dy > 0 else 1.0 - start
        x, y = (along, across) if dx else (across, along)
        specs.append(ClipSpec(colour, shape, direction, background, x, y, uniform(*RADIUS)))
    return specs


def _coverage(specs: Sequence[ClipSpec], num_frames: int, height: int, width: int, frames: Sequence[int] | None):
    """Which pixels each shape covers, ``(B, F, H, W)`` bool, and the shape and background colours."""
    frames = list(range(num_frames)) if frames is None else list(frames)
    progress = torch.tensor(frames, dtype=torch.float32) / max(1, num_frames - 1)
    step = torch.tensor([DIRECTIONS[s.direction] for s in specs])  # (B, 2)
    start = torch.tensor([(s.x, s.y) for s in specs])
    centre = start[:, None, :] + TRAVEL * progress[None, :, None] * step[:, None, :]  # (B, F, 2)
    centre = centre * torch.tensor([float(width), float(height)])  # in pixels
    radius = torch.tensor([s.radius for s in specs])[:, None, None, None] * float(min(height, width))
    off_x = ((torch.arange(width) + 0.5)[None, None, None, :] - centre[..., 0, None, None]).abs()
    off_y = ((torch.arange(height) + 0.5)[None, None, :, None] - centre[..., 1, None, None]).abs()
    is_circle = torch.tensor([s.shape == "circle" for s in specs])[:, None, None, None]
    # A disc is a ball in the 2-norm, a square one in the max-norm.
    reach = torch.where(is_circle, off_x.square() + off_y.square(), torch.maximum(off_x, off_y).square())
    inside = reach <= radius.square()
    colour = torch.tensor([COLOURS[s.colour] for s in specs]) * 2.0 - 1.0  # (B, 3) in [-1, 1]
    background = torch.tensor([BACKGROUNDS[s.background] for s in specs]) * 2.0 - 1.0
    return inside, colour, background


def render_clips(
    specs: Sequence[ClipSpec], num_frames: int, height: int, width: int, frames: Sequence[int] | None = None
) -> torch.Tensor:
    """Videos ``(B, 3, T, H, W)`` in [-1, 1], hard-edged; ``frames`` picks which of the ``num_frames``
    to render (all by default)."""
    inside, colour, background = _coverage(specs, num_frames, height, width, frames)
    return torch.where(inside[:, None], colour[:, :, None, None, None], background[:, :, None, None, None])


def render_cell_means(
    specs: Sequence[ClipSpec], num_frames: int, height: int, width: int, cell: int, frames: Sequence[int] | None = None
) -> torch.Tensor:
    """The mean colour of each ``cell x cell`` block of :func:`render_clips`'s frames, ``(B, 3, T, H / cell,
    W / cell)``, computed from the shape's coverage of each block (a third of the work, same values)."""
    inside, colour, background = _coverage(specs, num_frames, height, width, frames)
    b, f, h, w = inside.shape
    cover = F.avg_pool2d(inside.reshape(b * f, 1, h, w).float(), cell).reshape(b, 1, f, h // cell, w // cell)
    background = background[:, :, None, None, None]
    return background + cover * (colour[:, :, None, None, None] - background)
