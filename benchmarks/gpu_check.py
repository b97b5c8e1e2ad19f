"""One command for a person with one GPU: MagCache, TeaCache and PAB on VideoSys's Open-Sora 1.2
pipeline at its real size (random weights), the host-device synchronisation each adds, and the
metrics' CUDA path.

Phases, each printed as it starts, the JSON rewritten after each:

1. metrics: PSNR and SSIM (and LPIPS where its weights are present) of synthetic 480p x 51-frame
   pairs on the device against the CPU's fused kernels: frame pairs per second, values compared;
2. warm-up and the block stack's share of the plain loop (marks at the first block's start and the
   last block's end of every step), from which Amdahl's law gives each variant's ideal speedup;
3. synchronisation: one run per variant with ``torch.cuda.set_sync_debug_mode("warn")`` counting
   every synchronisation, split between the plugin's code and the rest, and for MagCache the
   plugin's code under mode "error";
4. timed rounds: every variant once per round, interleaved; the transformer loop and the whole call
   timed with CUDA events, peak memory above the plain pipeline's.

    python benchmarks/gpu_check.py --out gpu_check/           # one GPU; sized for under 8 minutes on an H200
    python benchmarks/gpu_check.py --small --out /tmp/check   # the same code on the CPU, tiny sizes

Writes ``OUT/gpu_check.json`` and ``OUT/gpu_check.md``. Needs VideoSys importable (see README).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from gpu_check_metrics import check_metrics
from gpu_check_model import FULL, SMALL, Bench, Variant, pab_manager_module, variants
from gpu_check_probes import SYNC_MESSAGE, PeakMemory, SyncProbe, stack_marks, stack_seconds, where_raised
from gpu_check_report import render_markdown, save
from stdit3_loop import Timings

from magcache_videosys.console import check_output_folder, float_at_least, int_at_least, run_command
from magcache_videosys.videosys_compat import import_videosys

MODEL_SOURCE = (
    "VideoSys's STDiT3Config defaults and STDiT3_XL_2 in videosys/models/transformers/open_sora_transformer_3d.py: "
    "depth 28, hidden 1152, 16 heads, patch 1x2x2, caption channels 4096, 300 text tokens; "
    "hpcai-tech/OpenSora-STDiT-v3, which OpenSoraPipeline loads by default, is that XL/2 model (its config file "
    "was not read here: nothing can be downloaded)"
)
SMALL_PARTS = (
    "Small on purpose: the text encoder (a 2-layer T5 with a character tokenizer, output width = the caption "
    "channels, 4096 as T5-XXL's at full size) and the VAE (a per-frame AutoencoderKL with Open-Sora 1.2's latent "
    "shape: 4 channels, 8x in space, 17 frames -> 5 in time). Both run once per video outside the transformer "
    "loop, so the loop is timed as with the real ones; the whole call lacks the real T5-XXL's and VAE's fixed cost, "
    "which is the same for every variant and lowers end-to-end speedups."
)
TEACACHE_NOTE = (
    "TeaCache decides from the data: with random weights its presets skip nothing (the modulated input changes "
    "far more per step than with trained weights), so its rows measure its per-step cost (the signal and one "
    "host transfer per step), not its trained speedup. MagCache's and PAB's schedules do not read the data: "
    "their passes here are those of the real model."
)
PAB_NOTE = (
    "PAB runs the block stack at every step and reuses attention outputs inside it, so its passes are the step "
    "count and Amdahl's ideal does not apply."
)
SMALL_NOTE = (
    "--small: a tiny model on the CPU, to check the code path in seconds; its times say nothing about a GPU "
    "(and little about the CPU on a shared machine)."
)
CUDA_SYNC_NOTE = (
    'Sync debug mode "warn" during one whole run per variant, every synchronisation counted: in the plugin code '
    "(the transformer's forward pre-hooks and each block call minus the VideoSys block body it wraps: the run "
    "tracking, the skip decision, the residual bookkeeping) and elsewhere (VideoSys). For MagCache the plugin code "
    'ran under mode "error". The whole transformer call cannot: VideoSys itself synchronises in it (the "elsewhere" '
    "column; e.g. STDiT3.forward's height[0].item() and the caption mask's tolist())."
)
CPU_SYNC_NOTE = (
    "Not checked: torch.cuda.set_sync_debug_mode needs CUDA. The probe's hooks ran (plugin_regions_per_step in "
    "the JSON: the transformer call and every block), so the CUDA run exercises code that has run."
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--small", action="store_true", help="tiny sizes on the CPU (seconds): the same code path")
    parser.add_argument("--rounds", type=int_at_least(1), help="most timed rounds (default 3; 1 with --small)")
    parser.add_argument(
        "--time-budget",
        type=float_at_least(0),
        help="seconds from the start after which no further timed round starts if it would end later "
        "(default 420 on the GPU, none with --small; 0: none); at least one round always runs",
    )
    parser.add_argument("--metric-videos", type=int_at_least(1), help="synthetic video pairs (default 8; 2 --small)")
    return parser.parse_args(argv)


class Log:
    """Progress lines with the time since the start."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def __call__(self, message: str) -> None:
        print(f"[{self.elapsed():6.1f}s] {message}", flush=True)


