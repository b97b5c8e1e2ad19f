"""Open-Sora 1.2 ``STDiT3`` from VideoSys (upstream and the older copy the MagCache repo ships).

The forward runs ``spatial_blocks[i]`` then ``temporal_blocks[i]`` for every depth, so the stack in
execution order is S0 T0 S1 T1 ... The RFLOW sampler passes ``all_timesteps`` (a list built once
per sampling run) to every call: as a keyword upstream, positionally in the older copy. That list
is the run's identity and its length the run's step count.

Every block is called as ``STDiT3Block.forward(x, y, t, mask, x_mask, t0, T, S, timestep,
all_timesteps=None)`` with ``t`` the timestep embedding after ``t_block`` (``t_mlp``); the older copy
passes ``all_timesteps`` on to the blocks, upstream does not.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any, Callable

from torch import nn

from .base import (
    Generation,
    GenerationOption,
    ModelFamily,
    RunInfo,
    StackBinding,
    TestBed,
    ada_norm_single_input,
    call_arg,
    parallel_all_reduce,
    position,
)

_FEEDS_TIMESTEPS = "_magcache_videosys_feeds_all_timesteps"


def _frames(text: str) -> int | str:
    """A frame count, or a VideoSys duration such as ``2s`` (its NUM_FRAMES_MAP names those it knows)."""
    text = str(text).strip()
    if text.isdigit() and int(text) >= 1:
        return int(text)
    if re.fullmatch(r"[1-9][0-9]*[sx]", text):
        return text
    raise argparse.ArgumentTypeError(
        f"--frames takes a frame count or a VideoSys duration such as 2s or 1x, got {text!r}"
    )


# VideoSys's OpenSoraPipeline.generate and OpenSoraConfig defaults; --tiny generates small and fast.
GENERATION = Generation(
    steps=30,
    cfg_scale=7.0,
    options=(
        GenerationOption("resolution", "--resolution", "480p", "144p", "e.g. 144p, 240p, 360p, 480p, 720p"),
        GenerationOption("aspect_ratio", "--aspect-ratio", "9:16", "9:16", "e.g. 9:16, 16:9, 3:4, 4:3, 1:1"),
        GenerationOption("num_frames", "--frames", 51, 17, "frame count or a duration such as 2s", _frames),
    ),
    weights=(
        GenerationOption(
            "transformer", "--transformer", "hpcai-tech/OpenSora-STDiT-v3", "tiny-random-stdit3", "STDiT3"
        ),
        GenerationOption("vae", "--vae", "hpcai-tech/OpenSora-VAE-v1.2", "tiny-random-vae", "VAE"),
        GenerationOption("text_encoder", "--text-encoder", "DeepFloyd/t5-v1_1-xxl", "tiny-random-t5", "T5"),
    ),
    fps=24,
)

# The trained test bed (magcache_videosys/testbed/): the clip size it learned, and what it holds.
TESTBED = TestBed(
    label="the Open-Sora 1.2 test bed (VideoSys STDiT3 depth 3, hidden 64, trained on the shapes task; CPU)",
    options={"resolution": "144p", "aspect_ratio": "1:1", "num_frames": 17},
    weights={
        "transformer": "testbed.safetensors (STDiT3 depth 3, hidden 64)",
        "vae": "testbed LinearVideoVAE (fixed)",
        "text_encoder": "testbed.safetensors (2-layer T5, frozen)",
    },
    prompts=Path(__file__).parents[1] / "testbed" / "prompts.json",
    note="magcache-slow|fast|turbo and teacache-slow|fast are Open-Sora 1.2's published presets (the table and "
    "coefficients measured on the real model, what a user would run); the test bed's own: --method magcache "
    "--mag-ratios opensora-testbed, --method teacache --threshold T --coefficients opensora-testbed",
)


class OpenSora(ModelFamily):
    name = "opensora"
    description = "Open-Sora 1.2 STDiT3 (VideoSys OpenSoraPipeline)"
    model_classes = ("STDiT3",)
    pipeline_classes = ("OpenSoraPipeline",)
    config_class = "OpenSoraConfig"
    pab_config_class = "OpenSoraPABConfig"
    # Fitted by the TeaCache authors (arXiv 2411.19108); the values of ``teacache_forward`` in
    # eval/teacache/experiments/opensora.py of github.com/ali-vilab/TeaCache.
    # opensora-testbed: fitted the same way for the trained test bed by
    # ``python -m magcache_videosys.testbed.teacache_fit`` (testbed/teacache/teacache_fit.json).
    teacache_coefficients = {
        "opensora-v1.2": (2.17546007e02, -1.18329252e02, 2.68662585e01, -4.59364272e-02, 4.84426240e-02),
        "opensora-testbed": (
            5237.169331348165,
            -2910.136732588401,
            509.12953430388046,
            -29.13352534013775,
            0.5535444279676883,
        ),
    }
    # MagCache's Open-Sora 1.2 settings with the published table (used with its ratio_power, 0.5:
    # the reference's square-root smoothing): opensora-fast is the paper's (12 of 30 passes), slow
    # 18 and turbo 10.
    magcache_presets = {
        name: dict(threshold=t, max_skip_steps=k, retention_ratio=0.2, mag_ratios="opensora-v1.2")
        for name, t, k in (("opensora-fast", 0.12, 3), ("opensora-slow", 0.06, 1), ("opensora-turbo", 0.24, 5))
    }

    # The TeaCache paper's Open-Sora 1.2 rows. They were made in bfloat16, VideoSys's default, where
    # the reference's last-step test fires at the papers' size (see TeaCacheConfig): so the presets
    # compute the last step.
    teacache_presets = {
        f"teacache-{speed}": dict(threshold=threshold, coefficients="opensora-v1.2", compute_last_step=True)
        for speed, threshold in (("slow", 0.1), ("fast", 0.2))
    }
    pab_defaults = {"OpenSoraPABConfig": "attention broadcast ranges spatial 2, temporal 4, cross 6, and MLP broadcast"}
    # The fastest Open-Sora setting of VideoSys's eval/pab script. VideoSys's default MLP broadcast
    # names the timesteps 676, 788 and 864, which only a 30-step run at 480p, 51 frames in bf16 (the
    # papers' setting) contains; elsewhere it broadcasts attention only.
    pab_fast_ranges = {"spatial_range": 5, "temporal_range": 7, "cross_range": 9}

    def matches(self, module: nn.Module) -> bool:
        return super().matches(module) and hasattr(module, "spatial_blocks") and hasattr(module, "temporal_blocks")

    generation = GENERATION
    testbed = TESTBED

    def model_label(self, settings: Any) -> str:
        return TESTBED.label if settings.get("testbed") else self.description

    def teacache_preset(self, speed: str, settings: Any) -> str | None:
        name = f"teacache-{speed}"
        return name if name in self.teacache_presets else None

    def prepare_pab(self, pipeline: Any) -> None:
        feed_all_timesteps(pipeline.transformer)

    def check_generation(self, settings: dict[str, Any]) -> None:
        from videosys.pipelines.open_sora.data_process import get_image_size, get_num_frames

        try:
            get_image_size(settings["resolution"], settings["aspect_ratio"])
        except (KeyError, AssertionError):
            raise ValueError(
                f"VideoSys's Open-Sora has no size for --resolution {settings['resolution']} --aspect-ratio "
                f"{settings['aspect_ratio']}; try e.g. 144p, 240p, 360p, 480p or 720p with 9:16, 16:9, 3:4, 4:3 or 1:1."
            ) from None
        try:
            get_num_frames(settings["num_frames"])
        except ValueError:
            raise ValueError(
                f"--frames {settings['num_frames']!r} is neither a frame count nor a VideoSys duration such as 2s."
            ) from None

    def videosys_config(self, settings: dict[str, Any], num_gpus: int) -> Any:
        from ..videosys_compat import import_videosys

        local = settings["tiny"] or settings.get("testbed")
        weights = {} if local else {w.name: settings[w.name] for w in GENERATION.weights}
        return import_videosys().OpenSoraConfig(
            num_gpus=num_gpus, num_sampling_steps=settings["num_steps"], cfg_scale=settings["cfg_scale"], **weights
        )

    def generate(self, target: Any, prompt: str, seed: int, settings: dict[str, Any]) -> Any:
        size = {o.name: settings[o.name] for o in GENERATION.options}
        return target.generate(prompt, seed=seed, verbose=False, **size).video[0]

    def testbed_pipeline(self, config: Any) -> Any:
        from ..testbed import testbed_opensora_pipeline

        return testbed_opensora_pipeline(config)

    def tiny_pipeline(self, config: Any = None, seed: int = 0, **config_kwargs: Any) -> Any:
        from ..tiny import tiny_opensora_pipeline

        return tiny_opensora_pipeline(config, seed=seed, **config_kwargs)

    def bind(self, module: nn.Module) -> StackBinding:
        if len(module.spatial_blocks) != len(module.temporal_blocks) or len(module.spatial_blocks) == 0:
            raise ValueError(
                f"STDiT3 with {len(module.spatial_blocks)} spatial and {len(module.temporal_blocks)} temporal "
                "blocks; the block stack must pair them one to one."
            )
        blocks = [b for pair in zip(module.spatial_blocks, module.temporal_blocks) for b in pair]
        timesteps_of = _timesteps_reader(module)
        depth = len(module.spatial_blocks)

        def run_info(args: tuple, kwargs: dict) -> RunInfo | None:
            valid_depth = kwargs.get("valid_depth")
            if valid_depth is not None and valid_depth != depth:
                raise ValueError(
                    f"STDiT3 called with valid_depth={valid_depth} of {depth}: block-stack caching needs the "
                    "whole stack to run; disable caching for partial-depth calls."
                )
            timesteps = timesteps_of(args, kwargs)
            if timesteps is None:
                return None
            return timesteps, len(timesteps)

        return StackBinding(
            blocks=blocks,
            run_info=run_info,
            hidden_name="x",
            # STDiT3Block's t2i_modulate: norm1(x) modulated by its scale_shift_table and t (after t_block)
            modulated_input=ada_norm_single_input(module.spatial_blocks[0], "x", "t"),
            all_reduce=parallel_all_reduce(module),
        )


def _timesteps_reader(module: nn.Module) -> Callable[[tuple, dict], Any]:
    """Reads ``all_timesteps`` from a transformer call: a keyword upstream, positional in the older copy."""
    index = position(module, "all_timesteps")
    return lambda args, kwargs: call_arg(args, kwargs, index, "all_timesteps")


def feed_all_timesteps(module: nn.Module) -> None:
    """Hand every block call the ``all_timesteps`` list the transformer was called with.

    Upstream VideoSys's ``STDiT3.forward`` calls its blocks without it, yet PAB's MLP broadcast
    (on in ``OpenSoraPABConfig()``) reads it in every block: ``if key not in all_timesteps`` fails
    with ``TypeError: argument of type 'NoneType' is not iterable`` at the first step. The older copy
    passes the list itself; there these hooks find it present and change nothing. Idempotent.
    """
    if getattr(module, _FEEDS_TIMESTEPS, False):
        return
    timesteps_of = _timesteps_reader(module)
    current: dict[str, Any] = {"timesteps": None}

    def remember(_: nn.Module, args: tuple, kwargs: dict) -> None:
        current["timesteps"] = timesteps_of(args, kwargs)

    module.register_forward_pre_hook(remember, with_kwargs=True)
    for block in [*module.spatial_blocks, *module.temporal_blocks]:
        index = position(block, "all_timesteps")
        if index is None:
            continue

        def fill(_: nn.Module, args: tuple, kwargs: dict, index: int = index) -> tuple[tuple, dict] | None:
            if len(args) > index or kwargs.get("all_timesteps") is not None:
                return None
            return args, {**kwargs, "all_timesteps": current["timesteps"]}

        block.register_forward_pre_hook(fill, with_kwargs=True)
    setattr(module, _FEEDS_TIMESTEPS, True)
