"""The caching methods' settings as command-line options, defined once for every command.

``schedule``/``sweep`` and ``experiments/<model>.py --method magcache`` take the same knobs with the
same flags, checks (finite, in range, at parse time) and help; each knob names the config field it
sets.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from .console import float_at_least, float_in_range, int_at_least

RATIO_POWER_HELP = (
    "exponent applied to the ratios (default: the table's own ratio_power, 0.5 for opensora-v1.2 and 1 for "
    "a table that states none; the run uses the same)"
)


@dataclass(frozen=True)
class Knob:
    """One method setting: ``--flag`` on the command line, ``field`` in the method's config."""

    name: str  # the attribute argparse stores it under
    flag: str
    field: str
    parse: Callable[[str], Any]
    help: str


KNOBS: dict[str, Knob] = {
    knob.name: knob
    for knob in (
        Knob(
            "threshold",
            "--threshold",
            "threshold",
            float_at_least(0.0),
            "skip while the accumulated error stays at or below this (TeaCache: below); >= 0",
        ),
        Knob("K", "--K", "max_skip_steps", int_at_least(0), "most consecutive skipped steps (max_skip_steps); >= 0"),
        Knob(
            "retention_ratio",
            "--retention-ratio",
            "retention_ratio",
            float_in_range(0.0, 1.0),
            "leading fraction of steps always computed, in [0, 1)",
        ),
        Knob("mag_ratios", "--mag-ratios", "mag_ratios", str, "ratio table: a shipped name or a table file"),
        Knob("ratio_power", "--ratio-power", "ratio_power", float_at_least(0.0, exclusive=True), RATIO_POWER_HELP),
        Knob(
            "schedule",
            "--schedule",
            "schedule",
            str,
            "a static schedule file (JSON: the skip mask; `magcache-videosys search` writes one)",
        ),
        Knob(
            "coefficients",
            "--coefficients",
            "coefficients",
            str,
            "TeaCache's rescaling polynomial: a shipped name, e.g. opensora-v1.2 or opensora-testbed",
        ),
    )
}


def add_knob_options(parser: argparse.ArgumentParser | Any, names: Iterable[str]) -> None:
    """Add the named knobs to ``parser`` (or an argument group), each defaulting to None (not given)."""
    for name in names:
        knob = KNOBS[name]
        parser.add_argument(knob.flag, dest=knob.name, type=knob.parse, default=None, help=knob.help)
