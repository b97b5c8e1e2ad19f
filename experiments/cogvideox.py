"""Generate CogVideoX videos (2b by default; --model-path THUDM/CogVideoX-5b for 5b) for VBench with or
without a caching method, on one GPU or many.

    python experiments/cogvideox.py --method base --out samples/cogvideox_base
    python experiments/cogvideox.py --method teacache-fast --out samples/cogvideox_teacache_fast
    python experiments/cogvideox.py --method magcache --mag-ratios cogvideox-50steps.json --out samples/cogvideox_mc
    python experiments/cogvideox.py --method pab --tiny --limit 1 --out /tmp/smoke   # CPU, no download

The methods and options are those of experiments/opensora.py, with this model's sizes, weights and
presets; ``--help`` lists them and what each method means for this model.
"""

from __future__ import annotations

import sys

from magcache_videosys.experiments.cli import main as run_experiment


def main(argv: list[str] | None = None) -> int:
    return run_experiment("cogvideox", argv)


if __name__ == "__main__":
    sys.exit(main())
