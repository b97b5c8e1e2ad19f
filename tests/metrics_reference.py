"""Straightforward implementations of the reference metric definitions, to compare ours with."""

from __future__ import annotations

import math

import numpy as np
from skimage.metrics import structural_similarity


def straightforward_psnr(ref: np.ndarray, gen: np.ndarray) -> list[float]:
    """Per frame of uint8 videos: peak 1, 100 below the reference's MSE floor."""
    values = []
    for a, b in zip(ref, gen):
        mse = np.mean((a.astype(np.float64) / 255.0 - b.astype(np.float64) / 255.0) ** 2)
        values.append(100.0 if mse < 1e-10 else 20 * math.log10(1 / math.sqrt(mse)))
    return values


def skimage_ssim(ref: np.ndarray, gen: np.ndarray) -> list[float]:
    """Per frame of uint8 videos: Gaussian window, sigma 1.5, population covariance, range 1."""
    return [
        structural_similarity(
            a / 255.0,
            b / 255.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
            channel_axis=2,
        )
        for a, b in zip(ref, gen)
    ]
