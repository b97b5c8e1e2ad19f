"""Helpers shared by the tests that run VideoSys (the fixtures are in conftest.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

FAST_SKIPS = [6, 7, 8, 10, 11, 12, 14, 15, 16, 18, 19, 20, 22, 23, 24, 26, 27, 28]
GEN = dict(resolution="144p", aspect_ratio="1:1", num_frames=17, verbose=False)
EXPERIMENT_SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "opensora.py"


def generate(pipeline: Any, prompt: str = "a cat on a sofa", seed: int = 0, **kwargs: Any):
    """Run generation; return the final latent the VAE decodes, and the video."""
    latents = []
    handle = pipeline.vae.register_forward_pre_hook(lambda m, args: latents.append(args[0].clone()))
    try:
        video = pipeline.generate(prompt, seed=seed, **{**GEN, **kwargs}).video
    finally:
        handle.remove()
    return latents[-1], video


def bare_engine(videosys: Any, config: Any, driver: Any) -> Any:
    """A real VideoSysEngine object without starting workers (its __init__ needs CUDA)."""
    engine = videosys.VideoSysEngine.__new__(videosys.VideoSysEngine)
    engine.config, engine.driver_worker = config, driver
    engine.shutdown = lambda: None  # __del__ would tear down the test's process group
    return engine


def load_experiment_cli() -> Any:
    """``experiments/opensora.py`` as a module, so tests call its ``main`` in-process."""
    spec = importlib.util.spec_from_file_location("opensora_experiment_tiny", EXPERIMENT_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_cli(cli: Any, capsys: Any, *argv: Any) -> str:
    assert cli.main([str(a) for a in argv]) == 0
    return capsys.readouterr().out


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def generate_with_config(config: Any, prompt: str, seed: int = 0, **generate_kwargs: Any) -> dict[str, Any]:
    """Build the tiny pipeline from ``config`` (as an engine rank would), generate one video and
    return the run's statistics: run in a spawned process, it checks that a config carries a
    caching method into a new process."""
    from magcache_videosys.hooks import get_cache
    from magcache_videosys.tiny import tiny_opensora_pipeline

    pipeline = tiny_opensora_pipeline(config, seed=seed)
    pipeline.generate(prompt, seed=seed, **{"verbose": False, **generate_kwargs})
    cache = get_cache(pipeline.transformer)
    stats = cache.latest_stats() if cache is not None else None
    return {"pipeline_cls": repr(config.pipeline_cls), "stats": None if stats is None else stats.to_dict()}
