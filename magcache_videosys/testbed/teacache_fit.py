"""``python -m magcache_videosys.testbed.teacache_fit --out DIR``: TeaCache's polynomial for the test bed.

Generates the study's calibration prompts (held out from the test bed's prompt file) uncached
through the real ``OpenSoraPipeline`` and RFLOW (30 steps, batched CFG 7.0), records per step the
relative L1 change of block 0's modulated input and of the model output
(``teacache_fit.ChangeRecorder``), and fits TeaCache's degree-4 polynomial. Writes
``DIR/teacache_fit.json`` (coefficients, every (x, y) pair, the fit's error, the prompts and seeds)
and ``DIR/teacache_fit.png`` (the pairs, the fit and the published Open-Sora 1.2 polynomial).
The coefficients ship as ``opensora-testbed`` in ``models/opensora.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from ..atomic import write_json_atomic
from ..console import check_output_folder, int_at_least, run_command
from .model import GENERATE_KWARGS, WEIGHTS, testbed_opensora_pipeline
from .study import CFG_SCALE, PROMPTS, STEPS

NAME = "opensora-testbed"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m magcache_videosys.testbed.teacache_fit",
        description="Fit TeaCache's rescaling polynomial for the trained test bed, the way TeaCache fits it.",
    )
    parser.add_argument("--out", required=True, help="folder for teacache_fit.json and teacache_fit.png")
    parser.add_argument("--weights", default=str(WEIGHTS), help="test-bed weights (default: the shipped ones)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds per prompt (default 0 1)")
    parser.add_argument("--prompts", type=int_at_least(1), default=len(PROMPTS), help="prompts (default all)")
    return parser


def evaluate(coefficients: Sequence[float], x: float) -> float:
    value = 0.0
    for c in coefficients:
        value = value * x + c
    return value


def fit(pipeline: Any, prompts: Sequence[str], seeds: Sequence[int]) -> dict[str, Any]:
    """The (x, y) pairs of uncached runs and the polynomial fitted to them."""
    from ..teacache_fit import DEGREE, ChangeRecorder, fit_polynomial

    recorder = ChangeRecorder(pipeline.transformer)
    try:
        for prompt in prompts:
            for seed in seeds:
                recorder.new_run()
                pipeline.generate(prompt, seed=seed, verbose=False, **GENERATE_KWARGS)
    finally:
        recorder.close()
    coefficients = fit_polynomial(recorder.x, recorder.y)
    errors = [abs(evaluate(coefficients, x) - y) for x, y in zip(recorder.x, recorder.y)]
    return dict(
        name=NAME,
        coefficients=list(coefficients),
        degree=DEGREE,
        mean_abs_error=sum(errors) / len(errors),
        mean_y=sum(recorder.y) / len(recorder.y),
        prompts=list(prompts),
        seeds=list(seeds),
        steps=STEPS,
        cfg_scale=CFG_SCALE,
        x=recorder.x,
        y=recorder.y,
        definition="x: relative L1 change of block 0's modulated input between consecutive steps; y: that of the "
        "transformer output; coefficients: numpy.polyfit(x, y, 4), highest power first",
    )


def plot(result: dict[str, Any], path: Path) -> None:
    from ..models import teacache_coefficients
    from ..plots import figure_module, save_png

    plt = figure_module()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(result["x"], result["y"], s=6, alpha=0.5, label="test bed, per step")
    xs = [max(result["x"]) * i / 200 for i in range(201)]
    ax.plot(xs, [evaluate(result["coefficients"], x) for x in xs], color="tab:green", label="fitted (degree 4)")
    published = teacache_coefficients()["opensora-v1.2"]
    ax.plot(xs, [evaluate(published, x) for x in xs], color="tab:red", ls="--", label="published Open-Sora 1.2")
    ax.set_ylim(0, max(result["y"]) * 1.3)
    ax.set_xlabel("relative L1 change of the modulated input")
    ax.set_ylabel("relative L1 change of the output")
    ax.legend(fontsize=8)
    try:
        save_png(fig, path)
    finally:
        plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> int:
        from ..configs import OpenSoraConfig

        out = check_output_folder(args.out, "--out")
        pipeline = testbed_opensora_pipeline(
            OpenSoraConfig(num_sampling_steps=STEPS, cfg_scale=CFG_SCALE), args.weights
        )
        result = fit(pipeline, PROMPTS[: args.prompts], args.seeds)
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "teacache_fit.json", result)
        plot(result, out / "teacache_fit.png")
        print(f"coefficients (highest power first): {result['coefficients']}")
        print(
            f"{len(result['x'])} pairs, mean |fit - y| {result['mean_abs_error']:.4f} (mean y {result['mean_y']:.4f})"
        )
        return 0

    return run_command(run, "testbed.teacache_fit")


if __name__ == "__main__":
    sys.exit(main())
