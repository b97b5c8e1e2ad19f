"""The transformer loop both caching benchmarks time: VideoSys's RFLOW sampler over a random-weight
STDiT3, with the options, set-up and clock they share."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any

import torch

from magcache_videosys.atomic import write_json_atomic
from magcache_videosys.tiny import tiny_stdit3
from magcache_videosys.videosys_compat import import_videosys

CLOCKS = {
    "wall": "best loop's wall time",
    "cpu": "best loop's CPU time",
    "steps": "sum over steps of each step's least CPU time across rounds",
}


class Timings:
    """Each variant's runs over the interleaved rounds, and the time they stand for."""

    def __init__(self, clock: str) -> None:
        self.clock = clock
        self.loops: dict[str, list[float]] = {}
        self.walls: dict[str, list[float]] = {}
        self.steps: dict[str, list[list[float]]] = {}

    def add(self, name: str, run: tuple[float, float, list[float]]) -> None:
        seconds, wall, per_step = run
        self.loops.setdefault(name, []).append(seconds)
        self.walls.setdefault(name, []).append(wall)
        self.steps.setdefault(name, []).append(per_step)

    def add_seconds(self, name: str, seconds: float) -> None:
        """A run timed by one clock only, without per-step CPU times (``clock`` "wall")."""
        self.add(name, (seconds, seconds, []))

    def best(self, name: str) -> float:
        """The best loop, or the sum of per-step minima: interference on a shared machine only adds time."""
        if self.clock == "steps":
            return sum(min(step) for step in zip(*self.steps[name]))
        return min(self.loops[name])

    def spread(self, name: str) -> float:
        """Slowest whole loop over the fastest."""
        return (max(self.loops[name]) - min(self.loops[name])) / min(self.loops[name])


def add_loop_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--depth", type=int, default=8, help="STDiT3 depth (spatial+temporal block pairs)")
    parser.add_argument("--hidden", type=int, default=256, help="hidden size")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--resolution", default="144p")
    parser.add_argument("--aspect-ratio", default="1:1")
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved repetitions; the best of them is reported")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu", "steps"],
        help="what the ratios compare: the best loop's wall time (default on CUDA) or CPU time, or "
        "(default on CPU) the sum over steps of each step's least CPU time across rounds, which "
        "keeps a noisy shared machine's bursts out of the comparison",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--json", help="also write the results here")


@dataclass
class Loop:
    """A model, VideoSys's sampler and one video's inputs, ready to time."""

    model: Any
    scheduler: Any
    inputs: tuple
    device: torch.device
    clock: str
    description: str

    def run(self) -> tuple[float, float, list[float]]:
        """Time one sampling loop: (the chosen clock's seconds, wall seconds, CPU seconds per step).

        A step runs from one transformer call to the next (the last to the loop's end), so the
        sampler's own work is included. Per-step times are CPU time, and only on the CPU: on CUDA
        they would time kernel launches, not the kernels.
        """
        z, model_args, y_null = self.inputs
        cuda = self.device.type == "cuda"
        marks: list[float] = []
        hook = None if cuda else self.model.register_forward_pre_hook(lambda *_: marks.append(time.process_time()))
        if cuda:
            torch.cuda.synchronize()
        start, cpu = time.perf_counter(), time.process_time()
        try:
            with torch.no_grad():
                self.scheduler.sample(
                    self.model, z=z, model_args=dict(model_args), y_null=y_null, device=self.device, progress=False
                )
            if cuda:
                torch.cuda.synchronize()
        finally:
            if hook is not None:
                hook.remove()
        wall, end = time.perf_counter() - start, time.process_time()
        steps = [b - a for a, b in zip(marks, marks[1:] + [end])]
        return (wall if self.clock == "wall" else end - cpu), wall, steps


def build_loop(args: argparse.Namespace) -> Loop:
    import_videosys()
    from videosys.pipelines.open_sora.data_process import get_image_size, prepare_multi_resolution_info
    from videosys.schedulers.scheduling_rflow_open_sora import RFLOW

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = args.clock or ("wall" if device.type == "cuda" else "steps")
    if clock == "steps" and device.type == "cuda":
        raise SystemExit("--clock steps times CPU work; on CUDA use --clock wall")
    model = tiny_stdit3(depth=args.depth, hidden_size=args.hidden, num_heads=args.heads).to(device, dtype)
    scheduler = RFLOW(use_timestep_transform=True, num_sampling_steps=args.steps, cfg_scale=7.0)

    size = get_image_size(args.resolution, args.aspect_ratio)
    latent = [-(-args.frames // 4), size[0] // 8, size[1] // 8]  # Open-Sora's VAE: 4x in time, 8x in space
    z = torch.randn(1, 4, *latent, device=device, dtype=dtype)
    model_args = prepare_multi_resolution_info("OpenSora", 1, size, args.frames, 24, device, dtype)
    model_args["y"] = torch.randn(1, 1, 300, model.config.caption_channels, device=device, dtype=dtype)
    model_args["mask"] = torch.ones(1, 300, dtype=torch.long, device=device)
    y_null = model.y_embedder.y_embedding[None][:, None].to(device, dtype)
    description = (
        f"STDiT3 depth {args.depth}, hidden {args.hidden}, {args.resolution} {args.aspect_ratio} x {args.frames} "
        f"frames, "
        f"{args.steps} steps, batched CFG, {device} {args.dtype}, {args.rounds} interleaved rounds "
        f"({torch.get_num_threads()} threads), {CLOCKS[clock]}"
    )
    return Loop(model, scheduler, (z, model_args, y_null), device, clock, description)


def save_results(path: str, args: argparse.Namespace, loop: Loop, rows: list[dict]) -> None:
    """The settings and rows as JSON, written atomically."""
    settings = {**{k: str(v) for k, v in vars(args).items()}, "clock": loop.clock}
    write_json_atomic(path, {"settings": settings, "rows": rows})
