"""Finding, pairing, decoding and aligning videos, and the errors for each kind of bad input."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import imageio
import numpy as np
import pytest
import torch

from magcache_videosys.metrics.errors import MetricsError
from magcache_videosys.metrics.video_io import (
    MISMATCHES,
    DecodedVideo,
    align_reference,
    decode_video,
    find_mismatches,
    list_videos,
    pair_videos,
    read_video,
)


def write_video(path: Path, frames: np.ndarray, fps: float = 8, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimwrite(path, list(frames), fps=fps, macro_block_size=1, **options)
    return path


def random_frames(count: int = 5, height: int = 24, width: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, height, width, 3), dtype=np.uint8)


def test_list_videos_errors(tmp_path):
    with pytest.raises(MetricsError, match="not a directory"):
        list_videos(tmp_path / "absent")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(MetricsError, match=r"no \.mp4 videos in"):
        list_videos(tmp_path)


def test_pairing_lists_what_each_side_lacks(tmp_path):
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        (tmp_path / "ref" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "ref" / name).write_bytes(b"")
    for name in ("b.mp4", "c.mp4", "d.mp4"):
        (tmp_path / "gen" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "gen" / name).write_bytes(b"")
    with pytest.raises(MetricsError) as error:
        pair_videos(tmp_path / "ref", tmp_path / "gen")
    message = str(error.value)
    assert f"1 missing from {tmp_path / 'gen'}: a.mp4" in message
    assert f"1 missing from {tmp_path / 'ref'}: d.mp4" in message
    assert "--allow-missing" in message and "2 videos both hold" in message

    pairing = pair_videos(tmp_path / "ref", tmp_path / "gen", allow_missing=True)
    assert pairing.names == ("b.mp4", "c.mp4")
    assert pairing.missing_in_generated == ("a.mp4",)
    assert pairing.missing_in_reference == ("d.mp4",)


def test_names_pair_across_unicode_normal_forms(tmp_path):
    """The same prompt written composed (NFC) on one machine and decomposed (NFD) on another."""
    prompt = "a café in Zürich-0.mp4"
    composed, decomposed = unicodedata.normalize("NFC", prompt), unicodedata.normalize("NFD", prompt)
    assert composed != decomposed
    for folder, name in (("ref", composed), ("gen", decomposed)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / name).write_bytes(b"")
        (tmp_path / folder / "plain-0.mp4").write_bytes(b"")
    pairing = pair_videos(tmp_path / "ref", tmp_path / "gen")
    assert pairing.names == (composed, "plain-0.mp4")
    assert pairing.reference(composed) == tmp_path / "ref" / composed
    assert pairing.generated(composed) == tmp_path / "gen" / decomposed  # the file as it is on disk
    (tmp_path / "gen" / composed).write_bytes(b"")  # now both forms in one folder: which one is meant?
    with pytest.raises(MetricsError, match="one name in two Unicode forms; keep one of them"):
        pair_videos(tmp_path / "ref", tmp_path / "gen")


def test_pairing_with_nothing_in_common_fails_even_when_allowed(tmp_path):
    for folder, name in (("ref", "a.mp4"), ("gen", "b.mp4")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / name).write_bytes(b"")
    with pytest.raises(MetricsError, match="no video file name is in both"):
        pair_videos(tmp_path / "ref", tmp_path / "gen", allow_missing=True)


def test_read_video_round_trip(tmp_path):
    frames = np.full((7, 24, 32, 3), 90, dtype=np.uint8)
    decoded = read_video(write_video(tmp_path / "v.mp4", frames))
    assert decoded.shape == (7, 24, 32, 3) and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - 90).max() <= 2  # lossy codec, flat content
    decoded[0, 0, 0, 0] = 0  # writable, so torch.from_numpy shares it without a warning


def test_unreadable_file_is_named(tmp_path):
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    with pytest.raises(MetricsError, match=r"cannot decode .*junk\.mp4.*: re-generate or remove it$"):
        read_video(tmp_path / "junk.mp4")  # the evaluation, not the decoder, says how to go on without it


def test_decode_video_reads_the_frame_rate(tmp_path):
    decoded = decode_video(write_video(tmp_path / "v.mp4", random_frames(4), fps=12))
    assert decoded.frames.shape == (4, 24, 32, 3) and decoded.fps == 12.0


def test_mismatches_a_reference_can_still_be_scored_against():
    def clip(frames: int, height: int, width: int, fps: float | None) -> DecodedVideo:
        return DecodedVideo(np.zeros((frames, height, width, 3), np.uint8), fps)

    assert find_mismatches(clip(51, 240, 426, 24.0), clip(51, 240, 426, 24.0)) == {}
    assert find_mismatches(clip(51, 480, 854, 24.0), clip(17, 240, 426, 8.0)) == {
        "frames": "17 of 51 frames",
        "size": "426x240, reference 854x480",
        "fps": "8 fps, reference 24",
    }
    assert find_mismatches(clip(5, 24, 32, None), clip(5, 24, 32, 8.0)) == {}  # no rate in the header: no claim
    assert set(MISMATCHES) == {"frames", "size", "fps"}


def test_truncated_file_without_index_is_named(tmp_path):
    path = write_video(tmp_path / "cut.mp4", random_frames(9))  # index (moov) at the end
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(MetricsError, match=r"cut\.mp4"):
        read_video(path)


def test_truncated_file_that_still_decodes_some_frames_is_caught(tmp_path):
    path = write_video(tmp_path / "cut.mp4", random_frames(9), output_params=["-movflags", "+faststart"])
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.6)])
    with pytest.raises(MetricsError, match=r"cut\.mp4 is truncated or damaged: decoded \d of the 9 frames"):
        read_video(path)


def video(frames: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(random_frames(frames, height, width, seed))


def test_align_same_size_keeps_the_first_frames():
    ref = video(7, 24, 32)
    aligned = align_reference(ref, (5, 24, 32, 3))
    assert torch.equal(aligned, ref[:5])


def test_align_rejects_fewer_frames_and_smaller_size():
    with pytest.raises(MetricsError, match=r"clip\.mp4: the reference video has 4 frames, fewer than .* 5"):
        align_reference(video(4, 24, 32), (5, 24, 32, 3), "clip.mp4")
    with pytest.raises(MetricsError, match=r"32x24, smaller than the generated video's 40x24"):
        align_reference(video(5, 24, 32), (5, 24, 40, 3))


def test_align_crops_the_centre_when_one_side_already_fits():
    ref = video(3, 24, 52)
    aligned = align_reference(ref, (3, 24, 32, 3))
    assert torch.equal(aligned, ref[:, :, 10:42])


def torchvision_like_resize(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """What torchvision's resize does to uint8 tensors: antialiased bilinear in float, rounded."""
    resized = torch.nn.functional.interpolate(
        frames.permute(0, 3, 1, 2).float(), size=size, mode="bilinear", antialias=True, align_corners=False
    )
    return resized.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def test_align_resizes_a_larger_reference_keeping_aspect():
    ref = video(3, 36, 48)
    aligned = align_reference(ref, (3, 12, 16, 3))
    assert torch.equal(aligned, torchvision_like_resize(ref, (12, 16)))
    flat = torch.full((2, 36, 48, 3), 77, dtype=torch.uint8)
    assert torch.equal(align_reference(flat, (2, 12, 16, 3)), flat[:, :12, :16])


def test_align_resize_then_crop_for_a_wider_reference():
    ref = video(2, 48, 96)  # 2:1, generated is 4:3 at half the height
    aligned = align_reference(ref, (2, 24, 32, 3))
    assert aligned.shape == (2, 24, 32, 3)
    assert torch.equal(aligned, torchvision_like_resize(ref, (24, 48))[:, :, 8:40])
