"""Checks the method configs share, so every knob fails with the same kind of message."""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any, Callable, Mapping


def is_real(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_int(value: Any) -> bool:
    """An int (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check(value: Any, kind: Callable[[Any], bool], rule: Callable[[Any], bool], message: str) -> None:
    """Raise ``ValueError("<message>, got <value>.")`` unless ``value`` is of ``kind`` and obeys ``rule``."""
    if not (kind(value) and rule(value)):
        raise ValueError(f"{message}, got {value!r}.")


def check_num_steps(value: Any) -> None:
    if value is not None:
        check(value, is_int, lambda v: v >= 2, "num_steps must be None (follow the run) or an int >= 2")


def from_preset(cls: type, presets: Mapping[str, Mapping[str, Any]], name: str, overrides: Mapping[str, Any]) -> Any:
    """``cls`` made from the preset ``name`` with ``overrides``; unknown names and fields are clear errors."""
    method = cls.__name__.removesuffix("Config")
    if name not in presets:
        raise ValueError(f"unknown {method} preset {name!r}; choose one of {', '.join(presets)}.")
    unknown = set(overrides) - {f.name for f in fields(cls) if f.init}
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(sorted(unknown))}.")
    return cls(**{**presets[name], **overrides})
