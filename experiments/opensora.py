"""Generate Open-Sora 1.2 videos for VBench with or without a caching method, on one GPU or many.

    python experiments/opensora.py --method base --out samples/base
    python experiments/opensora.py --method magcache-fast --out samples/magcache_fast --baseline samples/base
    python experiments/opensora.py --method magcache --threshold 0.2 --K 4 --retention-ratio 0.2 --out samples/mc
    torchrun --nnodes 4 --nproc-per-node 8 experiments/opensora.py --method magcache-slow --out /shared/mc_slow
    python experiments/opensora.py --method magcache-fast --tiny --limit 2 --out /tmp/smoke   # CPU, no download
    python experiments/opensora.py --method base --testbed --out samples/testbed_base   # CPU, the trained test bed

Rerunning a command resumes it. --dry-run prints the plan without loading a model. Ctrl-C stops
with one line saying what was kept (exit 130). ``--help`` lists every option.
"""

from __future__ import annotations

import sys

from magcache_videosys.experiments.cli import main as run_experiment


def main(argv: list[str] | None = None) -> int:
    return run_experiment("opensora", argv)


if __name__ == "__main__":
    sys.exit(main())
