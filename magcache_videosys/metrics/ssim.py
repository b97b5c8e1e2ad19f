"""SSIM per frame: per channel, 11x11 Gaussian window (sigma 1.5), 'valid' region, C1 = 0.01^2, C2 = 0.03^2,
averaged over the map and then over the channels (the reference definition, which equals
``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=1)``: skimage filters with reflected borders but then drops the 5-pixel border).

How it is made fast while staying exact to float32 rounding:

* Frames are centred on mid-grey (``a' = a - 127.5`` for uint8) and four maps are filtered: ``u = a' + b'``, ``v = a' - b'``
  and their squares. Both means and all three second moments are linear in those four filtered
  maps, and centring keeps the variance subtractions well conditioned.
* The 2-D Gaussian is separable: two 11-tap depthwise convolutions over the four maps x channels
  stored channels-last, which is the ``(H, W, C)`` layout decoders produce.
* One small matrix product turns the channels-last filter output into planes of the means and
  second moments; the rest is a few in-place products on those planes.
* Values stay on the 0..255 scale for uint8 input; the constants are scaled instead.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

WINDOW = 11
SIGMA = 1.5
K1, K2 = 0.01, 0.03
_BORDER = WINDOW // 2
# pixels (over the batch) per strip: cache-sized on CPU, large on GPU where launches cost more
STRIP_PIXELS = {"cpu": 1 << 18, "cuda": 1 << 23}


def gaussian_window(dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """The normalised 1-D Gaussian (``cv2.getGaussianKernel(11, 1.5)``; the 2-D window is its outer product)."""
    x = torch.arange(WINDOW, dtype=torch.float64) - _BORDER
    g = torch.exp(-(x**2) / (2 * SIGMA**2))
    return (g / g.sum()).to(dtype=dtype, device=device)


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


@functools.lru_cache(maxsize=8)
def _moments_matrix(channels: int, device: str) -> torch.Tensor:
    """Rows give, per channel, mu_a', mu_b', 2 E[a'b'] and E[a'^2 + b'^2] from the filtered
    (u, v, u^2, v^2) channels: a' = (u + v) / 2, b' = (u - v) / 2, a'b' = (u^2 - v^2) / 4."""
    eye = torch.eye(channels, dtype=torch.float64)
    zero = torch.zeros_like(eye)
    rows = [
        [eye / 2, eye / 2, zero, zero],
        [eye / 2, -eye / 2, zero, zero],
        [zero, zero, eye / 2, -eye / 2],
        [zero, zero, eye / 2, eye / 2],
    ]
    return torch.cat([torch.cat(row, dim=1) for row in rows]).float().to(device)


def ssim_frames(reference: torch.Tensor, generated: torch.Tensor, strip_pixels: int | None = None) -> torch.Tensor:
    """SSIM of each frame pair; frames are ``(N, H, W, C)``, uint8 or float in ``[0, 1]``.

    Frames are processed in horizontal strips (overlapping by the window) of about
    ``strip_pixels`` pixels over the batch, which bounds the working memory: on CPU the default
    keeps every buffer cache-sized and below glibc's mmap threshold. Returns float64 values of
    shape ``(N,)``. On CUDA, call it with TF32 disabled (the evaluation driver does) or the
    statistics lose about three decimal digits.
    """
    if reference.shape != generated.shape:
        raise ValueError(f"frame shapes differ: {tuple(reference.shape)} vs {tuple(generated.shape)}")
    n, height, width, c = reference.shape
    if height < WINDOW or width < WINDOW:
        raise ValueError(f"SSIM needs frames of at least {WINDOW}x{WINDOW} pixels, got {width}x{height}")
    if strip_pixels is None:
        strip_pixels = STRIP_PIXELS["cuda" if reference.is_cuda else "cpu"]
    out_h, out_w = height - 2 * _BORDER, width - 2 * _BORDER
    rows = max(1, strip_pixels // (n * width))
    sums = torch.zeros((c, n), dtype=torch.float64, device=reference.device)
    for top in range(0, out_h, rows):
        bottom = min(top + rows, out_h) + 2 * _BORDER
        sums += _ssim_sums(reference[:, top:bottom], generated[:, top:bottom])
    return (sums / (out_h * out_w)).mean(0)


def _ssim_sums(reference: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
    """Per channel and frame, the sum of the SSIM map over the valid region; ``(C, N)`` float64."""
    n, height, width, c = reference.shape
    scale = 255.0 if reference.dtype == torch.uint8 else 1.0
    a = reference.float().sub_(scale / 2)
    b = generated.float().sub_(scale / 2)

    maps = torch.empty((n, height, width, 4, c), dtype=torch.float32, device=a.device)
    torch.add(a, b, out=maps[..., 0, :])
    torch.sub(a, b, out=maps[..., 1, :])
    torch.mul(maps[..., :2, :], maps[..., :2, :], out=maps[..., 2:, :])
    stats = _separable_blur(maps.view(n, height, width, 4 * c).permute(0, 3, 1, 2))
    filtered = stats.permute(0, 2, 3, 1).reshape(-1, 4 * c)  # a view: the convolutions keep channels-last
    moments = torch.mm(_moments_matrix(c, str(filtered.device)), filtered.t())
    mu_a, mu_b, cov2, var_sum = moments.view(4, c, n, -1).unbind(0)

    c1 = (K1 * scale) ** 2
    c2 = (K2 * scale) ** 2
    cov2.addcmul_(mu_a, mu_b, value=-2).add_(c2)  # 2 sigma_ab + C2
    var_sum.addcmul_(mu_a, mu_a, value=-1).addcmul_(mu_b, mu_b, value=-1).add_(c2)  # sigma_a^2 + sigma_b^2 + C2
    mu_a.add_(scale / 2)  # undo the centring: the mean terms need the true means
    mu_b.add_(scale / 2)
    means2 = torch.mul(mu_a, mu_b).mul_(2).add_(c1)  # 2 mu_a mu_b + C1
    squares = mu_a.square_().addcmul_(mu_b, mu_b).add_(c1)  # mu_a^2 + mu_b^2 + C1
    ssim_map = means2.mul_(cov2).div_(squares.mul_(var_sum))
    return ssim_map.sum(-1, dtype=torch.float64)
