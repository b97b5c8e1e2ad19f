"""Every (reference folder, generated folder) pair in one table, with latency and speedup when the
folders hold the manifest.jsonl that experiments/opensora.py writes, plus a speedup/fidelity plot.

    python eval/common_metrics/batch_eval.py --gt_video_dirs samples/base --gen_video_dirs samples/*
"""

from __future__ import annotations

import argparse
import os
import sys

# before torch loads: idle OpenMP threads of the metric kernels sleep instead of spinning, leaving
# the cores to the ffmpeg decoders (about 15 % more frame pairs per second end to end on 2 cores)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from magcache_videosys.metrics.cli import add_common_options, evaluate_options, lpips_from_args
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gt_video_dirs", nargs="+", required=True, help="reference (uncached) video folders")
    parser.add_argument(
        "--gen_video_dirs",
        nargs="+",
        required=True,
        help="generated folders (a reference folder among them is skipped)",
    )
    parser.add_argument("--out", default="batch_eval", help="writes OUT.md, OUT.csv and OUT.png (default: %(default)s)")
    add_common_options(parser)
    args = parser.parse_args(argv)
    try:
        metrics = parse_metrics(args.metrics)
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
        written = write_table(rows, metrics, args.out)
        plot = plot_speedup(rows, metrics, f"{args.out}.png")
        for path in written + ([plot] if plot else []):
            print(f"wrote {path}")
    except MetricsError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