class Active:
    """The variants still in the check. One that raises is recorded with its error and left out from
    then on, so one broken baseline cannot cost the whole GPU run; plain VideoSys, the reference of
    every ratio, must not fail."""

    def __init__(self, chosen: list[Variant], failures: dict[str, str], log: Log, cuda: bool) -> None:
        self.variants = list(chosen)
        self.failures = failures
        self.log = log
        self.cuda = cuda

    def __iter__(self) -> Iterator[Variant]:
        return iter(list(self.variants))

    def attempt(self, variant: Variant, action: Callable[[], Any]) -> Any:
        """``action()``, or None after recording why it failed."""
        try:
            return action()
        except Exception as error:
            if variant is self.variants[0]:
                raise
            text = str(error).strip().splitlines()
            self.failures[variant.name] = (
                f"{type(error).__name__}: {text[0] if text else ''} (at {where_raised(error)})"
            )
            self.log(f"{variant.name} failed and is left out: {self.failures[variant.name]}")
            self.variants.remove(variant)
            if self.cuda:
                torch.cuda.empty_cache()
            return None


def environment(bench: Bench) -> dict[str, Any]:
    videosys = import_videosys()
    cuda = bench.device.type == "cuda"
    copy = "upstream" if pab_manager_module().__name__ == "videosys.core.pab.pab_mgr" else "the MagCache copy"
    return dict(
        python=platform.python_version(),
        torch=torch.__version__,
        cuda=torch.version.cuda if cuda else None,
        device=torch.cuda.get_device_name(bench.device) if cuda else "CPU",
        videosys=f"{Path(videosys.__file__).parent} ({copy})",
    )


def inspect_syncs(bench: Bench, variant: Variant, set_mode: Callable[[str], None]) -> dict[str, Any]:
    """One run with the sync probe (``set_mode``: ``torch.cuda.set_sync_debug_mode``); for MagCache
    the plugin's code must not synchronise at all."""
    pipeline = bench.pipeline(variant)
    probe = SyncProbe(pipeline.transformer, bench.blocks(variant), set_mode)
    error = None
    try:
        with bench.enabled(variant) as pipe:
            probe.cover_pre_hooks()
            try:
                with probe.counting(strict=variant.strict):
                    bench.generate(pipe)
            except RuntimeError as exc:
                if SYNC_MESSAGE not in str(exc):
                    raise
                error = f"{exc} at {where_raised(exc)}"
    finally:
        probe.remove()
    steps = bench.setting.steps
    return dict(
        plugin_per_step=probe.plugin / steps,
        videosys_per_step=probe.other / steps,
        strict=variant.strict,
        error=error,
        plugin_regions_per_step=probe.regions / steps,
    )


