"""Generate Open-Sora-Plan videos (v1.2 by default; --transformer-type 65x512x512 or 221x512x512 for
v1.1) for VBench with or without a caching method, on one GPU or many.

    python experiments/opensora_plan.py --method base --out samples/osp_base
    python experiments/opensora_plan.py --method teacache-fast --transformer-type 65x512x512 --out samples/osp11_tc
    python experiments/opensora_plan.py --method magcache --mag-ratios opensora-plan-100steps.json --out samples/osp_mc
    python experiments/opensora_plan.py --method pab --tiny --limit 1 --out /tmp/smoke   # CPU, no download

The methods and options are those of experiments/opensora.py, with this model's sizes, weights and
presets; ``--help`` lists them and what each method means for this model.
"""

from __future__ import annotations

import sys

from magcache_videosys.experiments.cli import main as run_experiment


def main(argv: list[str] | None = None) -> int:
    return run_experiment("opensora-plan", argv)


if __name__ == "__main__":
    sys.exit(main())
