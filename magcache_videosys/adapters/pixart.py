"""diffusers ``PixArtTransformer2DModel`` (PixArt-alpha / PixArt-Sigma, the image DiT STDiT grew from).

Its forward runs ``transformer_blocks`` in order with nothing in between. A diffusers pipeline
passes nothing that identifies the sampling run, so steps are counted per call and the run length
must be given as ``num_steps`` in the caching config.
"""

from __future__ import annotations

from torch import nn

from .base import BlockStackAdapter, StackBinding


class PixArtAdapter(BlockStackAdapter):
    description = "PixArt-alpha/Sigma PixArtTransformer2DModel (diffusers; steps counted, needs num_steps)"
    model_classes = ("PixArtTransformer2DModel",)

    def matches(self, module: nn.Module) -> bool:
        return super().matches(module) and len(getattr(module, "transformer_blocks", ())) > 0

    def bind(self, module: nn.Module) -> StackBinding:
        return StackBinding(blocks=list(module.transformer_blocks), run_info=lambda args, kwargs: None)