def _ignore(mode: str) -> None:
    """The CPU's stand-in for ``torch.cuda.set_sync_debug_mode``."""


def block_stack_share(bench: Bench, variant: Variant) -> float:
    """Fraction of the plain loop spent inside the block stack (first block's start to last block's end)."""
    with bench.enabled(variant) as pipeline, stack_marks(bench.blocks(variant), bench.clock) as marks:
        loop_s, _ = bench.call(variant, pipeline)
    return stack_seconds(marks, bench.clock) / loop_s


def timed_rounds(
    bench: Bench,
    active: Active,
    rounds: int,
    deadline: float | None,
    log: Log,
    after_round: Callable[[dict[str, Any]], None],
) -> None:
    """Every variant once per round, in the same order; ``after_round`` gets the times so far."""
    loops, calls = Timings("wall"), Timings("wall")
    passes: dict[str, int] = {}
    cache: dict[str, int | None] = {}
    peaks: dict[str, int] = {}
    last = 0.0
    for index in range(rounds):
        if index and deadline is not None and log.elapsed() + last > deadline:
            log(f"time budget: stopping after {index} round(s) (another would end past {deadline:.0f}s)")
            break
        started = log.elapsed()
        for variant in active:
            measured = active.attempt(variant, lambda: measure(bench, variant))
            if measured is None:
                continue
            loop_s, call_s, passes[variant.name], cache[variant.name], memory = measured
            loops.add_seconds(variant.name, loop_s)
            calls.add_seconds(variant.name, call_s)
            if memory is not None:
                peaks[variant.name] = max(peaks.get(variant.name, 0), memory)
            timing = f"loop {loop_s:.3f}s, call {call_s:.3f}s, {passes[variant.name]} passes"
            log(f"round {index + 1}: {variant.name}: {timing}")
        last = log.elapsed() - started
        after_round(dict(loops=loops, calls=calls, passes=passes, cache=cache, peaks=peaks, rounds=index + 1))


def measure(bench: Bench, variant: Variant) -> tuple[float, float, int, int | None, int | None]:
    """One timed call: loop and call seconds, passes, cached bytes, peak memory beyond the start (CUDA)."""
    with bench.enabled(variant) as pipeline, PeakMemory(bench.device) as memory:
        loop_s, call_s = bench.call(variant, pipeline)
        passes, cache = bench.passes(variant, pipeline), bench.cache_bytes(pipeline)
    return loop_s, call_s, passes, cache, memory.extra


def loop_rows(chosen: list[Variant], timed: dict, share: float, steps: int) -> list[dict[str, Any]]:
    loops, calls, peaks = timed["loops"], timed["calls"], timed["peaks"]
    plain = chosen[0].name
    rows = []
    for variant in chosen:
        name, passes = variant.name, timed["passes"][variant.name]
        loop_s, call_s = loops.best(name), calls.best(name)
        speedup = loops.best(plain) / loop_s
        ideal = None if variant.method == "pab" else 1.0 / ((1.0 - share) + share * passes / steps)
        rows.append(
            dict(
                variant=name,
                method=variant.method,
                config=None if variant.config is None else variant.config.to_dict(),
                loop_s=loop_s,
                loop_spread=loops.spread(name),
                loop_rounds_s=loops.loops[name],
                call_s=call_s,
                call_rounds_s=calls.loops[name],
                speedup=speedup,
                call_speedup=calls.best(plain) / call_s,
                passes=passes,
                ideal_speedup=ideal,
                achieved_of_ideal=None if ideal is None else speedup / ideal,
                peak_bytes=peaks.get(name),
                peak_bytes_over_plain=peaks[name] - peaks[plain] if name in peaks else None,
                cache_bytes=timed["cache"][name],
            )
        )
    return rows


