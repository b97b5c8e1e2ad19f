"""``python -m magcache_videosys`` / ``magcache-videosys``: see a schedule before spending GPU hours.

Subcommands: ``schedule`` (one setting or a schedule file, step by step), ``sweep`` (a grid of
settings), ``calibrate`` (measure a ratio table with VideoSys), ``search-calibrate`` (measure the
segment errors a schedule search needs), ``search`` (the least-error mask for a budget of passes),
``ratios`` (the shipped tables and their provenance).
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path
from typing import Callable, Sequence

from .atomic import write_csv_atomic
from .console import (
    OutputPathError,
    check_output_file,
    finite_float,
    int_at_least,
    run_command,
)
from .knobs import KNOBS, add_knob_options
from .magcache import PRESETS, MagCacheConfig
from .models import FAMILIES, ModelFamily, family_named
from .ratios import RESAMPLE_METHODS, RatioTable, RatioTableError, load_ratio_table, shipped_tables
from .schedule import SchedulePlan, reaching_target, sweep
from .static_schedule import StaticScheduleConfig

PROG = "magcache-videosys"
SETTING_KNOBS = ("threshold", "K", "retention_ratio", "ratio_power")
MAX_GRID_VALUES = 1000  # per list: a range such as 0:1:1e-9 is a typo, not a sweep


class UsageError(Exception):
    """A command-line mistake; reported as one line with exit status 2."""


class _Parser(argparse.ArgumentParser):
    """Bad options are one line (the problem, and where the help is), not the whole usage."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# --- option types: checked while the command line is parsed, before any work -----------------
def _grid(whole: bool, low: float, high: float | None = None) -> Callable[[str], list]:
    """A list type: ``a,b,c`` or the inclusive range ``start:stop:step`` (``start:stop`` for whole
    numbers, step 1), every value finite and in ``[low, high)``."""
    parse_one = _whole_number if whole else finite_float
    shapes = "a,b,c or start:stop[:step]" if whole else "a,b,c or start:stop:step"

    def parse(text: str) -> list:
        parts = text.split(":")
        if len(parts) == 1:
            values = [parse_one(x.strip()) for x in text.split(",") if x.strip()]
        elif len(parts) == 3 or (whole and len(parts) == 2):
            start, stop = parse_one(parts[0]), parse_one(parts[1])
            step = parse_one(parts[2]) if len(parts) == 3 else 1
            if step <= 0:
                raise argparse.ArgumentTypeError(f"range {text!r} needs a step > 0")
            count = int(round((stop - start) / step)) + 1
            if count > MAX_GRID_VALUES:
                raise argparse.ArgumentTypeError(f"range {text!r} has {count} values; at most {MAX_GRID_VALUES}")
            values = [start + i * step for i in range(max(count, 0)) if start + i * step <= stop + 1e-9 * step]
            if not whole:
                values = [round(v, 10) for v in values]  # 0.1 + 2 * 0.1 reads 0.3, not 0.30000000000000004
        else:
            raise argparse.ArgumentTypeError(f"cannot read {text!r}: use {shapes}")
        if not values:
            raise argparse.ArgumentTypeError(f"{text!r} gives no values (is the range backwards?)")
        bad = [v for v in values if v < low or (high is not None and v >= high)]
        if bad:
            limit = f">= {low:g}" + (f" and < {high:g}" if high is not None else "")
            raise argparse.ArgumentTypeError(f"{bad[0]:g} is out of range: every value must be {limit}")
        return values

    parse.__name__ = "list"
    return parse


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


THRESHOLDS = _grid(whole=False, low=0.0)
K_VALUES = _grid(whole=True, low=0)
RETENTIONS = _grid(whole=False, low=0.0, high=1.0)


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
    given = [k for k in SETTING_KNOBS if getattr(args, k) is not None]
    if args.preset is not None:
        if args.ratios is not None or given:
            fixed = ", ".join(KNOBS[k].flag for k in given) or "--ratios"
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
            raise UsageError(f"--ratios needs {', '.join(KNOBS[k].flag for k in missing)} too.")
        base = MagCacheConfig(
            mag_ratios=args.ratios,
            threshold=args.threshold,
            max_skip_steps=args.K,
            retention_ratio=args.retention_ratio,
            ratio_power=args.ratio_power,
        )
    table = _fit_table(base.table, args.steps, args.resample)
    return base.replace(mag_ratios=table, resample=args.resample or base.resample), table


