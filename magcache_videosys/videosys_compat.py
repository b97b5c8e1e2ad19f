"""Importing VideoSys, which is on no package index, with a clear message when it is missing.

It also covers one CPU-only wrinkle: with a CPU torch wheel newer than any matching torchvision
build, ``import torchvision`` fails registering its compiled ops and recent torchvision has no
``torchvision.io.write_video``; VideoSys imports both at module level but needs neither to run.

And it keeps the user's console for the user: VideoSys's import warns about timm's module layout and
(without CUDA) about Vchitect's autocast, and its models log INFO lines on the root logger (no Apex,
the parallel manager's sizes) on every generation. Unless asked to be verbose, the first import
silences exactly those, once; warnings and errors still show.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
import types
import warnings
from pathlib import Path
from typing import Any

# (category, start of the message) of the warnings VideoSys's import triggers that say nothing to a user
IMPORT_NOISE = (
    (FutureWarning, "Importing from timm.models.layers is deprecated"),
    (UserWarning, "CUDA is not available or torch_xla is imported. Disabling autocast."),
)

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


class _QuietVideoSysInfo(logging.Filter):
    """Drops records below WARNING that code inside the VideoSys package logs."""

    def __init__(self, package_dir: str) -> None:
        super().__init__()
        self.package_dir = package_dir

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not record.pathname.startswith(self.package_dir)


def _silence_info(package_dir: str) -> None:
    """VideoSys logs through the root logger (upstream) or its own (the MagCache copy); logger-level
    filters survive the handler resets VideoSys does while it runs."""
    names = [""] + [name for name in logging.Logger.manager.loggerDict if name.split(".")[0] == "videosys"]
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _QuietVideoSysInfo) for f in logger.filters):
            logger.addFilter(_QuietVideoSysInfo(package_dir))


def import_videosys(verbose: bool = False) -> types.ModuleType:
    """``import videosys``, or an ImportError that says how to install it. The first import silences
    VideoSys's known noise unless ``verbose``."""
    if not videosys_available():
        raise ImportError(INSTALL_HINT)
    if "videosys" in sys.modules:
        return sys.modules["videosys"]
    _patch_torchvision()
    if verbose:
        return importlib.import_module("videosys")
    package_dir = str(Path(importlib.util.find_spec("videosys").origin).parent)
    _silence_info(package_dir)  # the root logger: VideoSys logs while it is imported
    with warnings.catch_warnings():
        for category, message in IMPORT_NOISE:
            warnings.filterwarnings("ignore", message=message, category=category)
        module = importlib.import_module("videosys")
    _silence_info(package_dir)  # the loggers the import created
    return module


def videosys_version() -> str:
    """The installed VideoSys's version, or where its source checkout is (a copy on the path)."""
    from importlib import metadata

    try:
        return metadata.version("videosys")
    except metadata.PackageNotFoundError:
        spec = importlib.util.find_spec("videosys")
        if spec is None or not spec.submodule_search_locations:
            return "not installed"
        return f"source checkout at {list(spec.submodule_search_locations)[0]}"