def run(args: argparse.Namespace, command: str, log: Log) -> dict[str, Any]:
    out = check_output_folder(args.out, "--out")
    setting = SMALL if args.small else FULL
    if setting.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device is visible; run it on a GPU machine, or use --small on the CPU.")
    budget = args.time_budget if args.time_budget is not None else (0.0 if args.small else 420.0)
    rounds = args.rounds or (1 if args.small else 3)
    steps = setting.steps
    data: dict[str, Any] = dict(
        complete=False,
        phase="build",
        command=command,
        setting={
            **asdict(setting),
            "rounds_max": rounds,
            "rounds_run": 0,
            "time_budget_s": budget or None,
            "cpu_threads": torch.get_num_threads(),
        },
        model={},
        stack_share=None,
        rows=[],
        sync=dict(checked=setting.device == "cuda", note="", variants={}),
        metrics={},
        failed={},
        notes=([SMALL_NOTE] if args.small else []) + [SMALL_PARTS, TEACACHE_NOTE, PAB_NOTE],
        phases_s={},
    )

    def phase(name: str) -> None:
        data["phase"] = name
        data["phases_s"][name] = log.elapsed()
        save(out, data)

    log(f"building VideoSys's OpenSoraPipeline: STDiT3 depth {setting.depth}, hidden {setting.hidden_size} ...")
    bench = Bench(setting)
    chosen = variants()
    active = Active(chosen, data["failed"], log, bench.clock.cuda)
    data["environment"] = environment(bench)
    data["setting"]["clock"] = bench.clock.name
    data["model"] = dict(source=MODEL_SOURCE, parameters=bench.parameters(), tokens_per_video=bench.tokens_per_video())
    phase("build")

    small_frames = dict(frames=5, height=64, width=112)
    size = small_frames if args.small else dict(frames=setting.frames, height=480, width=854)
    videos = args.metric_videos or (2 if args.small else 8)
    data["metrics"] = check_metrics(bench.device, videos, log=log, **size)
    phase("metrics")

    log("warm-up: one plain call")
    bench.count_text_tokens(chosen[0])
    data["model"]["text_tokens"] = bench.text_tokens
    data["stack_share"] = block_stack_share(bench, chosen[0])
    log(f"block stack: {100 * data['stack_share']:.2f}% of the plain loop")
    phase("block-stack share")

    data["sync"]["note"] = CUDA_SYNC_NOTE if bench.clock.cuda else CPU_SYNC_NOTE
    set_mode = torch.cuda.set_sync_debug_mode if bench.clock.cuda else _ignore
    for variant in active:
        log(f"synchronisation: {variant.name}")
        found = active.attempt(variant, lambda: inspect_syncs(bench, variant, set_mode))
        if found is not None and not bench.clock.cuda:
            found.update(plugin_per_step=None, videosys_per_step=None)  # nothing synchronises on the CPU
        if found is not None:
            data["sync"]["variants"][variant.name] = found
    phase("synchronisation")

    def after_round(timed: dict[str, Any]) -> None:
        data["setting"]["rounds_run"] = timed["rounds"]
        data["rows"] = loop_rows(active.variants, timed, data["stack_share"], steps)
        phase(f"round {timed['rounds']}")

    timed_rounds(bench, active, rounds, budget or None, log, after_round)
    data["complete"] = True
    phase("done")
    return data


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python benchmarks/gpu_check.py " + " ".join(sys.argv[1:] if argv is None else argv)
    log = Log()
    threads = torch.get_num_threads()
    if args.small:
        torch.set_num_threads(1)  # tiny tensors: more threads only contend, badly so on a shared machine
    try:
        data = run(args, command, log)
    finally:
        torch.set_num_threads(threads)
    print()
    print(render_markdown(data))
    print(f"wrote {Path(args.out) / 'gpu_check.json'} and {Path(args.out) / 'gpu_check.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "gpu_check", on_interrupt=lambda: "The JSON holds the phases that finished."))