# --- subcommands --------------------------------------------------------------------------------
def cmd_schedule(args: argparse.Namespace) -> int:
    if args.schedule is not None:
        return _show_static_schedule(args)
    cfg, table = _config_from_args(args)
    plan = cfg.plan(table.num_steps)
    if args.json:
        out = {"table": table.name, "model": table.model, "ratio_power": cfg.effective_ratio_power, **plan.to_dict()}
        print(json.dumps(out, indent=2))
        return 0
    resampled = table.settings.get("resampled_from")
    note = f", resampled ({resampled['method']}) from {resampled['num_steps']} steps" if resampled else ""
    print(f"table {table.name} ({table.model}){note}")
    print(
        f"{plan.num_steps} steps, threshold {cfg.threshold:g}, K {cfg.max_skip_steps}, retention "
        f"{cfg.retention_ratio:g} ({_retained(plan)} steps always computed), "
        f"ratio power {cfg.effective_ratio_power:g}"
    )
    print(f"{'step':>4}  {'action':<8}{'ratio':>8}{'acc ratio':>11}{'acc err':>9}")
    for s in plan.steps:
        ratio = "-" if s.ratio is None else f"{s.ratio:.5f}"
        print(f"{s.step:>4}  {'skip' if s.skipped else 'compute':<8}{ratio:>8}{s.acc_ratio:>11.5f}{s.acc_err:>9.5f}")
    print(_summary(plan))
    return 0


def _show_static_schedule(args: argparse.Namespace) -> int:
    """``schedule --schedule FILE``: the mask a run with ``--method schedule`` executes."""
    given = [KNOBS[k].flag for k in SETTING_KNOBS if getattr(args, k) is not None]
    given += [flag for flag, value in (("--preset", args.preset), ("--ratios", args.ratios)) if value is not None]
    if given or args.resample is not None:
        extra = ", ".join(given + (["--resample"] if args.resample is not None else []))
        verb = "does" if len(given) + (args.resample is not None) == 1 else "do"
        raise UsageError(f"--schedule is a fixed mask; {extra} {verb} not apply to it: drop {extra}.")
    cfg = StaticScheduleConfig.load(args.schedule)
    if args.steps is not None:
        cfg.check_steps(args.steps)
    if args.json:
        print(json.dumps({**cfg.to_dict(), "predicted_speedup": cfg.predicted_speedup}, indent=2))
        return 0
    print(f"schedule {cfg.name} ({args.schedule}): a fixed mask of {cfg.num_steps} steps, K {cfg.max_skip_steps}")
    print(f"{'step':>4}  action")
    for t, skipped in enumerate(cfg.skip):
        print(f"{t:>4}  {'skip' if skipped else 'compute'}")
    print(_summary(cfg))
    return 0


def _retained(plan: SchedulePlan) -> int:
    from .schedule import retention_steps

    return max(1, retention_steps(plan.num_steps, plan.retention_ratio))


def _summary(plan: SchedulePlan | StaticScheduleConfig) -> str:
    return (
        f"full transformer passes: {plan.num_computed} of {plan.num_steps} "
        f"(computed: {' '.join(map(str, plan.computed_steps))})\n"
        f"skipped: {' '.join(map(str, plan.skipped_steps)) or 'none'}\n"
        f"predicted transformer-loop speedup: {plan.predicted_speedup:.2f}x"
    )


def _row(p: SchedulePlan) -> dict:
    return {
        "retention_ratio": p.retention_ratio,
        "K": p.max_skip_steps,
        "threshold": p.threshold,
        "passes": p.num_computed,
        "predicted_speedup": round(p.predicted_speedup, 4),
        "skipped_steps": " ".join(map(str, p.skipped_steps)),
    }


