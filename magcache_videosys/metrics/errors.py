"""The one exception type the evaluation tools raise for problems a user can fix."""

from __future__ import annotations


class MetricsError(RuntimeError):
    """Bad input or missing weights; the message names the problem and the fix.

    Command-line scripts print the message and exit non-zero instead of showing a traceback.
    """
