"""PSNR per frame, over all channels, peak 1 (the reference definition)."""

from __future__ import annotations

import torch

from .fused import FusedKernel, use_fused

PSNR_IDENTICAL = 100.0  # the reference's value when the frames are (almost) identical
_MSE_FLOOR = 1e-10
_EXACT_CHANNELS = 258  # squared uint8 differences of up to this many channels sum exactly in float32


def _squared_error_sums(reference: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
    """Per frame, the sum of squared differences of uint8 frames, exactly: integer squares summed over
    channels in float32 (below 2^24), then over pixels in float64 (below 2^53)."""
    difference = reference.float() - generated.float()
    return (difference * difference).sum(-1).sum((1, 2), dtype=torch.float64)


_squared_error_kernel = FusedKernel(_squared_error_sums)


def psnr_frames(reference: torch.Tensor, generated: torch.Tensor, fused: bool | None = None) -> torch.Tensor:
    """PSNR of each frame pair; frames are ``(N, H, W, C)``, uint8 or float in ``[0, 1]``.

    uint8 frames take an exact path (the sum of squared differences is an exact integer, so only the
    final division rounds), fused on CPU by default (see ``fused.py``). Returns float64 values of
    shape ``(N,)``.
    """
    if reference.shape != generated.shape:
        raise ValueError(f"frame shapes differ: {tuple(reference.shape)} vs {tuple(generated.shape)}")
    count = reference[0].numel()
    if reference.dtype == torch.uint8 and generated.dtype == torch.uint8 and reference.shape[-1] <= _EXACT_CHANNELS:
        sse = _squared_error_kernel(reference, generated) if use_fused(reference, fused) else None
        if sse is None:
            sse = _squared_error_sums(reference, generated)
        mse = sse / (255.0**2 * count)
    else:
        mse = (reference.double() - generated.double()).square_().mean(tuple(range(1, reference.ndim)))
    psnr = 10.0 * torch.log10(1.0 / mse)
    return torch.where(mse < _MSE_FLOOR, torch.full_like(psnr, PSNR_IDENTICAL), psnr)
