"""Quality, semantic and total VBench scores from the per-dimension results run_vbench.py wrote.

python eval/vbench/cal_vbench.py --score_dir results/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from magcache_videosys.atomic import write_json_atomic
from magcache_videosys.console import OutputPathError, check_output_file, run_command
from magcache_videosys.metrics.errors import MetricsError
from magcache_videosys.metrics.vbench_scores import compute_scores, format_scores, read_results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--score_dir", required=True, help="folder with VBench's *_eval_results.json files")
    parser.add_argument(
        "--allow-missing", action="store_true", help="score the dimensions present when some are missing (partial)"
    )
    parser.add_argument("--out", help="JSON file for the scores (default: SCORE_DIR/vbench_scores.json)")
    args = parser.parse_args(argv)

    def run() -> None:
        try:
            out = check_output_file(args.out or Path(args.score_dir) / "vbench_scores.json", "--out")
            scores = compute_scores(read_results(args.score_dir), allow_missing=args.allow_missing)
        except (MetricsError, OutputPathError) as error:
            sys.exit(f"error: {error}")
        print(format_scores(scores))
        print(f"wrote {write_json_atomic(out, scores.to_dict())}")

    return run_command(run, "cal_vbench.py", lambda: "Nothing was written.")


if __name__ == "__main__":
    sys.exit(main())
