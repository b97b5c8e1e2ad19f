"""SSIM per frame: per channel, 11x11 Gaussian window (sigma 1.5), 'valid' region, C1 = 0.01^2, C2 = 0.03^2,
averaged over the map and then over the channels (the reference definition, which equals
``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=1)``: skimage filters with reflected borders but then drops the 5-pixel border).

How it is made fast while staying exact to float32 rounding:

* Frames are centred on mid-grey (``a' = a - 127.5`` for uint8) and four maps are filtered:
  ``u = a' + b'``, ``v = a' - b'`` and their squares. SSIM follows from their local means and
  variances alone (``ssim_map_sums``), and centring keeps the variance subtractions well conditioned.
* The 2-D Gaussian is separable: an 11-tap vertical pass, then an 11-tap horizontal one.
* On CPU, two loops fused by ``torch.compile`` do everything (see ``fused.py``): the maps are made
  on the fly from the interleaved uint8 rows in the vertical pass, and the SSIM map is summed as the
  horizontal pass produces it. Eagerly (CUDA, or CPU without a compiler), the passes are depthwise
  convolutions over the maps stored channels-last (the ``(H, W, C)`` layout decoders produce), in
  horizontal strips that bound the working memory.
* Values stay on the 0..255 scale for uint8 input; the constants are scaled instead.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .fused import FusedKernel, use_fused

WINDOW = 11
SIGMA = 1.5
K1, K2 = 0.01, 0.03
_BORDER = WINDOW // 2
# eager path: pixels (over the batch) per strip: cache-sized on CPU, large on GPU where launches cost more
STRIP_PIXELS = {"cpu": 1 << 18, "cuda": 1 << 23}


def gaussian_window(dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """The normalised 1-D Gaussian (``cv2.getGaussianKernel(11, 1.5)``; the 2-D window is its outer product)."""
    x = torch.arange(WINDOW, dtype=torch.float64) - _BORDER
    g = torch.exp(-(x**2) / (2 * SIGMA**2))
    return (g / g.sum()).to(dtype=dtype, device=device)


_TAPS = tuple(gaussian_window(torch.float64).tolist())


def ssim_map_sums(fu: torch.Tensor, fv: torch.Tensor, fuu: torch.Tensor, fvv: torch.Tensor, scale: float):
    """Sum over the last dimension of the SSIM map, from the Gaussian-filtered ``u, v, u^2, v^2``.

    With ``U = mean(a + b)``, ``V = mean(a - b)`` and the variances ``var_u, var_v`` of ``u, v``:
    ``2 mu_a mu_b = (U^2 - V^2) / 2``, ``mu_a^2 + mu_b^2 = (U^2 + V^2) / 2``, ``2 sigma_ab = (var_u -
    var_v) / 2`` and ``sigma_a^2 + sigma_b^2 = (var_u + var_v) / 2``, so the SSIM map is
    ``(U^2 - V^2 + 2 C1)(var_u - var_v + 2 C2) / ((U^2 + V^2 + 2 C1)(var_u + var_v + 2 C2))``.
    The inputs are left alone: in-place steps on them (views of one tensor) would stop inductor fusing
    the formula into one loop; in-place steps on its own temporaries save eager passes.
    Returns float64.
    """
    c1 = 2 * (K1 * scale) ** 2
    c2 = 2 * (K2 * scale) ** 2
    var_u = torch.addcmul(fuu, fu, fu, value=-1)
    var_v = torch.addcmul(fvv, fv, fv, value=-1)
    mean_u2 = (fu + scale).square_()  # u was centred on -scale
    mean_v2 = fv.square()
    numerator = (mean_u2 - mean_v2).add_(c1).mul_((var_u - var_v).add_(c2))
    denominator = mean_u2.add_(mean_v2).add_(c1).mul_(var_u.add_(var_v).add_(c2))
    return numerator.div_(denominator).sum(-1, dtype=torch.float64)


def ssim_frames(
    reference: torch.Tensor,
    generated: torch.Tensor,
    strip_pixels: int | None = None,
    fused: bool | None = None,
) -> torch.Tensor:
    """SSIM of each frame pair; frames are ``(N, H, W, C)``, uint8 or float in ``[0, 1]``.

    Returns float64 values of shape ``(N,)``. ``fused`` picks the fused CPU kernel (default: on CPU,
    see ``fused.py``); the eager path works in horizontal strips of about ``strip_pixels`` pixels over
    the batch. On CUDA, call it with TF32 disabled (the evaluation driver does) or the statistics
    lose about three decimal digits.
    """
    if reference.shape != generated.shape:
        raise ValueError(f"frame shapes differ: {tuple(reference.shape)} vs {tuple(generated.shape)}")
    _, height, width, c = reference.shape
    if height < WINDOW or width < WINDOW:
        raise ValueError(f"SSIM needs frames of at least {WINDOW}x{WINDOW} pixels, got {width}x{height}")
    sums = _fused_sums(reference, generated) if use_fused(reference, fused) else None
    if sums is None:
        sums = _eager_sums(reference, generated, strip_pixels)
    return sums / ((height - 2 * _BORDER) * (width - 2 * _BORDER) * c)  # mean over the map, then the channels


def _value_scale(frames: torch.Tensor) -> float:
    """The peak value: 255 for uint8 frames, 1 for float frames in [0, 1]."""
    return 255.0 if frames.dtype == torch.uint8 else 1.0


# ----- fused (CPU) ------------------------------------------------------------------------------
# Frames stay interleaved, viewed as (N, H, W * C) rows: the vertical pass is per channel as it is,
# and the horizontal one steps C elements per tap. Every channel's map has the same size, so the
# mean over channels of the per-channel means is the mean of the whole interleaved map.


def _taps(maps: torch.Tensor, dim: int, step: int = 1) -> torch.Tensor:
    """'Valid' 11-tap Gaussian along ``dim`` (taps ``step`` apart), as shifted sums for inductor to fuse."""
    size = maps.shape[dim] - 2 * _BORDER * step
    total = maps.narrow(dim, 0, size) * _TAPS[0]
    for k in range(1, WINDOW):
        total = total + maps.narrow(dim, k * step, size) * _TAPS[k]
    return total


def _vertical_pass(reference: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
    """``(N, H, W * C)`` -> ``(N, 4, H - 10, W * C)``: the vertical pass over ``u, v, u^2, v^2``."""
    half = _value_scale(reference) / 2
    a = reference.float() - half
    b = generated.float() - half
    u, v = a + b, a - b
    return _taps(torch.stack([u, v, u * u, v * v], dim=1), 2)


def _horizontal_pass_ssim(vertical: torch.Tensor, scale: float, channels: int) -> torch.Tensor:
    """The horizontal pass and the SSIM map, summed per frame: ``(N,)`` float64."""
    return ssim_map_sums(*_taps(vertical, 3, channels).flatten(2).unbind(1), scale)


# two kernels: inductor would otherwise recompute the vertical pass inside the horizontal one
_vertical_kernel = FusedKernel(_vertical_pass)
_horizontal_kernel = FusedKernel(_horizontal_pass_ssim)


def _fused_sums(reference: torch.Tensor, generated: torch.Tensor) -> torch.Tensor | None:
    """Per frame, the sum of the SSIM map over all channels; None if compiling is unavailable."""
    n, height, width, c = reference.shape
    rows = [frames.reshape(n, height, width * c) for frames in (reference, generated)]
    vertical = _vertical_kernel(*rows)
    if vertical is None:
        return None
    return _horizontal_kernel(vertical, _value_scale(reference), c)


# ----- eager (CUDA, or CPU without a compiler) ------------------------------------------------


@functools.lru_cache(maxsize=8)
def _window(dtype: torch.dtype, device: str) -> torch.Tensor:
    return gaussian_window(dtype, device)


def _separable_blur(maps: torch.Tensor) -> torch.Tensor:
    """'Valid' Gaussian filtering of every channel of a channels-last ``(N, C, H, W)`` tensor."""
    channels = maps.shape[1]
    g = _window(maps.dtype, str(maps.device))
    vertical = g.view(1, 1, WINDOW, 1).expand(channels, 1, WINDOW, 1)
    horizontal = g.view(1, 1, 1, WINDOW).expand(channels, 1, 1, WINDOW)
    return F.conv2d(F.conv2d(maps, vertical, groups=channels), horizontal, groups=channels)


def _eager_sums(reference: torch.Tensor, generated: torch.Tensor, strip_pixels: int | None) -> torch.Tensor:
    """Per frame, the sum of the SSIM map over all channels, strip by strip: ``(N,)`` float64."""
    n, height, width, c = reference.shape
    if strip_pixels is None:
        strip_pixels = STRIP_PIXELS["cuda" if reference.is_cuda else "cpu"]
    out_h = height - 2 * _BORDER
    rows = max(1, strip_pixels // (n * width))
    sums = torch.zeros((c, n), dtype=torch.float64, device=reference.device)
    for top in range(0, out_h, rows):
        bottom = min(top + rows, out_h) + 2 * _BORDER
        sums += _eager_strip_sums(reference[:, top:bottom], generated[:, top:bottom])
    return sums.sum(0)


def _eager_strip_sums(reference: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
    n, height, width, c = reference.shape
    scale = _value_scale(reference)
    a = reference.float().sub_(scale / 2)
    b = generated.float().sub_(scale / 2)
    maps = torch.empty((n, height, width, 4, c), dtype=torch.float32, device=a.device)
    torch.add(a, b, out=maps[..., 0, :])
    torch.sub(a, b, out=maps[..., 1, :])
    torch.mul(maps[..., :2, :], maps[..., :2, :], out=maps[..., 2:, :])
    filtered = _separable_blur(maps.view(n, height, width, 4 * c).permute(0, 3, 1, 2))
    # channels-last (N, H', W', 4, C) -> planes (4, C, N, H' W'), one copy
    planes = filtered.permute(0, 2, 3, 1).reshape(n, -1, 4, c).permute(2, 3, 0, 1).contiguous()
    return ssim_map_sums(*planes.unbind(0), scale)
