"""The MagCache paper's Table 1 in miniature, on the trained test bed, in one command.

    PYTHONPATH=/path/to/VideoSys python benchmarks/testbed_table.py --out benchmarks/results/testbed_table

Every method generates the test bed's prompts (``--limit``, default 16) x ``--num-samples`` seeds
(default 2) with ``experiments/opensora.py --testbed``, and ``eval/common_metrics/batch_eval.py``
scores each against the uncached videos: both run as subprocesses, exactly as a user runs them.
Methods: base; MagCache slow, fast and turbo with the test bed's own table (``opensora-testbed``,
the presets' threshold, K and retention) and with the shipped Open-Sora 1.2 table (the published
presets, as a user would naively run them); TeaCache slow and fast with the coefficients fitted for
the test bed (``opensora-testbed``) and with the published Open-Sora 1.2 ones; PAB.

Speed is the transformer loop's CPU time (``cpu_transformer_s`` of each record, one torch thread)
against base for the same prompt and seed, median over the videos; the prompts are split into
``--rounds`` chunks and every method generates a chunk before any generates the next (in an order
that rotates), so the load of a shared machine falls on all methods alike. The first video of
each process (its warm-up) is left out. Generation and the evaluation resume: rerun the command.
Writes ``OUT/testbed_table.md``, ``.csv`` and ``.png`` (speed against PSNR); the videos go to
``--videos`` (default ``OUT/videos``).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from magcache_videosys.atomic import write_csv_atomic, write_text_atomic  # noqa: E402
from magcache_videosys.console import check_output_folder, int_at_least, run_command  # noqa: E402
from magcache_videosys.experiments import manifest as mf  # noqa: E402
from magcache_videosys.experiments.prompts import load_prompts  # noqa: E402
from magcache_videosys.magcache import PRESETS  # noqa: E402
from magcache_videosys.models import family_named  # noqa: E402

STEPS = 30
EXPERIMENT = ROOT / "experiments" / "opensora.py"
BATCH_EVAL = ROOT / "eval" / "common_metrics" / "batch_eval.py"


@dataclass(frozen=True)
class Row:
    name: str  # the folder under --videos
    label: str
    group: str  # which table or coefficients
    args: tuple[str, ...]


def _own_table(speed: str) -> tuple[str, ...]:
    p = PRESETS[f"opensora-{speed}"]
    knobs = ("--threshold", str(p["threshold"]), "--K", str(p["max_skip_steps"]))
    return (
        "--method",
        "magcache",
        "--mag-ratios",
        "opensora-testbed",
        *knobs,
        "--retention-ratio",
        str(p["retention_ratio"]),
    )


ROWS = (
    Row("base", "base", "uncached", ("--method", "base")),
    *(
        Row(f"magcache_{s}_testbed", f"MagCache-{s}", "test bed's table", _own_table(s))
        for s in ("slow", "fast", "turbo")
    ),
    *(
        Row(f"magcache_{s}_opensora", f"MagCache-{s}", "Open-Sora 1.2 table", ("--method", f"magcache-{s}"))
        for s in ("slow", "fast", "turbo")
    ),
    *(
        Row(
            f"teacache_{s}_testbed",
            f"TeaCache-{s}",
            "fitted coefficients",
            ("--method", "teacache", "--threshold", t, "--coefficients", "opensora-testbed"),
        )
        for s, t in (("slow", "0.1"), ("fast", "0.2"))
    ),
    *(
        Row(f"teacache_{s}_opensora", f"TeaCache-{s}", "Open-Sora 1.2 coefficients", ("--method", f"teacache-{s}"))
        for s in ("slow", "fast")
    ),
    Row("pab", "PAB", "VideoSys default", ("--method", "pab")),
)
COLUMNS = (
    "method",
    "table / coefficients",
    "videos",
    "full passes (mean)",
    "ideal speedup",
    "CPU-time speedup (median)",
    "speedup IQR",
    "PSNR",
    "SSIM",
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="benchmarks/testbed_table.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", required=True, type=Path, help="folder for testbed_table.md, .csv and .png")
    p.add_argument("--videos", type=Path, help="folder for every method's videos (default OUT/videos)")
    p.add_argument("--limit", type=int_at_least(1), default=16, help="prompts of the test bed's file (default 16)")
    p.add_argument("--num-samples", type=int_at_least(1), default=2, help="seeds per prompt (default 2)")
    p.add_argument("--rounds", type=int_at_least(1), default=2, help="chunks of prompts the methods take turns on")
    p.add_argument("--methods", help="comma-separated subset of the rows' folder names (base is always run)")
    return p


def _env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _done(folder: Path, prompts: set[str]) -> int:
    if not folder.is_dir():
        return 0
    return sum(1 for r in mf.load_records(folder)[0].values() if r.prompt in prompts and (folder / r.video).is_file())


def _run(command: list[str], log: Path) -> None:
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"$ {' '.join(command)}\n")
        f.flush()
        code = subprocess.call(command, stdout=f, stderr=subprocess.STDOUT, env=_env(), cwd=ROOT)
    if code != 0:
        tail = "\n".join(log.read_text(encoding="utf-8").splitlines()[-5:])
        raise RuntimeError(f"{command[1]} exited with {code}; the end of {log}:\n{tail}")


def generate(rows: tuple[Row, ...], videos: Path, prompts: list[str], args: argparse.Namespace, log: Path) -> None:
    """Every row on every chunk of prompts, chunk by chunk, rows in a rotating order."""
    size = -(-len(prompts) // args.rounds)
    chunks = [(start, min(start + size, len(prompts))) for start in range(0, len(prompts), size)]
    total, n, started = len(chunks) * len(rows), 0, time.perf_counter()
    for r, (start, end) in enumerate(chunks):
        order = rows[r % len(rows) :] + rows[: r % len(rows)]
        for row in order:
            n += 1
            want = (end - start) * args.num_samples
            folder = videos / row.name
            if _done(folder, set(prompts[start:end])) < want:
                command = [sys.executable, str(EXPERIMENT), "--testbed", *row.args, "--out", str(folder)]
                command += ["--start", str(start), "--end", str(end), "--num-samples", str(args.num_samples)]
                _run(command, log)
            elapsed = time.perf_counter() - started
            where = f"round {r + 1}/{len(chunks)} {row.name}: prompts {start}..{end - 1}"
            print(f"[{n}/{total}] {where} done ({elapsed:.0f} s)", flush=True)


def evaluate(rows: tuple[Row, ...], videos: Path, out: Path, log: Path) -> dict[str, dict[str, str]]:
    """``batch_eval.py`` of every row against base, once (rerun when a folder changed); its CSV rows by folder."""
    stem = out / "batch_eval"
    generated = [str(videos / row.name) for row in rows if row.name != "base"]
    command = [sys.executable, str(BATCH_EVAL), "--gt_video_dirs", str(videos / "base"), "--gen_video_dirs", *generated]
    command += ["--metrics", "psnr,ssim", "--out", str(stem)]
    print(f"scoring {len(generated)} folders against base with eval/common_metrics/batch_eval.py")
    _run(command, log)
    with open(stem.with_name(stem.name + ".csv"), newline="", encoding="utf-8") as f:
        return {Path(r["generated"]).name: r for r in csv.DictReader(f)}


def measure(rows: tuple[Row, ...], videos: Path, prompts: set[str]) -> dict[str, dict[str, float]]:
    """Mean passes and the median (with quartiles) of base's loop CPU time over the row's, per video."""
    records = {row.name: mf.load_records(videos / row.name)[0] for row in rows}
    base = records["base"]
    result = {}
    for row in rows:
        mine = [r for r in records[row.name].values() if r.prompt in prompts]
        ratios = [
            base[r.video].cpu_transformer_s / r.cpu_transformer_s
            for r in mine
            if not r.warmup and r.video in base and not base[r.video].warmup and r.cpu_transformer_s
        ]
        quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [float("nan")] * 3
        result[row.name] = dict(
            videos=len(mine),
            passes=statistics.fmean(r.num_computed for r in mine),
            speedup=statistics.median(ratios) if ratios else float("nan"),
            low=quartiles[0],
            high=quartiles[2],
            timed=len(ratios),
        )
    return result


def table(
    rows: tuple[Row, ...], speed: dict[str, dict[str, float]], scores: dict[str, dict[str, str]]
) -> list[list[str]]:
    lines = []
    for row in rows:
        s, q = speed[row.name], scores.get(row.name, {})
        lines.append(
            [
                row.label,
                row.group,
                str(s["videos"]),
                f"{s['passes']:.1f}",
                f"{STEPS / s['passes']:.2f}x",
                f"{s['speedup']:.2f}x",
                f"{s['low']:.2f}-{s['high']:.2f}x",
                q.get("PSNR", "-") or "-",
                q.get("SSIM", "-") or "-",
            ]
        )
    return lines


def markdown(lines: list[list[str]]) -> str:
    out = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    return "\n".join(out + ["| " + " | ".join(line) + " |" for line in lines]) + "\n"


def plot(lines: list[list[str]], path: Path) -> None:
    """PSNR against the measured CPU-time speedup (left) and against the passes' ideal speedup (right)."""
    from magcache_videosys.plots import figure_module, save_png

    plt = figure_module()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    groups = list(dict.fromkeys(line[1] for line in lines[1:]))
    style = {
        g: (m, c) for g, m, c in zip(groups, "osD^v", ("tab:green", "tab:blue", "tab:orange", "tab:red", "tab:purple"))
    }
    for ax, column, title in (
        (axes[0], 5, "measured speedup (loop CPU time, median)"),
        (axes[1], 4, "ideal speedup (30 / passes)"),
    ):
        for line in lines[1:]:
            speed, psnr = float(line[column].rstrip("x")), float(line[7])
            marker, colour = style[line[1]]
            label = f"{line[0].split('-')[0]}, {line[1]}"
            ax.scatter(speed, psnr, marker=marker, color=colour, s=40, label=label)
            ax.annotate(line[0].split("-")[-1], (speed, psnr), fontsize=7, xytext=(4, 2), textcoords="offset points")
        ax.set_xlabel(title)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    axes[1].legend(unique.values(), unique.keys(), fontsize=8, loc="upper right")
    axes[0].set_ylabel("PSNR vs base (dB)")
    fig.suptitle("Table 1 in miniature: the trained test bed (Open-Sora 1.2 STDiT3, CPU)", fontsize=10)
    try:
        save_png(fig, path)
    finally:
        plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> int:
        out = check_output_folder(args.out, "--out").absolute()  # the subprocesses run in the repository
        videos = (args.videos or out / "videos").absolute()
        rows = ROWS
        if args.methods:
            wanted = {"base", *args.methods.split(",")}
            unknown = wanted - {row.name for row in ROWS}
            if unknown:
                raise SystemExit(
                    f"error: unknown --methods {', '.join(sorted(unknown))}; rows: {', '.join(r.name for r in ROWS)}"
                )
            rows = tuple(row for row in ROWS if row.name in wanted)
        prompts = list(load_prompts(family_named("opensora").testbed.prompts).prompts[: args.limit])
        out.mkdir(parents=True, exist_ok=True)
        videos.mkdir(parents=True, exist_ok=True)
        log = out / "testbed_table.log"
        print(f"{len(rows)} methods x {len(prompts)} prompts x {args.num_samples} seeds; commands and output in {log}")
        generate(rows, videos, prompts, args, log)
        scores = evaluate(rows, videos, out, log)
        lines = table(rows, measure(rows, videos, set(prompts)), scores)
        write_text_atomic(out / "testbed_table.md", markdown(lines))
        write_csv_atomic(out / "testbed_table.csv", list(COLUMNS), lines)
        plot(lines, out / "testbed_table.png")
        print(markdown(lines))
        for suffix in ("md", "csv", "png"):
            print(f"wrote {out / f'testbed_table.{suffix}'}")
        return 0

    return run_command(run, "testbed_table.py")


if __name__ == "__main__":
    sys.exit(main())
