"""``python -m magcache_videosys`` / ``magcache-videosys``: see a schedule before spending GPU hours.

Subcommands: ``schedule`` (one setting, step by step), ``sweep`` (a grid of settings), ``calibrate``
(measure a ratio table with VideoSys), ``ratios`` (the shipped tables and their provenance).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import textwrap
from pathlib import Path
from typing import Sequence

from .atomic import write_text_atomic
from .magcache import PRESETS, MagCacheConfig
from .ratios import RESAMPLE_METHODS, RatioTable, RatioTableError, load_ratio_table, shipped_tables
from .schedule import SchedulePlan, sweep

KNOBS = ("threshold", "K", "retention_ratio", "ratio_power")


class UsageError(Exception):
    """A command-line mistake; reported as one line with exit status 2."""


# --- shared option handling -------------------------------------------------------------------
def _fit_table(table: RatioTable, steps: int | None, resample: str | None) -> RatioTable:
    """The table for ``steps``; another step count needs an explicit resampling choice."""
    if steps is None or steps == table.num_steps:
        return table
    if resample is None:
        raise UsageError(
            f"table {table.name!r} is for {table.num_steps} steps but --steps is {steps}; add --resample "
            f"{' or --resample '.join(RESAMPLE_METHODS)} to fit it (nearest is what the reference does)."
        )
    return table.resample(steps, resample)


def _config_from_args(args: argparse.Namespace) -> tuple[MagCacheConfig, RatioTable]:
    given = [k for k in KNOBS if getattr(args, k) is not None]
    if args.preset is not None:
        if args.ratios is not None or given:
            fixed = ", ".join(f"--{k.replace('_', '-')}" for k in given) or "--ratios"
            raise UsageError(
                f"--preset {args.preset} fixes the table and knobs, so {fixed} contradicts it; use --ratios with "
                f"explicit knobs instead, or the preset alone."
            )
        base = MagCacheConfig.preset(args.preset)
    else:
        if args.ratios is None:
            raise UsageError("give --preset NAME, or --ratios TABLE with --threshold, --K and --retention-ratio.")
        missing = [k for k in ("threshold", "K", "retention_ratio") if getattr(args, k) is None]
        if missing:
            raise UsageError(f"--ratios needs {', '.join('--' + k.replace('_', '-') for k in missing)} too.")
        base = MagCacheConfig(
            mag_ratios=args.ratios,
            threshold=args.threshold,
            max_skip_steps=args.K,
            retention_ratio=args.retention_ratio,
            ratio_power=args.ratio_power or 1.0,
        )
    table = _fit_table(base.table, args.steps, args.resample)
    return base.replace(mag_ratios=table, resample=args.resample or base.resample), table


def _floats(text: str) -> list[float]:
    """``0.1,0.2`` or an inclusive range ``start:stop:step``."""
    try:
        if ":" in text:
            start, stop, step = (float(x) for x in text.split(":"))
            if step <= 0:
                raise UsageError(f"range {text!r} needs a positive step.")
            count = int(round((stop - start) / step)) + 1
            return [round(start + i * step, 10) for i in range(max(count, 0)) if start + i * step <= stop + 1e-9]
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"cannot read {text!r} as numbers: use a,b,c or start:stop:step.") from None


def _ints(text: str) -> list[int]:
    try:
        if ":" in text:
            start, stop, *step = (int(x) for x in text.split(":"))
            return list(range(start, stop + 1, step[0] if step else 1))
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"cannot read {text!r} as whole numbers: use 1,2,3 or start:stop.") from None


# --- subcommands --------------------------------------------------------------------------------
def cmd_schedule(args: argparse.Namespace) -> int:
    cfg, table = _config_from_args(args)
    plan = cfg.plan(table.num_steps)
    if args.json:
        out = {"table": table.name, "model": table.model, "ratio_power": cfg.ratio_power, **plan.to_dict()}
        print(json.dumps(out, indent=2))
        return 0
    resampled = table.settings.get("resampled_from")
    note = f", resampled ({resampled['method']}) from {resampled['num_steps']} steps" if resampled else ""
    print(f"table {table.name} ({table.model}){note}")
    print(
        f"{plan.num_steps} steps, threshold {cfg.threshold:g}, K {cfg.max_skip_steps}, retention "
        f"{cfg.retention_ratio:g} ({_retained(plan)} steps always computed), "
        f"ratio power {cfg.ratio_power:g}"
    )
    print(f"{'step':>4}  {'action':<8}{'ratio':>8}{'acc ratio':>11}{'acc err':>9}")
    for s in plan.steps:
        ratio = "-" if s.ratio is None else f"{s.ratio:.5f}"
        print(f"{s.step:>4}  {'skip' if s.skipped else 'compute':<8}{ratio:>8}{s.acc_ratio:>11.5f}{s.acc_err:>9.5f}")
    print(_summary(plan))
    return 0


def _retained(plan: SchedulePlan) -> int:
    from .schedule import retention_steps

    return max(1, retention_steps(plan.num_steps, plan.retention_ratio))


def _summary(plan: SchedulePlan) -> str:
    return (
        f"full transformer passes: {plan.num_computed} of {plan.num_steps} "
        f"(computed: {' '.join(map(str, plan.computed_steps))})\n"
        f"skipped: {' '.join(map(str, plan.skipped_steps)) or 'none'}\n"
        f"predicted transformer-loop speedup: {plan.predicted_speedup:.2f}x"
    )


def cmd_sweep(args: argparse.Namespace) -> int:
    table = _fit_table(load_ratio_table(args.ratios), args.steps, args.resample)
    ratios = [r**args.ratio_power for r in table.ratios]
    thresholds, ks, retentions = _floats(args.thresholds), _ints(args.K), _floats(args.retention_ratios)
    bad = [f"threshold {t:g}" for t in thresholds if t < 0] + [f"K {k}" for k in ks if k < 0]
    bad += [f"retention ratio {r:g}" for r in retentions if not 0 <= r < 1]
    if bad:
        raise UsageError(f"invalid grid values: {', '.join(bad)} (threshold >= 0, K >= 0, 0 <= retention < 1).")
    if not (thresholds and ks and retentions):
        empty = [n for n, v in (("--thresholds", thresholds), ("--K", ks), ("--retention-ratios", retentions)) if not v]
        raise UsageError(f"the grid has no points: {', '.join(empty)} is empty.")
    plans = sweep(ratios, thresholds, ks, retentions)
    rows = [
        {
            "retention_ratio": p.retention_ratio,
            "K": p.max_skip_steps,
            "threshold": p.threshold,
            "passes": p.num_computed,
            "predicted_speedup": round(p.predicted_speedup, 4),
            "skipped_steps": " ".join(map(str, p.skipped_steps)),
        }
        for p in plans
    ]
    if args.csv:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        write_text_atomic(args.csv, buffer.getvalue())
    if args.plot:
        from .plots import plot_sweep

        plot_sweep(plans, args.plot)
    reach = [r for r in rows if args.target_passes is not None and r["passes"] <= args.target_passes]
    reach.sort(key=lambda r: (-r["passes"], r["threshold"], r["K"], r["retention_ratio"]))
    if args.json:
        print(
            json.dumps(
                {
                    "table": table.name,
                    "num_steps": table.num_steps,
                    "ratio_power": args.ratio_power,
                    "rows": rows,
                    "reaching_target": reach,
                },
                indent=2,
            )
        )
        return 0
    print(f"table {table.name}, {table.num_steps} steps, ratio power {args.ratio_power:g}")
    print(f"{'retention':>9}{'K':>4}{'threshold':>11}{'passes':>8}{'speedup':>9}")
    for r in rows:
        print(
            f"{r['retention_ratio']:>9g}{r['K']:>4}{r['threshold']:>11g}{r['passes']:>8}{r['predicted_speedup']:>8.2f}x"
        )
    if args.target_passes is not None:
        print(f"settings with at most {args.target_passes} passes (closest first, then most conservative):")
        for r in reach[:10]:
            print(
                f"  --threshold {r['threshold']:g} --K {r['K']} --retention-ratio {r['retention_ratio']:g}: "
                f"{r['passes']} passes, {r['predicted_speedup']:.2f}x"
            )
        if not reach:
            print("  none in this grid; raise the thresholds or K.")
    for path in (args.csv, args.plot):
        if path:
            print(f"wrote {path}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .calibrate import CalibrationSettings, calibrate_opensora

    if args.model != "opensora":
        raise UsageError(f"unknown --model {args.model!r}; calibration supports: opensora.")
    prompts = list(args.prompt or [])
    if args.prompts:
        try:
            with open(args.prompts, encoding="utf-8") as f:
                prompts += [line.strip() for line in f if line.strip()]
        except OSError as exc:
            raise UsageError(f"cannot read --prompts {args.prompts}: {exc.strerror}.") from None
    if not prompts:
        raise UsageError("give at least one --prompt (or --prompts FILE with one prompt a line).")
    import torch

    if not args.tiny and not torch.cuda.is_available():
        raise UsageError("no CUDA device: calibrating Open-Sora needs a GPU; --tiny runs a CPU smoke calibration.")
    from .videosys_compat import import_videosys

    try:
        import_videosys()
    except ImportError as exc:
        raise UsageError(str(exc)) from None
    settings = CalibrationSettings(
        prompts=prompts,
        seeds=_ints(args.seeds),
        steps=args.steps,
        resolution=args.resolution,
        aspect_ratio=args.aspect_ratio,
        frames=args.frames,
        cfg_scale=args.cfg_scale,
        num_gpus=args.num_gpus,
        tiny=args.tiny,
    )
    table = calibrate_opensora(settings, name=args.name or _stem(args.out))
    table.save(args.out)
    print(f"wrote {args.out}: {table.num_steps} steps, ratios {min(table.ratios):.4f}..{max(table.ratios):.4f}")
    if args.plot:
        from .plots import plot_ratio_curve

        plot_ratio_curve(table, args.plot)
        print(f"wrote {args.plot}")
    return 0


def cmd_ratios(args: argparse.Namespace) -> int:
    tables = [load_ratio_table(name) for name in shipped_tables()]
    if args.json:
        print(json.dumps([t.to_dict() for t in tables], indent=2))
        return 0
    for t in tables:
        print(f"{t.name}: {t.model}, {t.num_steps} steps")
        settings = ", ".join(f"{k} {v}" for k, v in t.settings.items())
        print(textwrap.fill(f"settings: {settings}", 100, initial_indent="  ", subsequent_indent="    "))
        print(textwrap.fill(f"source: {t.source}", 100, initial_indent="  ", subsequent_indent="    "))
    return 0


def _stem(path: str) -> str:
    return Path(path).stem


# --- parser -------------------------------------------------------------------------------------
def _add_setting_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", choices=sorted(PRESETS), help="a named setting (fixes table and knobs)")
    p.add_argument("--ratios", help="a shipped table name (see `ratios`) or a table JSON file")
    p.add_argument("--threshold", type=float, help="accumulated-error threshold")
    p.add_argument("--K", type=int, help="most consecutive skipped steps")
    p.add_argument("--retention-ratio", type=float, help="leading fraction of steps always computed")
    p.add_argument("--ratio-power", type=float, help="exponent applied to the ratios (the Open-Sora presets use 0.5)")
    p.add_argument("--steps", type=int, help="the run's step count (default: the table's)")
    p.add_argument("--resample", choices=RESAMPLE_METHODS, help="fit the table to --steps: nearest or linear")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="magcache-videosys", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("schedule", help="step-by-step plan of one setting")
    _add_setting_options(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_schedule)

    p = sub.add_parser("sweep", help="passes and predicted speedup over a grid of settings")
    p.add_argument("--ratios", default="opensora-v1.2", help="table name or file (default: opensora-v1.2)")
    p.add_argument("--ratio-power", type=float, default=0.5, help="exponent applied to the ratios (default 0.5)")
    p.add_argument("--steps", type=int)
    p.add_argument("--resample", choices=RESAMPLE_METHODS)
    p.add_argument("--thresholds", default="0.02:0.3:0.02", help="a,b,c or start:stop:step (default 0.02:0.3:0.02)")
    p.add_argument("--K", default="1:5", help="a,b,c or start:stop (default 1:5)")
    p.add_argument("--retention-ratios", default="0.2", help="a,b,c or start:stop:step (default 0.2)")
    p.add_argument("--target-passes", type=int, help="list the settings that need at most this many full passes")
    p.add_argument("--plot", help="write a heat map PNG here")
    p.add_argument("--csv", help="write the grid as CSV here")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("calibrate", help="measure a ratio table with VideoSys generation")
    p.add_argument("--model", default="opensora", help="model family (supported: opensora)")
    p.add_argument("--prompt", action="append", help="a calibration prompt (repeatable)")
    p.add_argument("--prompts", help="a text file with one prompt a line")
    p.add_argument("--seeds", default="0", help="seeds, a,b,c or start:stop (default 0)")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--resolution", default="480p")
    p.add_argument("--aspect-ratio", default="9:16")
    p.add_argument("--frames", type=int, default=51)
    p.add_argument("--cfg-scale", type=float, default=7.0)
    p.add_argument("--num-gpus", type=int, default=1)
    p.add_argument("--out", required=True, help="table file to write (JSON)")
    p.add_argument("--name", help="table name (default: the file name)")
    p.add_argument("--plot", help="write the ratio curve PNG here")
    p.add_argument("--tiny", action="store_true", help="offline CPU smoke run with tiny random-weight components")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("ratios", help="the ratio tables that ship with the package")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ratios)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, RatioTableError, ValueError) as exc:
        print(f"magcache-videosys {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