def cmd_sweep(args: argparse.Namespace) -> int:
    for path, option in ((args.csv, "--csv"), (args.plot, "--plot")):
        if path:
            check_output_file(path, option)
    if args.plot:
        _require_matplotlib()
    table = _fit_table(load_ratio_table(args.ratios), args.steps, args.resample)
    power = table.ratio_power if args.ratio_power is None else args.ratio_power
    plans = sweep(table.powered(args.ratio_power), args.thresholds, args.K, args.retention_ratios)
    rows = [_row(p) for p in plans]
    if args.csv:
        write_csv_atomic(args.csv, list(rows[0]), [list(r.values()) for r in rows])
    if args.plot:
        from .plots import plot_sweep

        plot_sweep(
            plans, args.plot, target_passes=args.target_passes, title=f"table {table.name}, ratio power {power:g}"
        )
    reach = [] if args.target_passes is None else [_row(p) for p in reaching_target(plans, args.target_passes)]
    if args.json:
        out = {"table": table.name, "num_steps": table.num_steps, "ratio_power": power, "rows": rows}
        print(json.dumps({**out, "reaching_target": reach}, indent=2))
        return 0
    print(f"table {table.name}, {table.num_steps} steps, ratio power {power:g}")
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
    """The generation run with ``--method magcache-calibrate`` into ``--videos``, then its table."""
    from .calibrate import table_from_records
    from .experiments.cli import USER_ERRORS
    from .experiments.generation import VideoSysGenerator, preflight
    from .experiments.runner import Options, describe, make_plan, run

    check_output_file(args.out, "--out")
    if args.plot:
        check_output_file(args.plot, "--plot")
        _require_matplotlib()
    family = args.family
    testbed = getattr(args, "testbed", False)
    options = Options(
        method="magcache-calibrate",
        out=Path(args.videos) if args.videos else _videos_folder(args.out),
        **_generation_fields(args, family.testbed.prompts if testbed else None),
        num_gpus=args.num_gpus,
        testbed=testbed,
    )
    try:
        plan = make_plan(options)
        args.plan = plan
        print(describe(plan), flush=True)
        if args.dry_run:
            return 0
        result = run(plan, VideoSysGenerator, preflight=preflight)
    except USER_ERRORS as exc:
        raise UsageError(str(exc)) from None
    if not result.complete:
        print(result.summary)
        return 3
    mine = {job.video for job in plan.jobs}
    table = table_from_records(
        [r for r in result.records if r.video in mine],
        name=args.name or Path(args.out).stem,
        source=f"{PROG} calibrate --model {family.name}",
    )
    table.save(args.out)
    print(f"wrote {args.out}: {table.num_steps} steps, ratios {min(table.ratios):.4f}..{max(table.ratios):.4f}")
    print(f"the calibration videos and their records are in {plan.out}")
    if args.plot:
        from .plots import plot_ratio_curve

        plot_ratio_curve(table, args.plot)
        print(f"wrote {args.plot}")
    return 0


