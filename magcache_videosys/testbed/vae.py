"""The test bed's latent space: a fixed linear colour code on a 16x coarser grid, no learned weights.

Encoding a video ``(B, 3, T, H, W)`` in [-1, 1]:
1. time, as Open-Sora's causal VAE: the first frame is repeated in front up to a multiple of 4,
   then every 4th frame is kept (17 frames -> 5 latent frames, taken at frames 0, 1, 5, 9, 13);
2. space: the mean over each 16 x 16 pixel cell (192 x 192 -> 12 x 12);
3. colour: ``z = M @ rgb`` with ``M`` the first three columns of the 4 x 4 Hadamard matrix / 2, so
   each of the 4 latent channels mixes all three colours and ``M.T @ M`` is the identity.

Decoding is the reverse: ``rgb = M.T @ z`` (the fourth, unused direction of the latent space is
dropped), bilinear upsampling by 16, each latent frame repeated 4 times and the front padding cut.
A plain frame comes back exactly; a shape comes back with soft edges, which is all a viewer needs to
see the shape, its colour and where it goes.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

TIME_FACTOR = 4
SPACE_FACTOR = 16
LATENT_CHANNELS = 4


def colour_code() -> torch.Tensor:
    """``M`` (4 x 3): latent channels from RGB; orthonormal columns."""
    return torch.tensor([[1.0, 1.0, 1.0], [1.0, -1.0, 1.0], [1.0, 1.0, -1.0], [1.0, -1.0, -1.0]]) / 2.0


class LinearVideoVAE(nn.Module):
    """The decoder and encoder ``OpenSoraPipeline`` calls, as the module docstring describes."""

    time_factor = TIME_FACTOR
    space_factor = SPACE_FACTOR
    out_channels = LATENT_CHANNELS

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("code", colour_code(), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.code.device

    @property
    def dtype(self) -> torch.dtype:
        return self.code.dtype

    def _time_padding(self, num_frames: int) -> int:
        return -num_frames % self.time_factor

    def get_latent_size(self, input_size: Any) -> list:
        """``[T, H, W]`` of the latent for a video of ``input_size`` frames, height and width."""
        t, h, w = input_size
        t = None if t is None else (t + self._time_padding(t)) // self.time_factor
        h = None if h is None else h // self.space_factor
        w = None if w is None else w // self.space_factor
        return [t, h, w]

    def frame_indices(self, num_frames: int) -> list[int]:
        """The frames encoding keeps: every 4th after front padding with the first (17 -> 0, 1, 5, 9, 13)."""
        pad = self._time_padding(num_frames)
        return [max(0, i - pad) for i in range(0, num_frames + pad, self.time_factor)]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Videos ``(B, 3, T, H, W)`` in [-1, 1] to latents ``(B, 4, T', H / 16, W / 16)``."""
        return self.encode_frames(x[:, :, self.frame_indices(x.shape[2])])

    def encode_frames(self, x: torch.Tensor) -> torch.Tensor:
        """The kept frames ``(B, 3, T', H, W)`` to latents: cell means, then the colour code."""
        b, c, t, h, w = x.shape
        cells = F.avg_pool2d(x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w), self.space_factor)
        return self.encode_cells(cells.reshape(b, t, c, *cells.shape[2:]).permute(0, 2, 1, 3, 4))

    def encode_cells(self, cells: torch.Tensor) -> torch.Tensor:
        """Mean colours of the 16 x 16 cells ``(B, 3, T', h, w)`` to latents: the colour code alone."""
        return torch.einsum("lc,bcthw->blthw", self.code.to(cells.dtype), cells)

    def decode(self, z: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        """Latents to videos in (about) [-1, 1]; ``num_frames`` cuts the front padding as encoding added it."""
        b, _, t, h, w = z.shape
        latents = z.permute(0, 2, 1, 3, 4).reshape(b * t, -1, h, w)
        rgb = torch.einsum("lc,nlhw->nchw", self.code.to(latents.dtype), latents)
        rgb = F.interpolate(rgb, scale_factor=self.space_factor, mode="bilinear", align_corners=False)
        video = rgb.reshape(b, t, *rgb.shape[1:]).permute(0, 2, 1, 3, 4)
        video = video.repeat_interleave(self.time_factor, dim=2)
        if num_frames is not None:
            video = video[:, :, self._time_padding(num_frames) :][:, :, :num_frames]
        return video

    def forward(self, z: torch.Tensor, decode_only: bool = True, num_frames: int | None = None) -> torch.Tensor:
        if not decode_only:
            raise NotImplementedError("LinearVideoVAE.forward only decodes; OpenSoraPipeline passes decode_only=True.")
        return self.decode(z, num_frames)
