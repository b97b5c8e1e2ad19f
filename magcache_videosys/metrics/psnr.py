"""PSNR per frame, over all channels, peak 1 (the reference definition)."""

from __future__ import annotations

import torch

PSNR_IDENTICAL = 100.0  # the reference's value when the frames are (almost) identical
_MSE_FLOOR = 1e-10


def psnr_frames(reference: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
    """PSNR of each frame pair; frames are ``(N, H, W, C)``, uint8 or float in ``[0, 1]``.

    uint8 frames take an exact path: integer differences squared in float32 stay exact, and the
    float64 sum of those integers is exact too, so only the final division rounds.
    Returns float64 values of shape ``(N,)``.
    """
    if reference.shape != generated.shape:
        raise ValueError(f"frame shapes differ: {tuple(reference.shape)} vs {tuple(generated.shape)}")
    dims = tuple(range(1, reference.ndim))
    count = reference[0].numel()
    if reference.dtype == torch.uint8 and generated.dtype == torch.uint8:
        sse = reference.float().sub_(generated).square_().sum(dims, dtype=torch.float64)
        mse = sse / (255.0**2 * count)
    else:
        mse = (reference.double() - generated.double()).square_().mean(dims)
    psnr = 10.0 * torch.log10(1.0 / mse)
    return torch.where(mse < _MSE_FLOOR, torch.full_like(psnr, PSNR_IDENTICAL), psnr)
