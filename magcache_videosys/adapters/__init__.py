"""Model-family adapters: one file per family, registered here in lookup order.

To support a new model, write a :class:`BlockStackAdapter` subclass in a new file (see
``opensora.py``) and add an instance to ``ADAPTERS`` or call :func:`register_adapter`.
"""

from __future__ import annotations

from torch import nn

from .base import BlockStackAdapter, RunInfo, StackBinding
from .opensora import STDiT3Adapter
from .pixart import PixArtAdapter

ADAPTERS: list[BlockStackAdapter] = [STDiT3Adapter(), PixArtAdapter()]


class UnsupportedModelError(TypeError):
    """The target has no block stack this package knows how to hook."""


def register_adapter(adapter: BlockStackAdapter) -> None:
    """Add an adapter; it is tried before the built-in ones."""
    ADAPTERS.insert(0, adapter)


def supported_models() -> list[str]:
    return [a.description for a in ADAPTERS]


def supported_pipelines() -> list[str]:
    return [name for a in ADAPTERS for name in a.pipeline_classes]


def find_adapter(module: nn.Module) -> BlockStackAdapter:
    for adapter in ADAPTERS:
        if adapter.matches(module):
            return adapter
    raise UnsupportedModelError(
        f"cannot hook a {type(module).__name__}: no adapter for it. Supported models: "
        + "; ".join(supported_models())
        + ". Pass a VideoSys config, engine or pipeline of one of these, or the transformer itself."
    )


__all__ = [
    "ADAPTERS",
    "BlockStackAdapter",
    "RunInfo",
    "StackBinding",
    "UnsupportedModelError",
    "find_adapter",
    "register_adapter",
    "supported_models",
    "supported_pipelines",
]
