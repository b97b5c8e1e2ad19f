"""The generation run: a plan checked before any model is loaded, then the loop that generates
this process's videos, writes each atomically, records it, and resumes where a run stopped.

A video counts as done when its file and its record both exist and the record names the same
prompt, sample index and seed. Each video is encoded under ``.magcache/partial/``, flushed to disk,
read back, renamed into place, and only then recorded (one fsynced line), so an interruption, a
``kill -9`` or a full disk leaves at most one video per process without a record, which a rerun
generates again, and never a record of a video that is not whole.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from tqdm import tqdm

from ..atomic import write_atomic, write_json_atomic
from ..console import check_output_folder
from ..models import ModelFamily, family_named
from ..records import BadLine, VideoRecord
from . import manifest as mf
from .methods import Method, build_config, get_method, method_help
from .naming import MAX_SAMPLES, PROMPT_FILE, assign_stems, video_file
from .prompts import SMOKE_FILE, VBENCH_FILE, PromptList, inline_prompts, load_prompts, select
from .sharding import Shard, detect_shard
from .summary import format_summary, summarize

logger = logging.getLogger("magcache_videosys.experiments")

DTYPES = ("bf16", "fp16", "fp32")


class RunError(ValueError):
    """Options that cannot make a run; the message names the problem and the fix."""


class WriteError(RunError):
    """A video or record that could not be written (a full disk, a lost file system); nothing was
    recorded for it and a rerun resumes there."""


@dataclass(frozen=True)
class Options:
    """What the command line asks for (None: not given)."""

    method: str
    out: Path
    model: str = "opensora"  # the model family (magcache_videosys/models/)
    knobs: dict[str, Any] = field(default_factory=dict)
    prompts: str | tuple[str, ...] | None = None  # a file, or the prompts themselves
    start: int = 0
    end: int | None = None
    limit: int | None = None
    num_samples: int = 5
    seed: int = 0
    generation: dict[str, Any] = field(default_factory=dict)  # the family's own options and weights
    num_steps: int | None = None  # None: the family's VideoSys default
    cfg_scale: float | None = None
    dtype: str | None = None
    num_gpus: int = 1
    tiny: bool = False
    testbed: bool = False  # the family's trained CPU test bed
    shard: str | None = None
    baseline: Path | None = None
    dry_run: bool = False
    verbose: bool = False  # show third-party output (VideoSys's log lines and warnings)


@dataclass(frozen=True)
class Settings:
    """Generation settings: every video of a folder shares them (they are checked on resume).
    ``options`` are the family's own (sizes, weights), by the names its ``Generation`` gives."""

    model: str
    num_steps: int
    cfg_scale: float
    dtype: str
    seed: int
    tiny: bool
    options: dict[str, Any]
    testbed: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        options = data.pop("options")
        if not data["testbed"]:
            del data["testbed"]  # runs begun before --testbed existed keep their signature, and resume
        return {**data, **options}

    @property
    def family(self) -> ModelFamily:
        return family_named(self.model)

    @property
    def loop_steps(self) -> int:
        """Transformer-loop iterations of one video: the steps schedules and statistics count
        (``num_steps`` except where the sampler adds warm-up iterations, e.g. PNDM's 9)."""
        return self.family.loop_steps(self.to_dict())


@dataclass(frozen=True)
class Job:
    prompt: str
    index: int
    seed: int
    video: str
    altered: bool  # the file name is a stand-in for the prompt (see naming.py)


@dataclass
class Plan:
    """Everything a run will do, known before a model is loaded."""

    options: Options
    method: Method
    method_config: Any
    settings: Settings
    prompts: PromptList
    selected: tuple[str, ...]
    jobs: list[Job]  # the whole run, every shard
    shard: Shard
    mine: list[Job]  # this shard's
    done: dict[str, VideoRecord] = field(default_factory=dict)  # records of finished videos, by file name
    orphans: int = 0  # videos on disk without a record (interrupted before recording): redone
    bad_lines: list[BadLine] = field(default_factory=list)  # record lines cut short by killed writers

    @property
    def out(self) -> Path:
        return self.options.out

    @property
    def pending(self) -> list[Job]:
        return [j for j in self.mine if j.video not in self.done]

    @property
    def signature(self) -> dict[str, Any]:
        return mf.signature(self.method.name, self.method.config_dict(self.method_config), self.settings.to_dict())


