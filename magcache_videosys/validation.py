"""Checks the method configs share, so every knob fails with the same kind of message."""

from __future__ import annotations

import math
from typing import Any, Callable


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