def cmd_search_calibrate(args: argparse.Namespace) -> int:
    """Measure the segment errors a search needs, with the generation run's settings and pipeline."""
    import tempfile

    from .experiments.cli import USER_ERRORS
    from .experiments.generation import VideoSysGenerator, preflight
    from .experiments.runner import Options, make_plan
    from .schedule import retention_steps
    from .segment_errors import record_segment_errors, recording_passes, segments

    check_output_file(args.out, "--out")
    fields = _generation_fields(args)
    family = args.family
    with tempfile.TemporaryDirectory(prefix="magcache-search-") as scratch:
        options = Options(method="base", out=Path(scratch), **fields, dtype=args.dtype)
        try:
            plan = make_plan(options)
        except USER_ERRORS as exc:
            raise UsageError(str(exc)) from None
        n = plan.settings.num_steps
        first_start = max(1, retention_steps(n, args.retention_ratio)) - 1
        todo = segments(n, args.K, first_start)
        if not todo:
            raise UsageError(
                f"no segment to measure with {n} steps, K {args.K} and --retention-ratio {args.retention_ratio}."
            )
        passes = recording_passes(n, args.K, first_start)
        samples = [(job.prompt, job.seed) for job in plan.jobs]
        print(
            f"{len(samples)} calibration video(s) x ({len(todo)} segments + 1 uncached run): {passes} full "
            f"transformer passes per video ({passes / n:.1f} uncached runs; x2 where CFG runs as two calls), "
            f"{passes * len(samples)} in all, for {n} steps, K <= {args.K}, segments from step {first_start}",
            flush=True,
        )
        if args.dry_run:
            return 0
        try:
            preflight(plan)
            generator = VideoSysGenerator(plan)
        except USER_ERRORS as exc:
            raise UsageError(str(exc)) from None
        settings = plan.settings.to_dict()
        try:
            errors = record_segment_errors(
                generator.pipeline,
                lambda prompt, seed: generator.generate(prompt, seed).video,
                samples,
                n,
                args.K,
                first_start,
                provenance={"settings": settings, "source": f"{PROG} search-calibrate --model {family.name}"},
            )
        finally:
            generator.close()
    errors.save(args.out)
    print(
        f"wrote {args.out}: {len(errors.errors)} segment errors over {len(samples)} video(s), "
        f"{errors.provenance['full_passes']} full passes in {errors.provenance['seconds']} s"
    )
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    """The least-error mask for a budget of passes, from a segment-error recording."""
    from .search import search
    from .segment_errors import SegmentErrors

    for path, option in ((args.out, "--out"), (args.plot, "--plot")):
        if path:
            check_output_file(path, option)
    if args.plot:
        _require_matplotlib()
    errors = SegmentErrors.load(args.errors)
    k = errors.max_skip_steps if args.K is None else args.K
    ratios = None if args.ratios is None else load_ratio_table(args.ratios)
    if ratios is not None and ratios.num_steps != errors.num_steps:
        raise UsageError(
            f"table {ratios.name!r} is for {ratios.num_steps} steps but the recording for {errors.num_steps}; "
            "give a table of the recording's step count."
        )
    name = Path(args.out).stem if args.out else f"searched-{args.passes}of{errors.num_steps}"
    result = search(
        errors,
        args.passes,
        k,
        args.retention_ratio,
        objective=args.objective,
        ratios=None if ratios is None else ratios.powered(),
        name=name,
    )
    schedule, mc = result.schedule, result.magcache
    if args.out:
        schedule.save(args.out)
    if args.plot:
        from .plots import plot_masks

        rows = [(f"searched ({args.objective} {result.predicted:.3g})", schedule.skip)]
        if mc is not None:
            label = f"MagCache t={mc.threshold:g} ({mc.num_computed} passes, {result.magcache_predicted:.3g})"
            rows.append((label, [st.skipped for st in mc.steps]))
        title = f"{errors.num_steps} steps, {args.passes} passes, K {k}, retention {args.retention_ratio:g}"
        plot_masks(rows, args.plot, title=f"{title}; predicted error ({errors.provenance.get('metric', 'mse')})")
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    print(
        f"searched {args.passes} of {errors.num_steps} passes, K {k}, retention {args.retention_ratio:g}, "
        f"objective {args.objective}"
    )
    print(f"  mask      {schedule.mask_text()}  (C computed, s skipped)")
    print(f"  skipped   {' '.join(map(str, schedule.skipped_steps))}")
    print(f"  predicted error ({args.objective} model): {result.predicted:.4g}")
    if mc is None:
        print("  MagCache: no ratio table to compare with (give --ratios TABLE)")
    else:
        print(
            f"MagCache at threshold {mc.threshold:g}, K {mc.max_skip_steps}, retention {mc.retention_ratio:g}: "
            f"{mc.num_computed} passes"
        )
        print(f"  mask      {''.join('s' if st.skipped else 'C' for st in mc.steps)}")
        print(f"  predicted error ({args.objective} model): {result.magcache_predicted:.4g}")
    for path in (args.out, args.plot):
        if path:
            print(f"wrote {path}")
    return 0


def _videos_folder(table: str) -> Path:
    """Where a calibration keeps its videos by default: beside the table, named after it."""
    path = Path(table)
    return path.with_name(f"{path.stem}-videos")


def _require_matplotlib() -> None:
    from .plots import figure_module

    try:
        figure_module()
    except ImportError as exc:
        raise UsageError(str(exc)) from None


def cmd_ratios(args: argparse.Namespace) -> int:
    tables = [load_ratio_table(name) for name in shipped_tables()]
    if args.json:
        print(json.dumps([t.to_dict() for t in tables], indent=2))
        return 0
    for t in tables:
        print(f"{t.name}: {t.model}, {t.num_steps} steps, ratio power {t.ratio_power:g}")
        settings = ", ".join(f"{k} {v}" for k, v in t.settings.items())
        print(textwrap.fill(f"settings: {settings}", 100, initial_indent="  ", subsequent_indent="    "))
        print(textwrap.fill(f"source: {t.source}", 100, initial_indent="  ", subsequent_indent="    "))
    return 0


# --- parser -------------------------------------------------------------------------------------
def _add_setting_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", choices=sorted(PRESETS), help="a named setting (fixes table and knobs)")
    p.add_argument("--ratios", help="a shipped table name (see `ratios`) or a table JSON file")
    add_knob_options(p, SETTING_KNOBS)
    p.add_argument("--steps", type=int_at_least(2), help="the run's step count (default: the table's)")
    p.add_argument("--resample", choices=RESAMPLE_METHODS, help="fit the table to --steps: nearest or linear")


