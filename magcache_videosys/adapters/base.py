"""What a caching method needs to know about a model family, and nothing about the method."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

# (run key, number of steps): the key is an object that stays the same for every call of one
# sampling run and changes with the next run; None when the call does not reveal its run.
RunInfo = tuple[Any, int]


@dataclass
class StackBinding:
    """One model instance's block stack, ready to hook.

    ``blocks`` are in execution order: the residual is the last block's output minus the first
    block's input, and nothing may run between consecutive blocks.
    """

    blocks: Sequence[nn.Module]
    run_info: Callable[[tuple, dict], RunInfo | None]
    hidden_name: str = "hidden_states"
    #: The first block's timestep-modulated input, from that block's call arguments (TeaCache's
    #: signal); None where the adapter does not know how the block modulates its input.
    modulated_input: Callable[[tuple, dict], torch.Tensor] | None = None
    #: Sums a small tensor in place over the ranks that split one model call between them
    #: (sequence or CFG parallelism), so data-dependent decisions agree on every rank.
    all_reduce: Callable[[torch.Tensor], None] | None = None

    def hidden(self, args: tuple, kwargs: dict) -> torch.Tensor:
        """The running activation a block was called with."""
        return args[0] if args else kwargs[self.hidden_name]


class BlockStackAdapter:
    """Base class of a model-family adapter; subclasses live one per file in this folder."""

    #: Human-readable name used in error messages and the README table.
    description: str = ""
    #: Class names of the models this adapter hooks.
    model_classes: tuple[str, ...] = ()
    #: Class names of the VideoSys pipelines whose ``transformer`` this adapter hooks.
    pipeline_classes: tuple[str, ...] = ()

    def matches(self, module: nn.Module) -> bool:
        return type(module).__name__ in self.model_classes

    def bind(self, module: nn.Module) -> StackBinding:
        raise NotImplementedError
