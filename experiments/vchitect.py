"""Generate Vchitect-2.0 videos for VBench with or without a caching method, on one GPU or many.

    python experiments/vchitect.py --method base --out samples/vchitect_base
    python experiments/vchitect.py --method pab --out samples/vchitect_pab --baseline samples/vchitect_base
    python experiments/vchitect.py --method magcache --mag-ratios vchitect-100steps.json --out samples/vchitect_mc
    python experiments/vchitect.py --method base --tiny --limit 1 --out /tmp/smoke   # CPU, no download

The methods and options are those of experiments/opensora.py, with this model's sizes, weights and
presets; ``--help`` lists them and what each method means for this model.
"""

from __future__ import annotations

import sys

from magcache_videosys.experiments.cli import main as run_experiment


def main(argv: list[str] | None = None) -> int:
    return run_experiment("vchitect", argv)


if __name__ == "__main__":
    sys.exit(main())
