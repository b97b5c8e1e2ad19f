"""VBench quality / semantic / total scores from VBench's per-dimension results.

Each dimension's raw score is min-max normalised with VBench's constants and weighted; the
quality score is the weighted mean of the 7 quality dimensions, the semantic score of the 9
semantic ones, and total = (4 * quality + 1 * semantic) / 5. The constants and weights are the
numbers used by the reference scorer (eval/magcache/vbench/cal_vbench.py in the MagCache
repository, the same as eval/pab/vbench/cal_vbench.py in VideoSys), which takes them from VBench.
Like that scorer, raw scores are rounded to 4 decimals before normalising, so totals match it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .errors import MetricsError

QUALITY_WEIGHT, SEMANTIC_WEIGHT = 4, 1


@dataclass(frozen=True)
class Dimension:
    group: str  # "quality" or "semantic"
    low: float  # raw score mapped to 0
    high: float  # raw score mapped to 1
    weight: float


# name (as VBench writes it) -> normalisation; in VBench's report order
DIMENSIONS: dict[str, Dimension] = {
    "subject_consistency": Dimension("quality", 0.1462, 1.0, 1),
    "background_consistency": Dimension("quality", 0.2615, 1.0, 1),
    "temporal_flickering": Dimension("quality", 0.6293, 1.0, 1),
    "motion_smoothness": Dimension("quality", 0.706, 0.9975, 1),
    "dynamic_degree": Dimension("quality", 0.0, 1.0, 0.5),
    "aesthetic_quality": Dimension("quality", 0.0, 1.0, 1),
    "imaging_quality": Dimension("quality", 0.0, 1.0, 1),
    "object_class": Dimension("semantic", 0.0, 1.0, 1),
    "multiple_objects": Dimension("semantic", 0.0, 1.0, 1),
    "human_action": Dimension("semantic", 0.0, 1.0, 1),
    "color": Dimension("semantic", 0.0, 1.0, 1),
    "spatial_relationship": Dimension("semantic", 0.0, 1.0, 1),
    "scene": Dimension("semantic", 0.0, 0.8222, 1),
    "appearance_style": Dimension("semantic", 0.0009, 0.2855, 1),
    "temporal_style": Dimension("semantic", 0.0, 0.364, 1),
    "overall_consistency": Dimension("semantic", 0.0, 0.364, 1),
}

RESULTS_SUFFIX = "_eval_results.json"
INFO_SUFFIX = "_full_info.json"


@dataclass
class VBenchScores:
    raw: dict[str, float]
    normalized: dict[str, float]  # min-max normalised, before the dimension weight
    quality: float | None
    semantic: float | None
    total: float | None
    missing: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_score": self.total,
            "quality_score": self.quality,
            "semantic_score": self.semantic,
            "normalized": self.normalized,
            "raw": self.raw,
            "missing_dimensions": self.missing,
            "partial": bool(self.missing),
        }


def _group_score(normalized: Mapping[str, float], group: str) -> float | None:
    names = [n for n in normalized if DIMENSIONS[n].group == group]
    if not names:
        return None
    return sum(normalized[n] * DIMENSIONS[n].weight for n in names) / sum(DIMENSIONS[n].weight for n in names)


def compute_scores(raw: Mapping[str, float], allow_missing: bool = False) -> VBenchScores:
    """Scores from raw per-dimension values; missing dimensions are an error unless ``allow_missing``
    (then each group averages the dimensions it has, and the total needs both groups)."""
    unknown = sorted(set(raw) - DIMENSIONS.keys())
    if unknown:
        raise MetricsError(f"unknown VBench dimensions {unknown}; known: {', '.join(DIMENSIONS)}")
    missing = [n for n in DIMENSIONS if n not in raw]
    if missing and not allow_missing:
        raise MetricsError(
            f"{len(missing)} of {len(DIMENSIONS)} VBench dimensions have no result: {', '.join(missing)}. "
            "Run eval/vbench/run_vbench.py for them, or pass --allow-missing to score the others (a partial score)"
        )
    normalized = {}
    for name, dim in DIMENSIONS.items():
        if name in raw:
            normalized[name] = (round(float(raw[name]), 4) - dim.low) / (dim.high - dim.low)
    quality, semantic = _group_score(normalized, "quality"), _group_score(normalized, "semantic")
    total = None
    if quality is not None and semantic is not None:
        total = (QUALITY_WEIGHT * quality + SEMANTIC_WEIGHT * semantic) / (QUALITY_WEIGHT + SEMANTIC_WEIGHT)
    return VBenchScores(dict(raw), normalized, quality, semantic, total, missing)


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise MetricsError(f"cannot read {path}: {exc}") from exc


def read_results(score_dir: str | Path) -> dict[str, float]:
    """Raw scores from VBench's ``*_eval_results.json`` files (``{dimension: [score, per-video...]}``).

    When a dimension appears in several files the newest file wins. A results file whose
    ``*_full_info.json`` lists no video for a dimension is an error: VBench then scores nothing
    (it expects videos named ``{prompt}-{index}.mp4``).
    """
    score_dir = Path(score_dir)
    if not score_dir.is_dir():
        raise MetricsError(f"{score_dir} is not a directory")
    files = sorted(score_dir.glob(f"*{RESULTS_SUFFIX}"), key=lambda p: p.stat().st_mtime)
    if not files:
        raise MetricsError(f"no *{RESULTS_SUFFIX} files in {score_dir}: run eval/vbench/run_vbench.py first")
    raw: dict[str, float] = {}
    for path in files:
        info_path = path.with_name(path.name[: -len(RESULTS_SUFFIX)] + INFO_SUFFIX)
        info = _load_json(info_path) if info_path.is_file() else None
        for name, value in _load_json(path).items():
            score = value[0] if isinstance(value, list) else value
            if not isinstance(score, (int, float)):
                raise MetricsError(f"{path}: the result for {name} is not a number: {value!r:.80}")
            if info is not None and not any(
                name in entry.get("dimension", []) and entry.get("video_list") for entry in info
            ):
                raise MetricsError(
                    f"{info_path} lists no video for {name}, so its score means nothing; "
                    "VBench's standard mode needs videos named '{prompt}-{index}.mp4'"
                )
            raw[name] = float(score)
    return raw


def format_scores(scores: VBenchScores) -> str:
    """A plain-text table in VBench's report order, percentages as VBench prints them."""

    def percent(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.2f}%"

    lines = [f"{'dimension':24s} {'raw':>8s} {'normalised':>11s}"]
    for name in DIMENSIONS:
        raw = scores.raw.get(name)
        lines.append(
            f"{name:24s} {'missing' if raw is None else f'{raw:.4f}':>8s} {percent(scores.normalized.get(name)):>11s}"
        )
    title = "partial scores (missing: " + ", ".join(scores.missing) + ")" if scores.missing else "scores"
    lines += [
        "",
        title,
        f"  quality score   {percent(scores.quality)}",
        f"  semantic score  {percent(scores.semantic)}",
        f"  total score     {percent(scores.total)}",
    ]
    return "\n".join(lines)
