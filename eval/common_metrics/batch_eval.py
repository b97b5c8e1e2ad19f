"""Every (reference folder, generated folder) pair in one table, with latency and speedup when the
folders hold the manifest.jsonl that experiments/opensora.py writes, plus a speedup/fidelity plot.

    python eval/common_metrics/batch_eval.py --gt_video_dirs samples/base --gen_video_dirs samples/*

Folders without videos (and the reference folder, when a glob matches it) are passed over with a note.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

# before torch loads: idle OpenMP threads of the metric kernels sleep instead of spinning, leaving
# the cores to the ffmpeg decoders (about 15 % more frame pairs per second end to end on 2 cores)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from magcache_videosys.console import OutputPathError, check_output_file, run_command
from magcache_videosys.metrics.cli import (
    add_common_options,
    evaluate_options,
    interrupted,
    lpips_from_args,
    one_line_warnings,
)
from magcache_videosys.metrics.errors import MetricsError
from magcache_videosys.metrics.evaluate import evaluate, format_summary, parse_metrics
from magcache_videosys.metrics.report import (
    batch_pairs,
    build_rows,
    markdown_table,
    plot_speedup,
    speedup_notes,
    write_table,
)

NO_PLOT = "matplotlib is not installed (pip install matplotlib, or pip install -e '.[eval]')"


def default_out(reference_dirs: list[str]) -> Path:
    """``batch_eval`` in the folder that holds the (first) reference folder."""
    reference = Path(reference_dirs[0])
    if reference.name in ("", ".", ".."):
        reference = reference.resolve()
    return reference.parent / "batch_eval"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gt_video_dirs", nargs="+", required=True, help="reference (uncached) video folders")
    parser.add_argument(
        "--gen_video_dirs",
        nargs="+",
        required=True,
        help="generated folders (the reference folder, files and folders without videos are passed over)",
    )
    parser.add_argument(
        "--out",
        help="writes OUT.md, OUT.csv and OUT.png (default: batch_eval next to the first reference folder, "
        "e.g. samples/batch_eval.md for samples/base)",
    )
    add_common_options(parser)
    args = parser.parse_args(argv)
    started = time.time()
    out = Path(args.out) if args.out else default_out(args.gt_video_dirs)
    outputs = [out.with_name(out.name + suffix) for suffix in (".md", ".csv", ".png")]

    def run() -> None:
        one_line_warnings()
        try:
            metrics = parse_metrics(args.metrics)
            plotting = importlib.util.find_spec("matplotlib") is not None
            for path in outputs if plotting else outputs[:2]:
                check_output_file(path, "--out")
            if not plotting:
                print(f"warning: {outputs[2]} will not be drawn: {NO_PLOT}; the tables will be", file=sys.stderr)
            lpips_model = lpips_from_args(args)
            pairs, notes = batch_pairs(args.gt_video_dirs, args.gen_video_dirs)
            for note in notes:
                print(note)
            results = []
            for reference, generated in pairs:
                results += evaluate(reference, generated, **evaluate_options(args, lpips_model))
            for result in results:
                print(format_summary(result, worst=0))
            rows = build_rows(results)
            print("\n" + markdown_table(rows, metrics))
            for note in speedup_notes(rows):
                print(note)
            for path in write_table(rows, metrics, out):
                print(f"wrote {path}")
            if not plotting:
                print(f"warning: {outputs[2]} was not drawn: {NO_PLOT}", file=sys.stderr)
            elif plot := plot_speedup(rows, metrics, outputs[2]):
                print(f"wrote {plot}")
        except (MetricsError, OutputPathError) as error:
            sys.exit(f"error: {error}")

    return run_command(run, "batch_eval.py", lambda: interrupted(outputs, started))


if __name__ == "__main__":
    sys.exit(main())