def _settings(o: Options) -> Settings:
    try:
        family = family_named(o.model, generating=True)
    except ValueError as exc:
        raise RunError(str(exc)) from None
    gen = family.generation
    num_steps = gen.steps if o.num_steps is None else o.num_steps
    cfg_scale = gen.cfg_scale if o.cfg_scale is None else o.cfg_scale
    if num_steps < 2:
        raise RunError(f"--steps must be at least 2, got {num_steps}.")
    if not 1 <= o.num_samples <= MAX_SAMPLES:
        raise RunError(
            f"--num-samples must be 1 to {MAX_SAMPLES} (file names leave room for 3 digits), got {o.num_samples}."
        )
    if not math.isfinite(cfg_scale):
        raise RunError(f"--cfg-scale must be a finite number, got {cfg_scale}.")
    unknown = sorted(set(o.generation) - {x.name for x in (*gen.options, *gen.weights)})
    if unknown:
        raise RunError(f"{family.description} has no generation option {', '.join(unknown)}.")
    if o.num_gpus < 1:
        raise RunError(f"--num-gpus must be at least 1, got {o.num_gpus}.")
    if o.tiny and o.testbed:
        raise RunError("--tiny (random weights) and --testbed (the trained test bed) exclude each other; pick one.")
    local = "--tiny" if o.tiny else "--testbed" if o.testbed else None
    if local:
        if o.dtype not in (None, "fp32"):
            raise RunError(f"{local} runs on the CPU in fp32; drop --dtype {o.dtype}.")
        if o.num_gpus != 1:
            raise RunError(f"{local} runs in one CPU process; drop --num-gpus.")
        given = [w.flag for w in gen.weights if o.generation.get(w.name) is not None]
        if given:
            models = "its own random-weight models" if o.tiny else "the test bed's trained weights"
            raise RunError(f"{local} builds {models}; drop {', '.join(given)}.")
    if o.dtype is not None and o.dtype not in DTYPES:
        raise RunError(f"--dtype must be one of {', '.join(DTYPES)}, got {o.dtype!r}.")
    options = _testbed_options(family, o.generation) if o.testbed else family.fill_options(o.generation, o.tiny)
    return Settings(
        model=family.name,
        num_steps=num_steps,
        cfg_scale=cfg_scale,
        dtype="fp32" if local else (o.dtype or family.default_dtype(options)),
        seed=o.seed,
        tiny=o.tiny,
        testbed=o.testbed,
        options=options,
    )


def _testbed_options(family: ModelFamily, given: dict[str, Any]) -> dict[str, Any]:
    """The test bed's sizes and weights; a size it was not trained at is an error."""
    testbed = family.testbed
    if testbed is None:
        raise RunError(
            f"{family.description} has no test bed; --testbed runs Open-Sora 1.2's (experiments/opensora.py)."
        )
    for option in family.generation.options:
        value, trained = given.get(option.name), testbed.options[option.name]
        if value is not None and str(value) != str(trained):
            raise RunError(
                f"{option.flag} {value}: the test bed was trained at {option.flag} {trained} and makes no other size; "
                f"drop {option.flag}."
            )
    return {**testbed.options, **testbed.weights}


def _default_prompts(options: Options, settings: Settings) -> str | Path | None:
    """``--prompts``, else the test bed's file, the smoke prompts of ``--tiny``, or VBench's (None)."""
    if options.prompts is not None:
        return options.prompts
    if options.testbed:
        return settings.family.testbed.prompts
    return SMOKE_FILE if options.tiny else None


def make_jobs(prompts: tuple[str, ...], all_prompts: tuple[str, ...], num_samples: int, seed: int) -> list[Job]:
    """Every video of the run, prompt by prompt; names come from the whole list, so slices agree."""
    stems = assign_stems(all_prompts)
    return [
        Job(prompt, i, seed + i, video_file(stems[prompt].text, i), stems[prompt].altered)
        for prompt in prompts
        for i in range(num_samples)
    ]


