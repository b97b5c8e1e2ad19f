"""The trained test bed: VideoSys's ``STDiT3`` at a small size, its frozen T5, the linear VAE, and
the ``OpenSoraPipeline`` that samples them with VideoSys's own RFLOW scheduler.

The weights of the transformer and the text encoder live in one safetensors file with the model
configuration in its metadata; ``WEIGHTS`` is the one shipped with the package (``train.py`` made
it; ``weights/provenance.json`` says how).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..tiny import TEXT_LENGTH, init_single_process_group
from ..videosys_compat import import_videosys
from .text import TEXT_DIM, testbed_text_encoder, testbed_tokenizer
from .vae import LATENT_CHANNELS, LinearVideoVAE

WEIGHTS = Path(__file__).with_name("weights") / "testbed.safetensors"
# The one metadata key: safetensors writes several keys in an order that varies from run to run, so
# the same weights would get another sha256.
METADATA_KEY = "testbed"

# The clip size the test bed was trained at; ``OpenSoraPipeline.generate`` needs these arguments.
GENERATE_KWARGS: dict[str, Any] = dict(resolution="144p", aspect_ratio="1:1", num_frames=17)
HEIGHT = WIDTH = 192  # VideoSys's 144p at 1:1
NUM_FRAMES = 17
FPS = 24  # what OpenSoraPipeline passes for a video

MODEL_CONFIG: dict[str, Any] = dict(
    depth=3,
    hidden_size=64,
    num_heads=4,
    patch_size=[1, 3, 3],
    in_channels=LATENT_CHANNELS,
    caption_channels=TEXT_DIM,
    model_max_length=TEXT_LENGTH,
    class_dropout_prob=0.1,
)


def build_transformer(config: dict[str, Any] | None = None) -> nn.Module:
    """A fresh VideoSys ``STDiT3`` with Open-Sora's initialisation, ready for one process."""
    import_videosys()
    from videosys.models.transformers.open_sora_transformer_3d import STDiT3, STDiT3Config

    init_single_process_group()
    config = dict(MODEL_CONFIG if config is None else config)
    config["patch_size"] = tuple(config["patch_size"])
    model = STDiT3(STDiT3Config(**config))
    model.enable_parallel(dp_size=1, sp_size=1, enable_cp=False)
    return model


def save_weights(
    path: str | os.PathLike, transformer: dict[str, torch.Tensor], text_encoder: dict[str, torch.Tensor], metadata: dict
) -> None:
    """Both models' state dicts in one safetensors file (written atomically), ``metadata`` as JSON in it;
    the same inputs give the same bytes."""
    from safetensors.torch import save_file

    from ..atomic import write_atomic

    tensors = {f"transformer.{k}": v for k, v in transformer.items()}
    tensors.update({f"text_encoder.{k}": v for k, v in text_encoder.items()})
    tensors = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    text = {METADATA_KEY: json.dumps(metadata, sort_keys=True)}
    write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=text))


def load_weights(path: str | os.PathLike = WEIGHTS) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """``({"transformer": state_dict, "text_encoder": state_dict}, metadata)`` from a weights file."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"test-bed weights {path} not found; train them with "
            f"`python -m magcache_videosys.testbed.train --out DIR` or pass the file that run wrote."
        )
    parts: dict[str, dict[str, torch.Tensor]] = {"transformer": {}, "text_encoder": {}}
    with safe_open(str(path), framework="pt") as f:
        metadata = json.loads((f.metadata() or {}).get(METADATA_KEY, "{}"))
        for key in f.keys():
            part, _, name = key.partition(".")
            if part not in parts:
                raise ValueError(f"{path}: unexpected tensor {key!r}; is this a test-bed weights file?")
            parts[part][name] = f.get_tensor(key)
    if "model_config" not in metadata:
        raise ValueError(f"{path}: no model_config in its metadata; is this a test-bed weights file?")
    return parts, metadata


def testbed_components(weights: str | os.PathLike = WEIGHTS) -> dict[str, nn.Module]:
    """Keyword arguments for ``OpenSoraPipeline(config, **components)``: the trained test bed."""
    parts, metadata = load_weights(weights)
    transformer = build_transformer(metadata["model_config"])
    transformer.load_state_dict(parts["transformer"])
    text_encoder = testbed_text_encoder()
    text_encoder.load_state_dict(parts["text_encoder"])
    return dict(
        transformer=transformer.eval(),
        text_encoder=text_encoder,
        tokenizer=testbed_tokenizer(),
        vae=LinearVideoVAE(),
    )


def testbed_opensora_pipeline(config: Any = None, weights: str | os.PathLike = WEIGHTS, **config_kwargs: Any) -> Any:
    """An ``OpenSoraPipeline`` on CPU in float32 with the trained test bed.

    ``config`` (a VideoSys or magcache_videosys ``OpenSoraConfig``) is built from ``config_kwargs``
    when not given; a caching method enabled on it is installed as on every rank. Generate with
    ``pipeline.generate(prompt, **GENERATE_KWARGS)``: the clip size the test bed knows.
    """
    videosys = import_videosys()
    if config is None:
        config = videosys.OpenSoraConfig(**config_kwargs)
    components = testbed_components(weights)
    return config.pipeline_cls(config, device=torch.device("cpu"), dtype=torch.float32, **components)
