"""Quality, semantic and total VBench scores from the per-dimension results run_vbench.py wrote.

python eval/vbench/cal_vbench.py --score_dir results/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from magcache_videosys.atomic import write_json_atomic
from magcache_videosys.metrics.errors import MetricsError
from magcache_videosys.metrics.vbench_scores import compute_scores, format_scores, read_results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--score_dir", required=True, help="folder with VBench's *_eval_results.json files")
    parser.add_argument(
        "--allow-missing", action="store_true", help="score the dimensions present when some are missing (partial)"
    )
    parser.add_argument("--out", help="JSON file for the scores (default: SCORE_DIR/vbench_scores.json)")
    args = parser.parse_args(argv)
    try:
        scores = compute_scores(read_results(args.score_dir), allow_missing=args.allow_missing)
    except MetricsError as error:
        sys.exit(f"error: {error}")
    print(format_scores(scores))
    out = write_json_atomic(args.out or Path(args.score_dir) / "vbench_scores.json", scores.to_dict())
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