def make_plan(options: Options) -> Plan:
    """Check every option and read what the output folder already holds; loads no model and
    creates nothing."""
    method = get_method(options.method)
    settings = _settings(options)
    method_config = build_config(method, options.knobs, settings.to_dict())
    shard = detect_shard(options.shard)
    if isinstance(options.prompts, tuple):
        prompts = inline_prompts(options.prompts)
    else:
        prompts = load_prompts(_default_prompts(options, settings))
    selected = select(prompts, options.start, options.end, options.limit)
    if options.baseline is not None:
        check_baseline(options.baseline)
    out = options.out
    check_output_folder(out, "--out")
    jobs = make_jobs(selected, prompts.prompts, options.num_samples, options.seed)
    plan = Plan(options, method, method_config, settings, prompts, selected, jobs, shard, shard.take(jobs))
    if out.is_dir():
        mf.check_claim(out, plan.signature)
        records, plan.bad_lines = mf.load_records(out)
        mf.check_signature(records.values(), plan.signature, out)
        plan.done = _finished(plan, records)
    plan.orphans = sum(1 for j in plan.mine if j.video not in plan.done and (out / j.video).is_file())
    return plan


def check_baseline(folder: Path) -> None:
    """``--baseline`` must be the folder of a base run: a speedup over anything else is not one."""
    records, _ = mf.load_records(folder) if folder.is_dir() else ({}, [])
    if not records:
        raise RunError(
            f"--baseline {folder} holds no {mf.MANIFEST} (nor parts of one); point it at the output folder "
            f"of a finished --method base run."
        )
    others = sorted({str(r.method) for r in records.values() if r.method != "base"})
    if others:
        raise RunError(
            f"--baseline {folder} holds videos of --method {', '.join(others)}, not base; a speedup is measured "
            f"against the uncached model: point --baseline at the output folder of a --method base run."
        )


def _finished(plan: Plan, records: dict[str, VideoRecord]) -> dict[str, VideoRecord]:
    """The records whose video exists, after checking that each of this run's names still shows the
    same prompt, sample and seed (a changed prompt list can hand a stand-in name to another prompt)."""
    out = plan.out
    done = {v: r for v, r in records.items() if (out / v).is_file()}
    for job in plan.jobs:
        record = done.get(job.video)
        if record is not None and record.identity != (job.prompt, job.index, job.seed):
            raise mf.ManifestError(
                f"{out / job.video} was generated for prompt {record.prompt!r} (sample {record.index}, seed "
                f"{record.seed}), but in this run prompt {job.prompt!r} (sample {job.index}, seed {job.seed}) has "
                f"that file name: the prompt list changed since (names that stand in for prompts depend on the "
                f"whole list). Resume with the earlier prompt list, or use another --out."
            )
    return done


def _options_text(settings: Settings) -> str:
    """The family's size options as the user spells them, e.g. ``resolution 480p, aspect-ratio 9:16, ``."""
    return "".join(f"{o.flag.lstrip('-')} {settings.options[o.name]}, " for o in settings.family.generation.options)


def _loop_text(settings: Settings) -> str:
    loop = settings.loop_steps
    return "" if loop == settings.num_steps else f" ({loop} transformer-loop iterations: the steps counted below)"


def _steps_text(steps: list[int]) -> str:
    return " ".join(map(str, steps)) if steps else "none"


