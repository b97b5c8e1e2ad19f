"""Model families: everything the package knows about one family lives in one file here.

Lookup goes through ``FAMILIES`` in order. To support a new model, write a :class:`ModelFamily`
subclass in a new file (``opensora.py`` is the fullest example) and add an instance to
``FAMILIES``, or call :func:`register_family` from your own code.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .base import ModelFamily, RunInfo, StackBinding
from .cogvideox import CogVideoX
from .latte import Latte
from .opensora import OpenSora
from .opensora_plan import OpenSoraPlan
from .pixart import PixArt
from .vchitect import Vchitect

FAMILIES: list[ModelFamily] = [OpenSora(), OpenSoraPlan(), Latte(), CogVideoX(), Vchitect(), PixArt()]


class UnsupportedModelError(TypeError):
    """The target has no block stack this package knows how to hook."""


def register_family(family: ModelFamily) -> None:
    """Add a family; it is tried before the built-in ones."""
    FAMILIES.insert(0, family)


def supported_models() -> list[str]:
    return [f.description for f in FAMILIES]


def supported_pipelines() -> list[str]:
    return [name for f in FAMILIES for name in f.pipeline_classes]


def find_family(module: nn.Module) -> ModelFamily:
    """The family whose transformer ``module`` is."""
    for family in FAMILIES:
        if family.matches(module):
            return family
    raise UnsupportedModelError(
        f"cannot hook a {type(module).__name__}: no model family knows it. Supported models: "
        + "; ".join(supported_models())
        + ". Pass a VideoSys config, engine or pipeline of one of these, or the transformer itself."
    )


def family_named(name: str, generating: bool = False) -> ModelFamily:
    """The family called ``name`` (``--model NAME``); with ``generating``, one the package can
    generate with."""
    known = [f for f in FAMILIES if f.generation is not None or not generating]
    for family in known:
        if family.name == name:
            return family
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(f.name for f in known)}.")


def family_of_pipeline(pipeline_cls: Any) -> ModelFamily:
    """The family whose VideoSys pipeline class this is (a class or its name)."""
    name = pipeline_cls if isinstance(pipeline_cls, str) else getattr(pipeline_cls, "__name__", "")
    for family in FAMILIES:
        if name in family.pipeline_classes:
            return family
    raise UnsupportedModelError(
        f"{name!r} is not a supported VideoSys pipeline; supported: {', '.join(supported_pipelines())}."
    )


def teacache_coefficients() -> dict[str, tuple[float, ...]]:
    """Every family's published TeaCache polynomials, by name."""
    return {name: c for f in FAMILIES for name, c in f.teacache_coefficients.items()}


def magcache_presets() -> dict[str, dict[str, Any]]:
    """Every family's MagCache presets, by name."""
    return {name: p for f in FAMILIES for name, p in f.magcache_presets.items()}


__all__ = [
    "FAMILIES",
    "ModelFamily",
    "RunInfo",
    "StackBinding",
    "UnsupportedModelError",
    "family_named",
    "family_of_pipeline",
    "find_family",
    "magcache_presets",
    "register_family",
    "supported_models",
    "supported_pipelines",
    "teacache_coefficients",
]
