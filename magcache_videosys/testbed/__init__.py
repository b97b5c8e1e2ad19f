"""A small Open-Sora 1.2 model trained on the CPU: the package's test bed for fidelity claims.

VideoSys's ``STDiT3`` (depth 4, hidden 96) learned a synthetic text-to-video task, one coloured
shape moving on a plain background, through the same caption path, objective and sampler as
Open-Sora 1.2; its latent space is a fixed linear colour code. Build the pipeline with
:func:`testbed_opensora_pipeline` and generate with ``**GENERATE_KWARGS``.
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
