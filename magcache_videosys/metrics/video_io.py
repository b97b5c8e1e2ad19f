"""Finding, pairing, decoding and aligning the videos that fidelity metrics compare.

Frames stay ``uint8`` in ``(T, H, W, 3)`` order, the way ffmpeg hands them over: the metrics take
that layout directly, so decoding never pays for a transpose or a float copy. File names are paired
after Unicode normalisation (NFC): the same prompt can reach the disk composed on one machine and
decomposed on another (macOS file systems store NFD).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .errors import MetricsError

VIDEO_SUFFIX = ".mp4"
_RESIZE_CHUNK = 8  # frames resized at once: bounds the float copy of a large reference video


def video_name(name: str) -> str:
    """The key a file name is paired by: its NFC form."""
    return unicodedata.normalize("NFC", name)


def has_videos(directory: str | Path) -> bool:
    """Whether ``directory`` directly holds a ``.mp4`` file."""
    return any(p.suffix.lower() == VIDEO_SUFFIX and p.is_file() for p in Path(directory).iterdir())


def list_videos(directory: str | Path) -> dict[str, Path]:
    """Map file name (NFC) to path for the ``.mp4`` files directly inside ``directory``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise MetricsError(f"{directory} is not a directory")
    videos: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix.lower() != VIDEO_SUFFIX or not path.is_file():
            continue
        name = video_name(path.name)
        if name in videos:
            raise MetricsError(
                f"{directory} holds {videos[name].name!r} and {path.name!r}, one name in two Unicode forms; "
                "keep one of them"
            )
        videos[name] = path
    if not videos:
        raise MetricsError(f"no {VIDEO_SUFFIX} videos in {directory}: point the option at the folder that holds them")
    return videos


@dataclass(frozen=True)
class VideoPairing:
    """The videos two folders have in common (by NFC name), and what each one lacks."""

    reference_dir: Path
    generated_dir: Path
    names: tuple[str, ...]
    missing_in_generated: tuple[str, ...]
    missing_in_reference: tuple[str, ...]
    reference_paths: dict[str, Path]
    generated_paths: dict[str, Path]

    def reference(self, name: str) -> Path:
        return self.reference_paths[name]

    def generated(self, name: str) -> Path:
        return self.generated_paths[name]