def build_parser(model: str = "opensora") -> argparse.ArgumentParser:
    """The command line; ``calibrate`` takes the generation options of ``model``."""
    parser = _Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("schedule", help="step-by-step plan of one setting, or of a schedule file")
    _add_setting_options(p)
    add_knob_options(p, ["schedule"])
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_schedule)

    p = sub.add_parser("sweep", help="passes and predicted speedup over a grid of settings")
    p.add_argument("--ratios", default="opensora-v1.2", help="table name or file (default: opensora-v1.2)")
    add_knob_options(p, ["ratio_power"])
    p.add_argument("--steps", type=int_at_least(2), help="the run's step count (default: the table's)")
    p.add_argument("--resample", choices=RESAMPLE_METHODS, help="fit the table to --steps: nearest or linear")
    p.add_argument(
        "--thresholds",
        type=THRESHOLDS,
        default="0.02:0.3:0.02",
        help="a,b,c or start:stop:step (default 0.02:0.3:0.02)",
    )
    p.add_argument("--K", type=K_VALUES, default="1:5", help="a,b,c or start:stop (default 1:5)")
    p.add_argument(
        "--retention-ratios", type=RETENTIONS, default="0.2", help="a,b,c or start:stop:step, in [0, 1) (default 0.2)"
    )
    p.add_argument(
        "--target-passes",
        type=int_at_least(1),
        help="list, and outline in the plot, the settings that need at most this many full passes",
    )
    p.add_argument("--plot", help="write a heat map PNG here (its folder must exist)")
    p.add_argument("--csv", help="write the grid as CSV here (its folder must exist)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser(
        "calibrate",
        help="measure a ratio table with VideoSys generation",
        description="Generate the prompts with MagCache in calibration mode (every step computed, the residual "
        "ratios recorded) through the generation run of experiments/<model>.py, which resumes where it stopped, "
        "then average them into a ratio table. Generation options are the model's own: "
        f"{PROG} calibrate --model NAME --help lists them.",
    )
    family = family_named(model, generating=True)
    _add_generation_options(p, family)
    p.add_argument("--num-gpus", type=int_at_least(1), default=1)
    p.add_argument("--out", required=True, help="table file to write (JSON; its folder must exist)")
    p.add_argument("--name", help="table name (default: the file name)")
    p.add_argument("--videos", help="folder for the calibration videos and their records (default: OUT-videos/)")
    p.add_argument("--plot", help="write the ratio curve PNG here (its folder must exist)")
    p.add_argument("--tiny", action="store_true", help="offline CPU smoke run with tiny random-weight components")
    if family.testbed is not None:
        p.add_argument(
            "--testbed",
            action="store_true",
            help="the trained CPU test bed (its own size; prompts default to its prompt file)",
        )
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit without loading a model")
    p.set_defaults(func=cmd_calibrate, family=family)

    p = sub.add_parser(
        "search-calibrate",
        help="measure the segment errors a schedule search needs",
        description="Generate each calibration video uncached, then once per cached segment (a computed step whose "
        "residual the next 1..K steps reuse), restarted at the segment from the uncached run's transformer outputs, "
        "and record the final video's mean squared error against the uncached one. Cost: about K * (N - s)^2 / 2 "
        "full transformer passes per video (printed before the work). One GPU (or --tiny on the CPU).",
    )
    _add_generation_options(p, family)
    p.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), help=f"model dtype (default {family.generation.dtype})")
    p.add_argument("--K", type=int_at_least(1), default=5, help="longest segment to measure, in skips (default 5)")
    p.add_argument(
        "--retention-ratio",
        type=KNOBS["retention_ratio"].parse,
        default=0.2,
        help="leading fraction of steps a search will always compute; segments start at its last (default 0.2)",
    )
    p.add_argument("--out", required=True, help="segment-error file to write (JSON; its folder must exist)")
    p.add_argument("--tiny", action="store_true", help="offline CPU smoke run with tiny random-weight components")
    p.add_argument("--dry-run", action="store_true", help="print the plan and its cost, and exit without a model")
    p.set_defaults(func=cmd_search_calibrate, family=family)

    p = sub.add_parser(
        "search",
        help="the skip mask of least predicted error for a budget of full passes",
        description="From a `search-calibrate` recording, find the mask with exactly --passes computed steps, at most "
        "--K consecutive skips and the first steps retained, whose summed (or largest) segment error is least: an "
        "exact dynamic program for that additive (or minimax) model of the final error. Compares MagCache's rule at "
        "the same passes on the recording's calibrated ratio table (or --ratios).",
    )
    p.add_argument("--errors", required=True, help="the segment-error file `search-calibrate` wrote")
    p.add_argument("--passes", required=True, type=int_at_least(1), help="full transformer passes (computed steps)")
    p.add_argument("--K", type=int_at_least(1), help="most consecutive skipped steps (default: the recording's)")
    p.add_argument(
        "--retention-ratio",
        type=KNOBS["retention_ratio"].parse,
        default=0.2,
        help="leading fraction of steps always computed (default 0.2)",
    )
    p.add_argument(
        "--objective",
        choices=("sum", "rms", "max"),
        default="sum",
        help="model of the joint error: sum of segment errors (default), (sum of their roots)^2, or their max",
    )
    p.add_argument("--ratios", help="ratio table for the MagCache comparison (default: the recording's own)")
    p.add_argument("--out", help="write the schedule here (JSON, for --method schedule --schedule FILE)")
    p.add_argument("--plot", help="write a PNG of the searched mask above MagCache's at the same passes")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("ratios", help="the ratio tables that ship with the package")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ratios)
    return parser


