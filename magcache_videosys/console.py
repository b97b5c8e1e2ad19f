"""What every command-line entry point of the package shares.

- Number types for ``argparse`` that reject ``nan`` and ``inf`` (and out-of-range values) while the
  command line is parsed, before any work starts.
- Output paths checked up front, so a wrong ``--out`` fails in a second, not after an hour.
- One line instead of a traceback on Ctrl-C (exit 130, saying what was kept), and a quiet exit
  when the reader of stdout goes away (``... --json | head``).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable

INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C
BROKEN_PIPE = 141  # 128 + SIGPIPE


# --- argparse types --------------------------------------------------------------------------
def finite_float(text: str) -> float:
    """A float that is not nan or +-inf."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def float_at_least(low: float, exclusive: bool = False) -> Callable[[str], float]:
    """A finite float ``>= low`` (``> low`` with ``exclusive``)."""

    def parse(text: str) -> float:
        value = finite_float(text)
        if value < low or (exclusive and value == low):
            raise argparse.ArgumentTypeError(f"{text} must be {'>' if exclusive else '>='} {low:g}")
        return value

    parse.__name__ = "number"  # what argparse names in "invalid number value"
    return parse


def float_in_range(low: float, high: float) -> Callable[[str], float]:
    """A finite float in ``[low, high)``, such as a fraction of the steps."""

    def parse(text: str) -> float:
        value = finite_float(text)
        if not low <= value < high:
            raise argparse.ArgumentTypeError(f"{text} must be >= {low:g} and < {high:g}")
        return value

    parse.__name__ = "number"
    return parse


def int_at_least(low: int) -> Callable[[str], int]:
    """A whole number ``>= low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{text} must be >= {low}")
        return value

    parse.__name__ = "integer"
    return parse


# --- output paths ----------------------------------------------------------------------------
class OutputPathError(ValueError):
    """An output path that cannot be written; the message names the option, the path and the fix."""


def check_output_file(path: str | os.PathLike, option: str) -> Path:
    """Before any work: ``path`` can be created or replaced as a file.

    Its folder must already exist (a typo must not create folders elsewhere, such as at the file
    system root) and be writable, and ``path`` must not be a folder.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{option} {path} is a folder; give a file name, e.g. {path / 'out'}")
    folder = path.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise OutputPathError(f"{option} {path}: the folder {folder} {what}; create it first or choose another path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputPathError(f"{option} {path}: the folder {folder} is not writable; choose another path")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputPathError(f"{option} {path} exists and is not writable; choose another path")
    return path


def check_output_folder(path: str | os.PathLike, option: str) -> Path:
    """Before any work: ``path`` is a folder, or can be made one under a writable existing folder.

    Writability is tried, not inferred from permissions: a uniquely named folder is made in the
    nearest existing one and removed at once, so nothing is left behind."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{option} {path} is a file; give a folder")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise OutputPathError(f"{option} {path}: {probe} is a file, so no folder can be made there")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".magcache-write-test-", dir=probe))
    except OSError as exc:
        raise OutputPathError(
            f"{option} {path}: {probe} is not writable ({exc.strerror or exc}); choose another {option} or fix its "
            "permissions"
        ) from None
    return path


# --- entry points ----------------------------------------------------------------------------
def run_command(main: Callable[[], int | None], name: str, on_interrupt: Callable[[], str] | None = None) -> int:
    """Run a command's ``main``; Ctrl-C prints one line (``on_interrupt()`` says what was kept and
    how to resume) and returns 130, a closed stdout returns 141 without a traceback."""
    try:
        status = main() or 0
        sys.stdout.flush()  # buffered output meets a closed pipe here, not at interpreter exit
        return status
    except KeyboardInterrupt:
        kept = ""
        if on_interrupt is not None:
            try:
                kept = " " + on_interrupt()
            except Exception:  # the interrupt may have left the state half built; say what is sure
                kept = ""
        print(f"\n{name}: interrupted (Ctrl-C).{kept}", file=sys.stderr, flush=True)
        return INTERRUPTED
    except BrokenPipeError:
        # The reader closed the pipe: send the rest of the output nowhere and stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return BROKEN_PIPE
