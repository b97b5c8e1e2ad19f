"""diffusers ``PixArtTransformer2DModel`` (PixArt-alpha / PixArt-Sigma, the image DiT STDiT grew from).

Its forward runs ``transformer_blocks`` in order with nothing in between. Its calls say nothing
that identifies the sampling run: enabled on a diffusers pipeline (``PixArtAlphaPipeline``), runs
are told apart by the pipeline's scheduler, whose ``set_timesteps`` starts every run, so a run
after an interrupted one gets the whole schedule. On the bare transformer steps are counted per
call and the run length must be given as ``num_steps`` in the caching config; a run interrupted
after k calls leaves the count there, and every later run is then out of step by k calls (its
first ``num_steps - k`` calls finish the old count) until the method is disabled and enabled
again (``tests/test_model_pixart.py``).
"""

from __future__ import annotations

from torch import nn

from .base import ModelFamily, StackBinding


class PixArt(ModelFamily):
    name = "pixart"
    description = "PixArt-alpha/Sigma PixArtTransformer2DModel (diffusers)"
    model_classes = ("PixArtTransformer2DModel",)

    def matches(self, module: nn.Module) -> bool:
        return super().matches(module) and len(getattr(module, "transformer_blocks", ())) > 0

    def bind(self, module: nn.Module) -> StackBinding:
        return StackBinding(blocks=list(module.transformer_blocks), run_info=lambda args, kwargs: None)
