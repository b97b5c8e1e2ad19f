"""``python -m magcache_videosys.testbed.train --out DIR``: train the test bed on the CPU.

Open-Sora 1.2's objective as VideoSys's ``RFlowScheduler.training_losses`` computes it: timesteps
drawn logit-normal and shifted by the timestep transform for the clip's resolution and frames,
noise mixed in linearly, the loss the squared error of the predicted velocity ``x0 - noise``.
Captions go through the real ``OpenSoraPipeline`` (its cleaning, the appended aesthetic score, the
tokenizer and the frozen T5), and 10 % of them are replaced by the transformer's null caption
embedding, as Open-Sora's caption dropout does, so classifier-free guidance works at sampling.

``DIR`` receives ``checkpoint.pt`` (everything needed to resume, rewritten every
``--checkpoint-every`` steps), and at the end ``testbed.safetensors``, ``provenance.json``,
``loss.csv`` and ``loss.png``; every file is written atomically. Rerunning the same command
resumes from the checkpoint and gives the same weights as an uninterrupted run.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from tqdm import tqdm

from ..atomic import write_atomic, write_csv_atomic, write_json_atomic
from ..console import check_output_folder, float_at_least, int_at_least, run_command
from . import task
from .model import FPS, HEIGHT, MODEL_CONFIG, NUM_FRAMES, WIDTH, build_transformer, save_weights
from .task import all_prompts, render_cell_means, sample_specs
from .text import testbed_text_encoder, testbed_tokenizer
from .vae import LinearVideoVAE

AES = 6.5  # OpenSoraPipeline.generate's default aesthetic score, appended to every prompt
SMOOTHING = 100  # steps in the moving average of the loss curve and the reported final loss


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m magcache_videosys.testbed.train",
        description="Train the test bed (a small STDiT3 on the synthetic shapes task) on the CPU.",
    )
    parser.add_argument("--out", required=True, help="folder for the checkpoint, weights, provenance and loss curve")
    parser.add_argument("--steps", type=int_at_least(1), default=5000, help="optimizer steps (default 5000)")
    parser.add_argument("--batch-size", type=int_at_least(1), default=16, help="clips per step (default 16)")
    parser.add_argument(
        "--lr", type=float_at_least(0.0, exclusive=True), default=3e-3, help="peak learning rate (default 3e-3)"
    )
    parser.add_argument("--warmup", type=int_at_least(0), default=100, help="steps of linear warm-up (default 100)")
    parser.add_argument(
        "--ema", type=float_at_least(0.0), default=0.995, help="decay of the weights' moving average (default 0.995)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights, the clips and the noise")
    parser.add_argument("--threads", type=int_at_least(1), default=None, help="torch threads (default: torch's)")
    parser.add_argument(
        "--checkpoint-every", type=int_at_least(1), default=250, help="steps between checkpoints (default 250)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    """What determines the trained weights; a checkpoint only resumes the same settings."""
    return dict(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup=args.warmup,
        ema=args.ema,
        seed=args.seed,
        model_config=MODEL_CONFIG,
        caption_dropout=MODEL_CONFIG["class_dropout_prob"],
        clip=dict(height=HEIGHT, width=WIDTH, num_frames=NUM_FRAMES, fps=FPS),
    )


def learning_rate(step: int, settings: dict[str, Any]) -> float:
    """Linear warm-up, then a cosine decay to a tenth of the peak at the last step."""
    peak, warmup, steps = settings["lr"], settings["warmup"], settings["steps"]
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


class Trainer:
    """The models, the caption embeddings of every prompt, the optimizer and the loss history."""

    def __init__(self, settings: dict[str, Any]) -> None:
        from ..videosys_compat import import_videosys

        videosys = import_videosys()
        from videosys.pipelines.open_sora.pipeline_open_sora import append_score_to_prompts
        from videosys.schedulers.scheduling_rflow_open_sora import RFlowScheduler

        self.settings = settings
        torch.manual_seed(settings["seed"])
        self.transformer = build_transformer(settings["model_config"])
        self.text_encoder = testbed_text_encoder(settings["seed"])
        self.vae = LinearVideoVAE()
        config = videosys.OpenSoraConfig()
        pipeline = config.pipeline_cls(
            config,
            device=torch.device("cpu"),
            dtype=torch.float32,
            transformer=self.transformer,
            text_encoder=self.text_encoder,
            tokenizer=testbed_tokenizer(),
            vae=self.vae,
        )
        self.prompts = all_prompts()
        captions = [pipeline.text_preprocessing(p) for p in append_score_to_prompts(self.prompts, aes=AES)]
        encoded = pipeline.encode_prompt(captions)
        self.captions, self.caption_mask = encoded["y"], encoded["mask"]
        lengths = set(self.caption_mask.sum(dim=1).tolist())
        if len(lengths) != 1:  # VideoSys's CPU cross-attention reshapes the batch's captions as equal
            raise ValueError(f"the task's captions have {sorted(lengths)} tokens; they must all have the same number.")
        self.index = {p: i for i, p in enumerate(self.prompts)}
        self.flow = RFlowScheduler(num_timesteps=1000, sample_method="logit-normal", use_timestep_transform=True)
        # VideoSys's own caption dropout calls .cuda(); the same replacement is done in step().
        self.transformer.y_embedder.uncond_prob = 0.0
        self.transformer.train()
        params = [p for p in self.transformer.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=settings["lr"], weight_decay=0.0)
        self.ema = {k: v.detach().clone() for k, v in self.transformer.state_dict().items()}
        self.step_index = 0
        self.losses: list[float] = []
        # Time spent and the 1-minute load average at each checkpoint: how busy the machine was.
        self.elapsed: dict[str, Any] = dict(wall_s=0.0, cpu_s=0.0, load=[])

    def batch(self, size: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Clean latents and the transformer's keyword arguments for ``size`` random clips."""
        specs = sample_specs(size, torch.default_generator)
        # vae.encode(render_clips(...)), the work cut to the frames and cell means the encoder keeps.
        kept = self.vae.frame_indices(NUM_FRAMES)
        x0 = self.vae.encode_cells(render_cell_means(specs, NUM_FRAMES, HEIGHT, WIDTH, self.vae.space_factor, kept))
        rows = torch.tensor([self.index[s.prompt] for s in specs])
        y, mask = self.captions[rows], self.caption_mask[rows]
        drop = torch.rand(size) < self.settings["caption_dropout"]
        y = torch.where(drop[:, None, None, None], self.transformer.y_embedder.y_embedding, y)

        def full(value: float) -> torch.Tensor:
            return torch.full((size,), float(value))

        kwargs = dict(
            y=y, mask=mask, fps=full(FPS), height=full(HEIGHT), width=full(WIDTH), num_frames=full(NUM_FRAMES)
        )
        kwargs["ar"] = full(HEIGHT / WIDTH)
        # The sampling run's timestep list, which only PAB reads: a keyword defaulting to None upstream,
        # a required argument in the MagCache repository's copy of VideoSys.
        kwargs["all_timesteps"] = None
        return x0, kwargs

    def step(self) -> float:
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.step_index, self.settings)
        x0, kwargs = self.batch(self.settings["batch_size"])
        loss = self.flow.training_losses(self.transformer, x0, kwargs)["loss"].mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.transformer.parameters(), 1.0)
        self.optimizer.step()
        self.update_ema()
        self.step_index += 1
        self.losses.append(loss.item())
        return self.losses[-1]

    @torch.no_grad()
    def update_ema(self) -> None:
        """The saved weights are a moving average; its decay ramps up over the first steps."""
        decay = min(self.settings["ema"], (1 + self.step_index) / (10 + self.step_index))
        for name, value in self.transformer.state_dict().items():
            if value.dtype.is_floating_point:
                self.ema[name].lerp_(value, 1.0 - decay)

    def state(self) -> dict[str, Any]:
        return dict(
            settings=self.settings,
            step=self.step_index,
            transformer=self.transformer.state_dict(),
            optimizer=self.optimizer.state_dict(),
            ema=self.ema,
            rng=torch.get_rng_state(),
            losses=self.losses,
            elapsed=self.elapsed,
        )

    def load_state(self, state: dict[str, Any]) -> None:
        self.transformer.load_state_dict(state["transformer"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.ema = state["ema"]
        torch.set_rng_state(state["rng"])
        self.step_index, self.losses = state["step"], list(state["losses"])
        self.elapsed = dict(state["elapsed"], load=list(state["elapsed"]["load"]))


def save_checkpoint(path: Path, trainer: Trainer) -> None:
    write_atomic(path, lambda tmp: torch.save(trainer.state(), tmp))


def load_checkpoint(path: Path, trainer: Trainer) -> None:
    state = torch.load(path, weights_only=False)
    if state["settings"] != trainer.settings:
        changed = sorted(k for k in trainer.settings if state["settings"].get(k) != trainer.settings[k])
        raise ValueError(
            f"{path} was written with other settings ({', '.join(changed)} differ); rerun with the same options "
            f"to resume, or use another --out to start afresh."
        )
    trainer.load_state(state)


def _versions() -> dict[str, str]:
    from importlib import metadata

    import magcache_videosys

    from ..videosys_compat import videosys_version

    versions = {"python": platform.python_version(), "magcache_videosys": magcache_videosys.__version__}
    for name in ("torch", "transformers", "diffusers", "tokenizers", "safetensors", "numpy"):
        versions[name] = metadata.version(name)
    versions["videosys"] = videosys_version()
    return versions


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def smoothed(values: Sequence[float], window: int = SMOOTHING) -> list[float]:
    """Trailing moving average (shorter at the start)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_loss(losses: Sequence[float], path: Path, title: str) -> None:
    from ..plots import figure_module, save_png

    plt = figure_module()
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = range(1, len(losses) + 1)
    ax.plot(steps, losses, lw=0.5, alpha=0.35, label="loss per step")
    ax.plot(steps, smoothed(losses), lw=1.5, label=f"mean of the last {SMOOTHING} steps")
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("rectified-flow velocity loss (MSE)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    try:
        save_png(fig, path)
    finally:
        plt.close(fig)


def finish(out: Path, trainer: Trainer, argv: Sequence[str], threads: int) -> dict[str, Any]:
    """Write the weights, the loss curve and the provenance of a completed run."""
    settings = trainer.settings
    final_loss = smoothed(trainer.losses)[-1]
    weights = out / "testbed.safetensors"
    metadata = dict(model_config=settings["model_config"], clip=settings["clip"], steps=trainer.step_index)
    save_weights(weights, trainer.ema, trainer.text_encoder.state_dict(), metadata)
    write_csv_atomic(out / "loss.csv", ["step", "loss"], [[i + 1, v] for i, v in enumerate(trainer.losses)])
    title = (
        f"test bed: STDiT3 depth {settings['model_config']['depth']}, hidden {settings['model_config']['hidden_size']}"
    )
    plot_loss(trainer.losses, out / "loss.png", title)
    params = sum(p.numel() for p in trainer.transformer.parameters())
    load = trainer.elapsed["load"] or [os.getloadavg()[0]]
    provenance = dict(
        command="python -m magcache_videosys.testbed.train " + shlex.join(argv),
        settings=settings,
        task_geometry=dict(travel=task.TRAVEL, start=task.START, across=task.ACROSS, radius=task.RADIUS),
        final_loss=final_loss,
        final_loss_definition=f"mean training loss of the last {min(SMOOTHING, len(trainer.losses))} steps",
        first_loss=trainer.losses[0],
        transformer_parameters=params,
        text_encoder_parameters=sum(p.numel() for p in trainer.text_encoder.parameters()),
        weights=dict(file=weights.name, bytes=weights.stat().st_size, sha256=_sha256(weights)),
        wall_time_s=round(trainer.elapsed["wall_s"], 1),
        cpu_time_s=round(trainer.elapsed["cpu_s"], 1),
        cpu_share=round(trainer.elapsed["cpu_s"] / max(trainer.elapsed["wall_s"], 1e-9), 3),
        cpu_share_definition="process CPU time / wall time; with one torch thread, 1.0 means a whole core",
        torch_threads=threads,
        machine=dict(
            platform=platform.platform(),
            cpus=os.cpu_count(),
            load_average_1min=dict(mean=statistics.fmean(load), max=max(load), samples=len(load)),
        ),
        versions=_versions(),
    )
    write_json_atomic(out / "provenance.json", provenance)
    return provenance


def train(args: argparse.Namespace, argv: Sequence[str]) -> int:
    out = check_output_folder(args.out, "--out")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    trainer = Trainer(settings_of(args))
    checkpoint = out / "checkpoint.pt"
    if checkpoint.exists():
        load_checkpoint(checkpoint, trainer)
    out.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=args.steps, initial=trainer.step_index, desc="training", unit="step", disable=args.no_progress)
    wall, cpu = time.perf_counter(), time.process_time()

    def account() -> None:
        nonlocal wall, cpu
        now_wall, now_cpu = time.perf_counter(), time.process_time()
        trainer.elapsed["wall_s"] += now_wall - wall
        trainer.elapsed["cpu_s"] += now_cpu - cpu
        trainer.elapsed["load"].append(os.getloadavg()[0])
        wall, cpu = now_wall, now_cpu

    try:
        while trainer.step_index < args.steps:
            loss = trainer.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            if trainer.step_index % args.checkpoint_every == 0 or trainer.step_index == args.steps:
                account()
                save_checkpoint(checkpoint, trainer)
    finally:
        bar.close()
    provenance = finish(out, trainer, argv, threads)
    print(
        f"trained {trainer.step_index} steps in {provenance['wall_time_s']:.0f} s "
        f"(final loss {provenance['final_loss']:.4f}); weights in {out / 'testbed.safetensors'}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)

    def run() -> int:
        try:
            return train(args, argv)
        except (ValueError, OSError) as exc:
            print(f"testbed.train: error: {exc}", file=sys.stderr)
            return 2

    kept = f"the checkpoint in {args.out} (written every {args.checkpoint_every} steps) is kept; rerun to resume."
    return run_command(run, "testbed.train", on_interrupt=lambda: kept)


if __name__ == "__main__":
    sys.exit(main())
