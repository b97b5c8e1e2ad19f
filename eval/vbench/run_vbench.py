"""Run VBench's 16 standard dimensions on a folder of videos named '{prompt}-{index}.mp4' (GPU job).

python eval/vbench/run_vbench.py --video_path samples/magcache_fast --save_path results/
"""

from __future__ import annotations

import argparse
import sys

from magcache_videosys.console import OutputPathError, check_output_folder, run_command
from magcache_videosys.metrics.errors import MetricsError
from magcache_videosys.metrics.vbench_run import VBENCH_DIMENSIONS, run_vbench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video_path", required=True, help="folder of videos named '{prompt}-{index}.mp4'")
    parser.add_argument("--save_path", required=True, help="folder for VBench's per-dimension result files")
    parser.add_argument("--dimensions", default=",".join(VBENCH_DIMENSIONS), help="comma-separated subset")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--full_info", help="VBench_full_info.json (default: the copy inside the vbench package)")
    parser.add_argument(
        "--allow-download", action="store_true", help="let VBench download model files missing from its cache"
    )
    args = parser.parse_args(argv)

    def run() -> None:
        try:
            check_output_folder(args.save_path, "--save_path")
            written = run_vbench(
                args.video_path,
                args.save_path,
                dimensions=[d.strip() for d in args.dimensions.split(",") if d.strip()],
                device=args.device,
                full_info=args.full_info,
                allow_download=args.allow_download,
            )
        except (MetricsError, OutputPathError) as error:
            sys.exit(f"error: {error}")
        print(
            f"{len(written)} VBench result files in {args.save_path}; next: python eval/vbench/cal_vbench.py "
            f"--score_dir {args.save_path}"
        )

    return run_command(
        run, "run_vbench.py", lambda: f"Finished dimensions keep their result files in {args.save_path}."
    )


if __name__ == "__main__":
    sys.exit(main())
