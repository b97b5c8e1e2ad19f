"""LPIPS / SSIM / PSNR of every generated video against the reference video of the same name.

python eval/common_metrics/eval.py --gt_video_dir samples/base --generated_video_dir samples/magcache_fast
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# before torch loads: idle OpenMP threads of the metric kernels sleep instead of spinning, leaving
# the cores to the ffmpeg decoders (about 15 % more frame pairs per second end to end on 2 cores)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from magcache_videosys.console import OutputPathError, check_output_file, check_output_folder, int_at_least, run_command
from magcache_videosys.metrics.cli import (
    add_common_options,
    evaluate_options,
    evaluation_settings,
    interrupted,
    lpips_from_args,
    one_line_warnings,
)
from magcache_videosys.metrics.errors import MetricsError
from magcache_videosys.metrics.evaluate import evaluate, format_summary, results_paths, write_results


def check_out(out: str, generated_dir: str) -> None:
    """Before any work: the files ``--out`` names can be written."""
    if Path(out).is_dir() or out.endswith(("/", os.sep)):
        check_output_folder(out, "--out")
        if not Path(out).is_dir():
            return  # made when the results are written
    for path in results_paths(out, generated_dir):
        check_output_file(path, "--out")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gt_video_dir", required=True, help="folder of reference (uncached) videos")
    parser.add_argument("--generated_video_dir", required=True, help="folder of accelerated videos, same file names")
    parser.add_argument(
        "--out",
        help="write OUT.json (per-video and mean values) and OUT.csv (one row per video); "
        "for a folder, FOLDER/<generated folder name>.json and .csv",
    )
    parser.add_argument(
        "--worst", type=int_at_least(0), default=5, help="worst videos to list by LPIPS and PSNR (default: 5)"
    )
    add_common_options(parser)
    args = parser.parse_args(argv)
    started = time.time()
    outputs = results_paths(args.out, args.generated_video_dir) if args.out else ()

    def run() -> None:
        one_line_warnings()
        try:
            if args.out:
                check_out(args.out, args.generated_video_dir)
            lpips_model = lpips_from_args(args)
            (result,) = evaluate(args.gt_video_dir, [args.generated_video_dir], **evaluate_options(args, lpips_model))
            print(format_summary(result, worst=args.worst))
            if args.out:
                for path in write_results(result, args.out, evaluation_settings(args, lpips_model)):
                    print(f"wrote {path}")
        except (MetricsError, OutputPathError) as error:
            sys.exit(f"error: {error}")

    return run_command(run, "eval.py", lambda: interrupted(outputs, started))


if __name__ == "__main__":
    sys.exit(main())