def _add_generation_options(p: argparse.ArgumentParser, family: ModelFamily) -> None:
    """What a calibration run generates, in the family's own options: the generation run's flags."""
    gen = family.generation
    models = ", ".join(f.name for f in FAMILIES if f.generation is not None)
    p.add_argument("--model", default=family.name, help=f"model family: {models} (default opensora)")
    p.add_argument("--prompt", action="append", help="a calibration prompt (repeatable)")
    p.add_argument("--prompts", help="a prompt file: one prompt a line, or the VBench JSON format")
    p.add_argument("--num-samples", type=int_at_least(1), default=1, help="videos per prompt (default 1)")
    p.add_argument("--seed", type=int_at_least(0), default=0, help="seed of sample 0; sample i uses seed + i")
    p.add_argument("--steps", type=int_at_least(2), help=f"sampling steps (default {gen.steps})")
    for option in gen.options:
        p.add_argument(
            option.flag, dest=option.name, type=option.parse, help=f"{option.help} (default {option.default})"
        )
    p.add_argument("--cfg-scale", type=finite_float, help=f"guidance scale (default {gen.cfg_scale})")
    for weights in gen.weights:
        p.add_argument(weights.flag, dest=weights.name, help=f"{weights.help} weights (default {weights.default})")


def _generation_fields(args: argparse.Namespace, default_prompts: str | None = None) -> dict:
    """The generation run's settings that ``_add_generation_options`` parsed, for ``Options``; the
    prompts are ``--prompt``s then ``--prompts FILE``'s, else ``default_prompts``' file."""
    from .experiments.prompts import load_prompts

    prompts = list(args.prompt or [])
    if args.prompts:
        prompts += load_prompts(args.prompts).prompts
    if not prompts and default_prompts is not None:
        prompts = list(load_prompts(default_prompts).prompts)
    if not prompts:
        raise UsageError("give at least one --prompt (or --prompts FILE with one prompt a line).")
    gen = args.family.generation
    return dict(
        model=args.family.name,
        prompts=tuple(prompts),
        num_samples=args.num_samples,
        seed=args.seed,
        generation={o.name: getattr(args, o.name) for o in (*gen.options, *gen.weights)},
        num_steps=args.steps,
        cfg_scale=args.cfg_scale,
        tiny=args.tiny,
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser(_model_of(argv)).parse_args(argv)
    except SystemExit as exc:  # --help, or the one-line error argparse has printed
        return exc.code if isinstance(exc.code, int) else 2
    name = f"{PROG} {args.command}"
    return run_command(lambda: _run(args, name), name, on_interrupt=lambda: _interrupted(args))


def _model_of(argv: list[str]) -> str:
    """The family ``calibrate`` or ``search-calibrate --model NAME`` names, so its own options can be parsed."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--model", default="opensora")
    model = pre.parse_known_args(argv)[0].model
    try:
        family_named(model, generating=True)
    except ValueError as exc:
        print(f"{PROG}: error: argument --model: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return model


def _interrupted(args: argparse.Namespace) -> str:
    plan = getattr(args, "plan", None)
    if plan is None:
        return "nothing was written."
    from .experiments.runner import kept_text

    return f"no table was written yet. {kept_text(plan)}"


def _run(args: argparse.Namespace, name: str) -> int:
    try:
        return args.func(args)
    except (UsageError, OutputPathError, RatioTableError, ValueError) as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
