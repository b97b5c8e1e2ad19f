"""Importing VideoSys, which is on no package index, with a clear message when it is missing.

It also covers one CPU-only wrinkle: with a CPU torch wheel newer than any matching torchvision
build, ``import torchvision`` fails registering its compiled ops and recent torchvision has no
``torchvision.io.write_video``; VideoSys imports both at module level but needs neither to run.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

INSTALL_HINT = (
    "VideoSys is not installed. It is not on PyPI: clone https://github.com/NUS-HPC-AI-Lab/VideoSys "
    "(or the MagCache repository's copy) and `pip install -e <clone> --no-deps` with the versions the "
    "README lists."
)


def videosys_available() -> bool:
    return importlib.util.find_spec("videosys") is not None


def _patch_torchvision() -> None:
    try:
        import torchvision  # noqa: F401
    except RuntimeError as exc:
        if "torchvision::" not in str(exc):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        # The failing module only registers fake-tensor kernels of ops this CPU build lacks.
        sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")
        import torchvision  # noqa: F401
    except ImportError:
        return
    import torchvision.io

    if not hasattr(torchvision.io, "write_video"):
        torchvision.io.write_video = _write_video


def _write_video(filename: str, video_array: Any, fps: float, video_codec: str = "libx264", **_: Any) -> None:
    """``torchvision.io.write_video`` for torchvision releases that dropped it (frames T,H,W,C uint8)."""
    import imageio

    frames = video_array.cpu().numpy() if hasattr(video_array, "cpu") else video_array
    imageio.mimwrite(filename, list(frames), fps=fps, codec="libx264" if video_codec == "h264" else video_codec)


def import_videosys() -> types.ModuleType:
    """``import videosys``, or an ImportError that says how to install it."""
    if not videosys_available():
        raise ImportError(INSTALL_HINT)
    _patch_torchvision()
    return importlib.import_module("videosys")
