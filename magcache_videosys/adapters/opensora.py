"""Open-Sora 1.2 ``STDiT3`` from VideoSys (upstream and the older copy the MagCache repo ships).

The forward runs ``spatial_blocks[i]`` then ``temporal_blocks[i]`` for every depth, so the stack in
execution order is S0 T0 S1 T1 ... The RFLOW sampler passes ``all_timesteps`` (a list built once
per sampling run) to every call: as a keyword upstream, positionally in the older copy. That list
is the run's identity and its length the run's step count.
"""

from __future__ import annotations

import inspect

from torch import nn

from .base import BlockStackAdapter, RunInfo, StackBinding


class STDiT3Adapter(BlockStackAdapter):
    description = "Open-Sora 1.2 STDiT3 (VideoSys OpenSoraPipeline)"
    model_classes = ("STDiT3",)
    pipeline_classes = ("OpenSoraPipeline",)

    def matches(self, module: nn.Module) -> bool:
        return super().matches(module) and hasattr(module, "spatial_blocks") and hasattr(module, "temporal_blocks")

    def bind(self, module: nn.Module) -> StackBinding:
        if len(module.spatial_blocks) != len(module.temporal_blocks) or len(module.spatial_blocks) == 0:
            raise ValueError(
                f"STDiT3 with {len(module.spatial_blocks)} spatial and {len(module.temporal_blocks)} temporal "
                "blocks; the block stack must pair them one to one."
            )
        blocks = [b for pair in zip(module.spatial_blocks, module.temporal_blocks) for b in pair]
        params = list(inspect.signature(module.forward).parameters)
        position = params.index("all_timesteps") if "all_timesteps" in params else None
        depth = len(module.spatial_blocks)

        def run_info(args: tuple, kwargs: dict) -> RunInfo | None:
            valid_depth = kwargs.get("valid_depth")
            if valid_depth is not None and valid_depth != depth:
                raise ValueError(
                    f"STDiT3 called with valid_depth={valid_depth} of {depth}: block-stack caching needs the "
                    "whole stack to run; disable caching for partial-depth calls."
                )
            timesteps = kwargs.get("all_timesteps")
            if timesteps is None and position is not None and len(args) > position:
                timesteps = args[position]
            if timesteps is None:
                return None
            return timesteps, len(timesteps)

        return StackBinding(blocks=blocks, run_info=run_info, hidden_name="x")
