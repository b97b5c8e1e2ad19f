"""Generate Latte-1 videos for VBench with or without a caching method, on one GPU or many.

    python experiments/latte.py --method base --out samples/latte_base
    python experiments/latte.py --method teacache-fast --out samples/latte_teacache_fast --baseline samples/latte_base
    python experiments/latte.py --method magcache --mag-ratios latte-50steps.json --out samples/latte_mc
    python experiments/latte.py --method pab --tiny --limit 1 --out /tmp/smoke   # CPU, no download

The methods and options are those of experiments/opensora.py, with this model's sizes, weights and
presets; ``--help`` lists them and what each method means for this model.
"""

from __future__ import annotations

import sys

from magcache_videosys.experiments.cli import main as run_experiment


def main(argv: list[str] | None = None) -> int:
    return run_experiment("latte", argv)


if __name__ == "__main__":
    sys.exit(main())
