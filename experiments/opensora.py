"""Generate Open-Sora 1.2 videos for VBench with or without a caching method, on one GPU or many.

    python experiments/opensora.py --method base --out samples/base
    python experiments/opensora.py --method magcache-fast --out samples/magcache_fast --baseline samples/base
    python experiments/opensora.py --method magcache --threshold 0.2 --K 4 --retention-ratio 0.2 --out samples/mc
    torchrun --nnodes 4 --nproc-per-node 8 experiments/opensora.py --method magcache-slow --out /shared/mc_slow
    python experiments/opensora.py --method magcache-fast --tiny --limit 2 --out /tmp/smoke   # CPU, no download

Rerunning a command resumes it. --dry-run prints the plan without loading a model. Ctrl-C stops
with one line saying what was kept (exit 130).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from magcache_videosys.console import OutputPathError, finite_float, run_command
from magcache_videosys.experiments.manifest import ManifestError
from magcache_videosys.experiments.methods import KNOBS, METHODS, MethodError
from magcache_videosys.experiments.prompts import VBENCH_FILE, PromptError
from magcache_videosys.experiments.runner import (
    DTYPES,
    Options,
    Plan,
    RunError,
    WriteError,
    describe,
    kept_text,
    make_plan,
    run,
)
from magcache_videosys.experiments.sharding import ShardError

USER_ERRORS = (ManifestError, MethodError, OutputPathError, PromptError, RunError, ShardError)
NAME = "experiments/opensora.py"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's exit code 2, with the method list where it helps
        if "--method" in message:
            message += f"\nvalid methods: {', '.join(METHODS)}"
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    methods = "\n".join(f"  {name:20s} {m.help}" for name, m in METHODS.items())
    p = _Parser(
        prog="experiments/opensora.py",
        description="Generate Open-Sora 1.2 videos for VBench, with a caching method, "
        "sharded over any number of processes.",
        epilog=f"methods:\n{methods}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--method", required=True, metavar="NAME", help="one of the methods listed below")
    p.add_argument(
        "--out", required=True, type=Path, help="folder for the videos and manifest.jsonl (shared by all processes)"
    )
    knobs = p.add_argument_group("method knobs (only --method magcache takes them)")
    for key, knob in KNOBS.items():
        knobs.add_argument(f"--{knob.flag}", dest=key, type=knob.type, default=None, help=knob.help)
    knobs.add_argument("--max-skip-steps", dest="K", type=int, default=None, help="same as --K")

    g = p.add_argument_group("prompts")
    g.add_argument(
        "--prompts",
        metavar="FILE",
        help=f'JSON list of objects with "prompt_en" ({VBENCH_FILE} format) or a text '
        f"file with one prompt a line; default: {VBENCH_FILE} of the installed vbench package "
        f"(pip install vbench --no-deps), and with --tiny the package's own six smoke prompts",
    )
    g.add_argument("--start", type=int, default=0, help="first distinct prompt to take (0-based)")
    g.add_argument("--end", type=int, help="stop before this distinct prompt")
    g.add_argument("--limit", type=int, help="take this many distinct prompts from --start")
    g.add_argument(
        "--num-samples",
        type=int,
        default=5,
        help="videos per prompt, named {prompt}-{index}.mp4 with seed = "
        "--seed + index (5: the VBench protocol; 1: the MagCache paper's table)",
    )
    g.add_argument("--seed", type=int, default=0, help="seed of sample 0")

    v = p.add_argument_group("generation (VideoSys options)")
    v.add_argument("--resolution", help="e.g. 144p, 240p, 360p, 480p, 720p (default 480p; 144p with --tiny)")
    v.add_argument("--aspect-ratio", default="9:16", help="e.g. 9:16, 16:9, 3:4, 4:3, 1:1")
    v.add_argument(
        "--frames", dest="num_frames", help="frame count or a duration such as 2s (default 51; 17 with --tiny)"
    )
    v.add_argument("--steps", dest="num_steps", type=int, default=30, help="sampling steps")
    v.add_argument("--cfg-scale", type=finite_float, default=7.0, help="classifier-free guidance scale")
    v.add_argument("--dtype", choices=DTYPES, help="model dtype (default bf16; --tiny is fp32)")
    v.add_argument("--num-gpus", type=int, default=1, help="GPUs per video (VideoSys sequence parallelism)")
    v.add_argument("--transformer", help="Open-Sora STDiT3 weights (default hpcai-tech/OpenSora-STDiT-v3)")
    v.add_argument("--vae", help="VAE weights (default hpcai-tech/OpenSora-VAE-v1.2)")
    v.add_argument("--text-encoder", help="T5 weights (default DeepFloyd/t5-v1_1-xxl)")

    r = p.add_argument_group("running")
    r.add_argument(
        "--tiny", action="store_true", help="CPU smoke run with tiny random-weight models (no download; needs VideoSys)"
    )
    r.add_argument(
        "--shard", metavar="I/N", help="take shard I of N (without torchrun or srun, which set it themselves)"
    )
    r.add_argument(
        "--baseline", type=Path, metavar="DIR", help="output folder of the base run: the summary shows speedups"
    )
    r.add_argument("--dry-run", action="store_true", help="print the plan and exit without loading a model")
    r.add_argument(
        "--verbose", action="store_true", help="also show VideoSys's own log lines and warnings (hidden by default)"
    )
    return p


def options_from_args(args: argparse.Namespace) -> Options:
    return Options(
        method=args.method,
        out=args.out,
        knobs={k: getattr(args, k) for k in KNOBS},
        prompts=args.prompts,
        start=args.start,
        end=args.end,
        limit=args.limit,
        num_samples=args.num_samples,
        seed=args.seed,
        resolution=args.resolution,
        aspect_ratio=args.aspect_ratio,
        num_frames=args.num_frames,
        num_steps=args.num_steps,
        cfg_scale=args.cfg_scale,
        dtype=args.dtype,
        num_gpus=args.num_gpus,
        transformer=args.transformer,
        vae=args.vae,
        text_encoder=args.text_encoder,
        tiny=args.tiny,
        shard=args.shard,
        baseline=args.baseline,
        dry_run=args.dry_run,
        verbose=args.verbose,
    )


def _log_to_stderr() -> None:
    """The package's own messages, plainly, whatever VideoSys does to the root logger."""
    logger = logging.getLogger("magcache_videosys")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _log_to_stderr()
    state: dict[str, Plan] = {}

    def generate() -> int:
        plan = state["plan"] = make_plan(options_from_args(args))
        print(describe(plan), flush=True)
        if args.dry_run:
            return 0
        from magcache_videosys.experiments.generation import VideoSysGenerator, preflight

        result = run(plan, VideoSysGenerator, preflight=preflight)
        print(f"\ngenerated {result.generated} videos in {plan.out}", flush=True)
        print(result.summary)
        for path in result.outputs:
            print(f"wrote {path}")
        return 0

    try:
        return run_command(generate, NAME, on_interrupt=lambda: kept_text(state.get("plan")))
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, WriteError) else 2


if __name__ == "__main__":
    sys.exit(main())