def _some(names: tuple[str, ...], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def pair_videos(reference_dir: str | Path, generated_dir: str | Path, allow_missing: bool = False) -> VideoPairing:
    """Pair videos by file name; different sets are an error unless ``allow_missing``."""
    reference = list_videos(reference_dir)
    generated = list_videos(generated_dir)
    common = tuple(sorted(reference.keys() & generated.keys()))
    only_ref = tuple(sorted(reference.keys() - generated.keys()))
    only_gen = tuple(sorted(generated.keys() - reference.keys()))
    if (only_ref or only_gen) and not allow_missing:
        parts = []
        if only_ref:
            parts.append(f"{len(only_ref)} missing from {generated_dir}: {_some(only_ref)}")
        if only_gen:
            parts.append(f"{len(only_gen)} missing from {reference_dir}: {_some(only_gen)}")
        raise MetricsError(
            f"{reference_dir} and {generated_dir} hold different videos; " + "; ".join(parts) + ". "
            f"Generate the missing videos, or pass --allow-missing to evaluate the {len(common)} videos both hold."
        )
    if not common:
        raise MetricsError(f"no video file name is in both {reference_dir} and {generated_dir}")
    return VideoPairing(Path(reference_dir), Path(generated_dir), common, only_ref, only_gen, reference, generated)


class DecodedVideo(NamedTuple):
    frames: np.ndarray  # uint8 RGB, (T, H, W, 3)
    fps: float | None  # from the container's header, None when it has none


def read_video(path: str | Path) -> np.ndarray:
    """Decode every frame of ``path`` as ``uint8`` RGB, shape ``(T, H, W, 3)``."""
    return decode_video(path).frames


def decode_video(path: str | Path) -> DecodedVideo:
    """Every frame of ``path`` and its frame rate.

    ffmpeg stops quietly at the end of a truncated file, so the decoded frame count is checked
    against the container's duration x frame rate. Errors name the file and say what to do about
    that one video; the evaluation adds how to go on without it.
    """
    import imageio_ffmpeg

    path = Path(path)
    fix = "re-generate or remove it"
    try:
        reader = imageio_ffmpeg.read_frames(str(path))
        meta = next(reader)
    except (OSError, RuntimeError, StopIteration) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MetricsError(f"cannot decode {path} ({reason}): {fix}") from exc
    try:
        buffers = list(reader)
    except (OSError, RuntimeError) as exc:
        raise MetricsError(f"decoding {path} failed part-way ({exc}): {fix}") from exc
    finally:
        reader.close()
    width, height = meta["size"]
    duration, fps = meta.get("duration"), meta.get("fps")
    expected = int(round(duration * fps)) if duration and fps else 0
    if not buffers:
        raise MetricsError(f"{path} has no decodable frame: {fix}")
    if len(buffers) < expected:
        raise MetricsError(
            f"{path} is truncated or damaged: decoded {len(buffers)} of the {expected} frames "
            f"its header announces; {fix}"
        )
    frames = np.empty((len(buffers), height, width, 3), dtype=np.uint8)
    for frame, buffer in zip(frames, buffers):
        frame[...] = np.frombuffer(buffer, dtype=np.uint8).reshape(height, width, 3)
    return DecodedVideo(frames, float(fps) if fps else None)


def _covering_size(height: int, width: int, target_h: int, target_w: int) -> tuple[int, int]:
    """Smallest aspect-kept size of a ``height x width`` frame that covers the target size."""
    scale = max(target_h / height, target_w / width)
    return max(target_h, round(height * scale)), max(target_w, round(width * scale))


def _resize(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bilinear resize of uint8 NHWC frames, rounded back to uint8.

    The same arithmetic as torchvision's ``resize`` on uint8 tensors (what the reference tool uses).
    """
    out = torch.empty((frames.shape[0], *size, frames.shape[3]), dtype=torch.uint8, device=frames.device)
    for start in range(0, frames.shape[0], _RESIZE_CHUNK):
        chunk = frames[start : start + _RESIZE_CHUNK].permute(0, 3, 1, 2).float()
        resized = F.interpolate(chunk, size=size, mode="bilinear", align_corners=False, antialias=True)
        out[start : start + _RESIZE_CHUNK] = resized.round_().clamp_(0, 255).permute(0, 2, 3, 1).to(torch.uint8)
    return out


def align_reference(reference: torch.Tensor, generated_shape: tuple[int, ...], name: str = "") -> torch.Tensor:
    """Cut a reference video down to the generated one's frame count and size.

    A longer reference keeps its first frames; a larger one is resized (aspect kept) to cover the
    generated size, then centre-cropped. Fewer frames or a smaller size cannot be compared.
    """
    frames, height, width = generated_shape[:3]
    ref_frames, ref_h, ref_w = reference.shape[:3]
    label = f"{name}: " if name else ""
    if ref_frames < frames:
        raise MetricsError(
            f"{label}the reference video has {ref_frames} frames, fewer than the generated video's {frames}; "
            "generate the reference with at least as many frames"
        )
    if ref_h < height or ref_w < width:
        raise MetricsError(
            f"{label}the reference video is {ref_w}x{ref_h}, smaller than the generated video's {width}x{height}; "
            "generate the reference at the same or a larger resolution"
        )
    reference = reference[:frames]
    if (ref_h, ref_w) == (height, width):
        return reference
    size = _covering_size(ref_h, ref_w, height, width)
    if size != (ref_h, ref_w):
        reference = _resize(reference, size)
    top, left = (size[0] - height) // 2, (size[1] - width) // 2
    return reference[:, top : top + height, left : left + width]


# what a generated video can differ in from its reference and still be scored (the reference definitions)
MISMATCHES = {
    "frames": "fewer frames than the reference video: scored against the reference's first frames",
    "size": "smaller frames than the reference video: the reference is resized (aspect kept) and centre-cropped",
    "fps": "another frame rate than the reference video: frames compared index by index",
}


def find_mismatches(reference: DecodedVideo, generated: DecodedVideo) -> dict[str, str]:
    """How ``generated`` differs from a reference it can be scored against, by ``MISMATCHES`` kind."""
    found = {}
    (ref_frames, ref_h, ref_w), (frames, height, width) = reference.frames.shape[:3], generated.frames.shape[:3]
    if frames < ref_frames:
        found["frames"] = f"{frames} of {ref_frames} frames"
    if (height, width) != (ref_h, ref_w):
        found["size"] = f"{width}x{height}, reference {ref_w}x{ref_h}"
    if reference.fps and generated.fps and abs(reference.fps - generated.fps) > 1e-3 * reference.fps:
        found["fps"] = f"{generated.fps:g} fps, reference {reference.fps:g}"
    return found
