"""The test bed's data: prompts, rendered clips, the linear VAE and the probe that reads clips back."""

from __future__ import annotations

import pytest
import torch

from magcache_videosys.testbed.probe import read_clip
from magcache_videosys.testbed.task import (
    BACKGROUNDS,
    COLOURS,
    DIRECTIONS,
    TRAVEL,
    ClipSpec,
    all_prompts,
    parse_prompt,
    render_cell_means,
    render_clips,
    sample_specs,
)
from magcache_videosys.testbed.vae import LinearVideoVAE, colour_code


def to_uint8(video: torch.Tensor) -> torch.Tensor:
    """(B, 3, T, H, W) in [-1, 1] to (B, T, H, W, 3) uint8, as OpenSoraPipeline converts."""
    return ((video.clamp(-1, 1) + 1) / 2 * 255 + 0.5).clamp(0, 255).permute(0, 2, 3, 4, 1).to(torch.uint8)


def test_prompts_cover_the_task_and_parse_back():
    prompts = all_prompts()
    assert len(prompts) == len(set(prompts)) == 6 * 2 * 4 * 3
    assert {len(p.split()) for p in prompts} == {9}
    spec = parse_prompt("A Red circle moves left on a gray background.")
    assert (spec.colour, spec.shape, spec.direction, spec.background) == ("red", "circle", "left", "gray")
    assert all(parse_prompt(p).prompt == p for p in prompts)


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ("a red fox in the snow", "write it as 'a {colour}"),
        ("a purple circle moves left on a gray background", "purple"),
    ],
)
def test_other_prompts_are_rejected_clearly(prompt, message):
    with pytest.raises(ValueError, match=message):
        parse_prompt(prompt)


def test_unknown_choices_are_named():
    with pytest.raises(ValueError, match="unknown colour 'purple'"):
        ClipSpec("purple", "circle", "left", "gray")


def test_sampling_is_seeded_and_keeps_the_path_inside_the_frame():
    first = sample_specs(200, torch.Generator().manual_seed(5))
    assert first == sample_specs(200, torch.Generator().manual_seed(5))
    assert first != sample_specs(200, torch.Generator().manual_seed(6))
    for spec in first:
        for progress in (0.0, 1.0):
            x, y = spec.centre(progress)
            assert spec.radius <= x <= 1 - spec.radius and spec.radius <= y <= 1 - spec.radius
    assert {s.direction for s in first} == set(DIRECTIONS) and {s.colour for s in first} == set(COLOURS)


@pytest.mark.parametrize("direction", list(DIRECTIONS))
def test_rendered_clip_shows_the_named_colours_moving_the_named_way(direction):
    spec = ClipSpec("yellow", "square", direction, "gray", x=0.5 - 0.25 * DIRECTIONS[direction][0],
                    y=0.5 - 0.25 * DIRECTIONS[direction][1], radius=0.15)  # fmt: skip
    video = render_clips([spec], num_frames=17, height=96, width=96)[0]
    assert video.shape == (3, 17, 96, 96)
    rgb = (video + 1) / 2
    inside = (rgb == torch.tensor(COLOURS["yellow"])[:, None, None, None]).all(dim=0)
    outside = (rgb == torch.tensor(BACKGROUNDS["gray"])[:, None, None, None]).all(dim=0)
    assert bool((inside | outside).all())
    ys, xs = torch.meshgrid(torch.arange(96.0) + 0.5, torch.arange(96.0) + 0.5, indexing="ij")
    first, last = inside[0].float(), inside[-1].float()
    move = [((last * c).sum() / last.sum() - (first * c).sum() / first.sum()) / 96 for c in (xs, ys)]
    assert move == pytest.approx([TRAVEL * d for d in DIRECTIONS[direction]], abs=1 / 96)
    assert float(inside[0].float().mean()) == pytest.approx(0.3**2, abs=0.01)  # a square of side 0.3


def test_rendering_chosen_frames_equals_rendering_all_and_picking():
    specs = sample_specs(3, torch.Generator().manual_seed(0))
    full = render_clips(specs, 17, 64, 64)
    assert torch.equal(render_clips(specs, 17, 64, 64, frames=[0, 1, 5, 9, 13]), full[:, :, [0, 1, 5, 9, 13]])


def test_cell_means_are_the_encoders_cell_means_of_the_rendered_frames():
    specs = sample_specs(6, torch.Generator().manual_seed(2))
    vae = LinearVideoVAE()
    kept = vae.frame_indices(17)
    direct = vae.encode_cells(render_cell_means(specs, 17, 192, 192, vae.space_factor, kept))
    assert direct.shape == (6, 4, 5, 12, 12)
    assert torch.allclose(direct, vae.encode(render_clips(specs, 17, 192, 192)), atol=1e-6)


def test_vae_keeps_open_soras_frame_layout_and_sizes():
    vae = LinearVideoVAE()
    assert vae.frame_indices(17) == [0, 1, 5, 9, 13]
    assert vae.frame_indices(16) == [0, 4, 8, 12]
    assert vae.get_latent_size((17, 192, 192)) == [5, 12, 12]
    assert vae.get_latent_size((None, 144, 256)) == [None, 9, 16]
    code = colour_code()
    assert torch.allclose(code.T @ code, torch.eye(3))


def test_vae_round_trip_is_exact_on_plain_frames_and_close_on_shapes():
    vae = LinearVideoVAE()
    plain = torch.rand(2, 3, 1, 1, 1).mul(2).sub(1).expand(-1, -1, 17, 64, 64)
    latents = vae.encode(plain)
    assert latents.shape == (2, 4, 5, 4, 4)
    assert torch.allclose(vae(latents, num_frames=17), plain, atol=1e-6)
    specs = sample_specs(4, torch.Generator().manual_seed(1))
    clips = render_clips(specs, 17, 192, 192)
    decoded = vae.decode(vae.encode(clips), num_frames=17)
    assert decoded.shape == clips.shape
    # Frames 1-4 show the latent taken at frame 1, as Open-Sora's causal VAE decodes its groups.
    assert torch.equal(decoded[:, :, 1], decoded[:, :, 4])
    assert float((decoded - clips).abs().mean()) < 0.1
    with pytest.raises(NotImplementedError, match="only decodes"):
        vae(latents, decode_only=False)


def test_probe_reads_every_ground_truth_clip_through_the_vae():
    specs = sample_specs(16, torch.Generator().manual_seed(3))
    vae = LinearVideoVAE()
    videos = to_uint8(vae.decode(vae.encode(render_clips(specs, 17, 192, 192)), num_frames=17))
    for spec, video in zip(specs, videos):
        reading = read_clip(video)
        assert reading.matches(spec) == dict(background=True, colour=True, shape=True, direction=True), spec


def test_probe_reads_a_plain_clip_as_background_only():
    video = torch.full((17, 32, 32, 3), 255, dtype=torch.uint8)
    reading = read_clip(video)
    assert (reading.background, reading.colour, reading.direction, reading.shape_fraction) == ("white", None, None, 0)
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        read_clip(video[0])
