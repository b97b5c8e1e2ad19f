"""Writing a generated video as VideoSys's ``save_video`` does, and checking the file before it counts.

VideoSys saves with ``imageio.mimwrite(path, frames, fps=24)``: libx264 at its default quality, yuv420p,
frame sizes scaled up to multiples of 16. imageio never looks at ffmpeg's exit status, so on a full
disk ffmpeg fails writing the trailer, leaves an mp4 without its index (no moov atom) and imageio
returns as if all went well. Here ffmpeg runs with the same settings (the same bytes come out), its
exit status and error output are checked, and the file is read back (frame count and size) before the
run renames it into place and records it.
"""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

FPS = 24  # what VideoSys's Open-Sora save_video writes
MACRO_BLOCK = 16  # imageio scales frames up to multiples of this
_ERRNOS = {"No space left on device": errno.ENOSPC, "Disk quota exceeded": errno.EDQUOT}


class VideoWriteError(OSError):
    """A video that could not be written or does not read back as written; ``errno`` says why
    (``ENOSPC`` for a full disk)."""


def as_frames(video: Any) -> np.ndarray:
    """Frames as a contiguous ``uint8`` array ``(T, H, W, 3)`` (VideoSys returns a CPU tensor)."""
    frames = video.cpu().numpy() if hasattr(video, "cpu") else np.asarray(video)
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"a video is uint8 frames (T, H, W, 3); got {frames.dtype} {tuple(frames.shape)}")
    return np.ascontiguousarray(frames)


def encoded_size(height: int, width: int) -> tuple[int, int]:
    """The frame size in the file: each side rounded up to a multiple of 16, as imageio does."""
    return -(-height // MACRO_BLOCK) * MACRO_BLOCK, -(-width // MACRO_BLOCK) * MACRO_BLOCK


def write_mp4(video: Any, path: str | os.PathLike, fps: int = FPS) -> None:
    """Encode ``video`` to ``path``; raises :class:`VideoWriteError` with ffmpeg's reason when it fails."""
    import imageio_ffmpeg

    frames = as_frames(video)
    _, height, width, _ = frames.shape
    out_h, out_w = encoded_size(height, width)
    scale = ["-vf", f"scale={out_w}:{out_h}"] if (out_h, out_w) != (height, width) else []
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-y",
        "-f",
        "rawvideo",
        "-vcodec",
        "rawvideo",
        "-s",
        f"{width}x{height}",
        "-pix_fmt",
        "rgb24",
        "-r",
        str(fps),
        "-i",
        "-",
        "-an",
        "-vcodec",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        *scale,
        "-v",
        "error",
        str(path),
    ]
    done = subprocess.run(command, input=frames.tobytes(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace")
        code = next((number for text, number in _ERRNOS.items() if text in message), errno.EIO)
        reason = os.strerror(code) if code != errno.EIO else _last_line(message) or "no error output"
        raise VideoWriteError(code, f"{reason}; ffmpeg exited with status {done.returncode}", str(path))


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def check_mp4(path: str | os.PathLike, video: Any) -> None:
    """Read ``path`` back: it must decode to as many frames as ``video`` has, at the encoded size."""
    import imageio_ffmpeg

    frames = as_frames(video)
    expected = (len(frames), *encoded_size(*frames.shape[1:3]))
    try:
        reader = imageio_ffmpeg.read_frames(str(path))
        meta = next(reader)
        count = sum(1 for _ in reader)
        reader.close()
    except (OSError, RuntimeError, StopIteration) as exc:
        reason = _last_line(str(exc)) or type(exc).__name__
        raise VideoWriteError(errno.EIO, f"the written video does not decode ({reason})", str(path)) from None
    width, height = meta["size"]
    if (count, height, width) != expected:
        raise VideoWriteError(
            errno.EIO,
            f"the written video reads back as {count} frames of {width}x{height}, "
            f"not {expected[0]} of {expected[2]}x{expected[1]}",
            str(Path(path)),
        )
