"""A small Open-Sora 1.2 model trained on the CPU: the package's test bed for fidelity claims.

VideoSys's own ``STDiT3`` at a small size (``model.MODEL_CONFIG``) learned a synthetic
text-to-video task, one coloured shape moving on a plain background (``task.py``), through the
caption path, objective and sampler of Open-Sora 1.2 (``train.py``); its latent space is a fixed
linear colour code (``vae.py``). Build the pipeline with :func:`testbed_opensora_pipeline` and
generate with ``**GENERATE_KWARGS``; ``study.py`` measures MagCache on it.
"""

from .model import GENERATE_KWARGS, WEIGHTS, testbed_components, testbed_opensora_pipeline
from .task import all_prompts, parse_prompt

__all__ = [
    "GENERATE_KWARGS",
    "WEIGHTS",
    "all_prompts",
    "parse_prompt",
    "testbed_components",
    "testbed_opensora_pipeline",
]
