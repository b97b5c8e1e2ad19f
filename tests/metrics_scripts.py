"""Running the evaluation scripts as a user does, against this checkout's package."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def script_env(**extra: str) -> dict[str, str]:
    """The environment with this checkout first on the path: ``python eval/...`` puts only the script's
    own folder there, so an installed copy of the package would be imported instead."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}


def run_script(*args: str, env: dict[str, str] | None = None, **options) -> subprocess.CompletedProcess:
    """``python ARGS...`` from the repository root; output captured as text."""
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, env=script_env(**(env or {})), **options
    )
