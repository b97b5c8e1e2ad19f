"""The exception the evaluation tools raise for problems a user can fix, and the warning for input that
can be evaluated but is probably not what was meant."""

from __future__ import annotations


class MetricsError(RuntimeError):
    """Bad input or missing weights; the message names the problem and the fix.

    Command-line scripts print the message and exit non-zero instead of showing a traceback.
    """


class MetricsWarning(UserWarning):
    """Input that is evaluated by the reference definitions but looks like a mistake (another frame count,
    size or frame rate than the reference, a folder compared with itself); the message says what was done."""