def describe(plan: Plan) -> str:
    """What the run will do: the dry-run output and the header of a real run."""
    s, o = plan.settings, plan.options
    p = plan.prompts
    dup = f"; {p.duplicates} duplicate entries, each generated once" if p.duplicates else ""
    sliced = (
        f", prompts {o.start}..{o.start + len(plan.selected) - 1} of them"
        if len(plan.selected) < len(p.prompts)
        else ""
    )
    altered = sum(1 for j in plan.jobs if j.altered and j.index == 0)
    loop = s.loop_steps
    steps = plan.method.plan(plan.method_config, loop)
    config = {k: v for k, v in plan.method.config_dict(plan.method_config).items() if k != "table_ratios"}
    tiny = "TINY random-weight CPU models, " if s.tiny else "TEST BED, trained CPU model, " if s.testbed else ""
    smoke = ""
    if o.prompts is None and (o.tiny or o.testbed):
        which = "the package's smoke prompts" if o.tiny else "the test bed's prompts"
        smoke = f"; {'--tiny' if o.tiny else '--testbed'}'s default: {which} (real runs default to {VBENCH_FILE})"
    lines = [
        f"method     {plan.method.name}: {method_help(plan.method, s.to_dict())}",
        f"config     {json.dumps(config)}",
        f"prompts    {len(p.prompts)} distinct in {p.source} ({p.entries} entries{dup}){sliced}{smoke}",
        f"videos     {len(plan.selected)} prompts x {o.num_samples} samples = {len(plan.jobs)} videos "
        f"(seed = {s.seed} + sample index)",
        f"this run   {plan.shard}: {len(plan.mine)} videos, {len(plan.mine) - len(plan.pending)} already done, "
        f"{len(plan.pending)} to generate",
        f"generation {s.family.model_label(s.to_dict())}: {tiny}{_options_text(s)}"
        f"{s.num_steps} steps{_loop_text(s)}, cfg {s.cfg_scale}, {s.dtype}, {o.num_gpus} GPU(s) per video",
        f"output     {plan.out}",
    ]
    if steps is None:
        lines.append("schedule   decided during sampling (depends on the data)")
    else:
        skipped = [i for i in range(loop) if i not in set(steps)]
        lines += [
            f"computes   {len(steps)} of {loop} steps: {_steps_text(list(steps))}",
            f"skips      {len(skipped)}: {_steps_text(skipped)}",
            f"passes     {len(steps)} transformer passes per video, {len(steps) * len(plan.jobs)} for the run "
            f"(base: {loop * len(plan.jobs)}); "
            f"predicted transformer-loop speedup {loop / len(steps):.2f}x",
        ]
    if s.testbed:
        lines.append(f"test bed   {s.family.testbed.note}")
    if altered:
        lines.append(f"names      {altered} prompts cannot be file names as they are; see {PROMPT_FILE} after the run")
    if plan.orphans:
        lines.append(f"resume     {plan.orphans} videos have no record (interrupted before recording); generated again")
    for bad in plan.bad_lines:
        what = "cut short by a killed writer" if bad.torn else "not a record"
        lines.append(f"records    {bad.path}:{bad.line} is {what}; ignored (its video, if any, is generated again)")
    return "\n".join(lines)


# --- the loop ---------------------------------------------------------------------------------
@dataclass
class Sample:
    """One generated video, as a generator returns it."""

    video: Any
    latency_transformer_s: float
    latency_total_s: float
    pipeline: Any = None  # what the method's stats are read from
    cpu_transformer_s: float = float("nan")  # the sampling loop's CPU time, on the CPU


class Generator(Protocol):
    def generate(self, prompt: str, seed: int) -> Sample: ...

    def save(self, sample: Sample, path: Path) -> None:
        """Write the video to ``path``; raise OSError (errno ENOSPC for a full disk) when that fails."""

    def check(self, sample: Sample, path: Path) -> None:
        """Raise OSError unless ``path`` reads back as the video that was saved."""

    def close(self) -> None: ...


@dataclass
class Result:
    generated: int
    records: list[VideoRecord]  # the merged manifest
    complete: bool
    summary: str
    outputs: list[Path]


