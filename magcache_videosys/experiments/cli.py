"""The command line of the generation run, shared by every ``experiments/<model>.py``.

Each script names its model family; the family's own options (sizes, weights) and VideoSys
defaults come from ``magcache_videosys/models/``, everything else (methods, prompts, sharding,
resume, the manifest) is the same for all.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..console import OutputPathError, finite_float, run_command
from ..knobs import KNOBS, add_knob_options
from ..models import ModelFamily, family_named
from .manifest import ManifestError
from .methods import METHODS, MethodError, default_settings, method_help
from .prompts import VBENCH_FILE, PromptError
from .runner import (
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
from .sharding import ShardError

USER_ERRORS = (ManifestError, MethodError, OutputPathError, PromptError, RunError, ShardError)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's exit code 2, with the method list where it helps
        if "--method" in message:
            message += f"\nvalid methods: {', '.join(METHODS)}"
        super().error(message)


def build_parser(family: ModelFamily) -> argparse.ArgumentParser:
    defaults = default_settings(family)
    methods = "\n".join(f"  {name:20s} {method_help(m, defaults)}" for name, m in METHODS.items())
    gen = family.generation
    p = _Parser(
        prog=script(family),
        description=f"Generate {family.description} videos for VBench, with a caching method, "
        "sharded over any number of processes.",
        epilog=f"methods (for {family.model_label(defaults)} at the defaults):\n{methods}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--method", required=True, metavar="NAME", help="one of the methods listed below")
    p.add_argument(
        "--out", required=True, type=Path, help="folder for the videos and manifest.jsonl (shared by all processes)"
    )
    knobs = p.add_argument_group(
        "method knobs (--method magcache takes them; teacache --threshold and --coefficients; schedule --schedule)"
    )
    add_knob_options(knobs, KNOBS)
    knobs.add_argument("--max-skip-steps", dest="K", type=KNOBS["K"].parse, default=None, help="same as --K")

    g = p.add_argument_group("prompts")
    g.add_argument(
        "--prompts",
        metavar="FILE",
        help=f'JSON list of objects with "prompt_en" ({VBENCH_FILE} format) or a text '
        f"file with one prompt a line; default: {VBENCH_FILE} of the installed vbench package "
        f"(pip install vbench --no-deps); with --tiny the package's own six smoke prompts, with --testbed the "
        "test bed's own",
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
    for option in gen.options:
        v.add_argument(
            option.flag,
            dest=option.name,
            type=option.parse,
            help=f"{option.help} (default {option.default}; {option.tiny_default} with --tiny)",
        )
    v.add_argument("--steps", dest="num_steps", type=int, help=f"sampling steps (default {gen.steps})")
    v.add_argument("--cfg-scale", type=finite_float, help=f"classifier-free guidance scale (default {gen.cfg_scale})")
    v.add_argument("--dtype", choices=DTYPES, help=f"model dtype (default {defaults['dtype']}; --tiny is fp32)")
    v.add_argument("--num-gpus", type=int, default=1, help="GPUs per video (VideoSys sequence parallelism)")
    for weights in gen.weights:
        v.add_argument(weights.flag, dest=weights.name, help=f"{weights.help} weights (default {weights.default})")

    r = p.add_argument_group("running")
    r.add_argument(
        "--tiny", action="store_true", help="CPU smoke run with tiny random-weight models (no download; needs VideoSys)"
    )
    if family.testbed is not None:
        sizes = ", ".join(f"{o.flag} {family.testbed.options[o.name]}" for o in gen.options)
        r.add_argument(
            "--testbed",
            action="store_true",
            help=f"real videos on the CPU with the trained test bed ({sizes}; prompts: its own file; needs VideoSys)",
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


def options_from_args(family: ModelFamily, args: argparse.Namespace) -> Options:
    gen = family.generation
    return Options(
        method=args.method,
        out=args.out,
        model=family.name,
        knobs={k: getattr(args, k) for k in KNOBS},
        prompts=args.prompts,
        start=args.start,
        end=args.end,
        limit=args.limit,
        num_samples=args.num_samples,
        seed=args.seed,
        generation={o.name: getattr(args, o.name) for o in (*gen.options, *gen.weights)},
        num_steps=args.num_steps,
        cfg_scale=args.cfg_scale,
        dtype=args.dtype,
        num_gpus=args.num_gpus,
        tiny=args.tiny,
        testbed=getattr(args, "testbed", False),
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


def script(family: ModelFamily) -> str:
    return f"experiments/{family.name}.py"


def main(model: str, argv: list[str] | None = None) -> int:
    """``experiments/<model>.py``: the whole command line of the generation run for one family."""
    family = family_named(model, generating=True)
    args = build_parser(family).parse_args(argv)
    _log_to_stderr()
    state: dict[str, Plan] = {}

    def generate() -> int:
        plan = state["plan"] = make_plan(options_from_args(family, args))
        print(describe(plan), flush=True)
        if args.dry_run:
            return 0
        from .generation import VideoSysGenerator, preflight

        result = run(plan, VideoSysGenerator, preflight=preflight)
        print(f"\ngenerated {result.generated} videos in {plan.out}", flush=True)
        print(result.summary)
        for path in result.outputs:
            print(f"wrote {path}")
        return 0

    try:
        return run_command(generate, script(family), on_interrupt=lambda: kept_text(state.get("plan")))
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, WriteError) else 2