def _seconds(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _record(plan: Plan, job: Job, sample: Sample, warmup: bool) -> VideoRecord:
    stats = plan.method.stats(sample.pipeline) if sample.pipeline is not None else None
    steps = plan.settings.loop_steps
    computed = list(stats.computed_steps) if stats is not None else list(range(steps))
    sig = plan.signature
    return VideoRecord(
        video=job.video,
        prompt=job.prompt,
        index=job.index,
        seed=job.seed,
        method=sig["method"],
        method_config=sig["method_config"],
        settings=sig["settings"],
        latency_transformer_s=_seconds(sample.latency_transformer_s),
        latency_total_s=_seconds(sample.latency_total_s),
        cpu_transformer_s=_seconds(sample.cpu_transformer_s),
        num_steps=steps,
        num_computed=len(computed),
        computed_steps=computed,
        skipped_steps=list(stats.skipped_steps) if stats is not None else [],
        warmup=warmup,
        name_altered=job.altered,
        num_gpus=plan.options.num_gpus,
        shard=f"{plan.shard.index}/{plan.shard.count}",
        host=socket.gethostname(),
        finished_at=time.time(),
        extra=plan.method.record_extra(stats),
    )


def _write_error(path: Path, exc: OSError, what: str) -> WriteError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        head = f"disk full at {path} ({exc.strerror})"
    else:
        head = f"cannot write {path} ({exc.strerror or exc})"
    return WriteError(f"{head}; {what}. Make room (or fix the cause) and rerun the same command: it resumes there.")


def _write_video(plan: Plan, generator: Generator, sample: Sample, final: Path) -> None:
    """Encode under ``partial/``, flush, read back, rename: only a whole video reaches ``final``."""
    try:
        write_atomic(
            final,
            lambda tmp: generator.save(sample, tmp),
            lambda tmp: generator.check(sample, tmp),
            temporary=mf.partial_dir(plan.out) / mf.temporary_name(final),
        )
    except OSError as exc:
        raise _write_error(final, exc, "the video was not kept and nothing was recorded for it") from None


def prepare_folder(plan: Plan) -> None:
    """Create the output folder, claim it for this run, and remove what killed writers left."""
    try:
        plan.out.mkdir(parents=True, exist_ok=True)
        mf.claim(plan.out, plan.signature)
        mf.partial_dir(plan.out).mkdir(exist_ok=True)
        removed = mf.clean_partials(plan.out)
    except OSError as exc:
        raise _write_error(plan.out, exc, "no video was generated") from None
    if removed:
        logger.info("removed %d unfinished files left by killed writers in %s", len(removed), plan.out)


def run(
    plan: Plan,
    make_generator: Callable[[Plan], Generator],
    progress: bool = True,
    preflight: Callable[[Plan], None] | None = None,
) -> Result:
    """Generate this process's pending videos, then merge the manifest and, once the whole run
    is done, write what the method leaves behind and the summary.

    ``preflight(plan)`` checks what generating needs (VideoSys, a GPU, a valid size) before anything
    is created, so a run that cannot start leaves no folder behind."""
    pending = plan.pending
    generated = 0
    if pending:
        if preflight is not None:
            preflight(plan)
        prepare_folder(plan)
        writer = mf.PartWriter(plan.out, plan.shard.index, plan.shard.count)
        generator = make_generator(plan)
        bar = tqdm(
            total=len(pending), unit="video", desc=plan.method.name, disable=not progress or plan.shard.index != 0
        )
        try:
            for job in pending:
                sample = generator.generate(job.prompt, job.seed)
                _write_video(plan, generator, sample, plan.out / job.video)
                record = _record(plan, job, sample, warmup=generated == 0)
                try:
                    writer.append(record)
                except OSError as exc:
                    raise _write_error(writer.path, exc, f"{job.video} was kept but not recorded") from None
                plan.done[job.video] = record
                generated += 1
                bar.set_postfix(transformer_s=f"{sample.latency_transformer_s:.2f}", refresh=False)
                bar.update()
        finally:
            bar.close()
            generator.close()
    return finish(plan, generated)


def finish(plan: Plan, generated: int = 0) -> Result:
    """Merge the manifest; when every video of the run exists, write the method's outputs, the
    VBench prompt file if some names are stand-ins, and the summary."""
    order = {j.video: n for n, j in enumerate(plan.jobs)}
    try:
        records = mf.merge(plan.out, order=lambda r: (order.get(r.video, len(order)), r.video))
    except OSError as exc:
        raise _write_error(plan.out / mf.MANIFEST, exc, "the videos and their part records are kept") from None
    have = {r.video for r in records}
    missing = [j for j in plan.jobs if j.video not in have]
    outputs: list[Path] = []
    if missing:
        summary = (
            f"{len(plan.jobs) - len(missing)} of {len(plan.jobs)} videos of the run are done "
            f"({plan.shard} finished its part); "
            f"the summary is printed by the process that finishes last, or rerun the same command."
        )
        return Result(generated, records, False, summary, outputs)
    mine = [r for r in records if r.video in order]
    if plan.method.finish is not None:
        outputs += plan.method.finish(plan.out, mine)
    if any(j.altered for j in plan.jobs):
        path = plan.out / PROMPT_FILE
        write_json_atomic(path, {r.video: r.prompt for r in records})
        outputs.append(path)
    baseline = list(mf.load_records(plan.options.baseline)[0].values()) if plan.options.baseline else None
    summary = format_summary(summarize(mine, baseline), len(plan.jobs), baseline is not None)
    return Result(generated, records, True, summary, outputs)


def kept_text(plan: Plan | None) -> str:
    """What an interrupted run leaves, for the one line printed instead of a traceback."""
    if plan is None:
        return "Nothing was generated."
    done = sum(1 for j in plan.jobs if j.video in plan.done)
    return (
        f"{done} of {len(plan.jobs)} videos of the run are done in {plan.out}, each with its record; the video "
        f"in progress was dropped. Rerun the same command to resume."
    )
