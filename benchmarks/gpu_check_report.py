"""The GPU check's results as JSON and as a Markdown table made from that JSON, both written
atomically (the JSON is rewritten after every phase, so a run cut short keeps what it measured)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from magcache_videosys.atomic import write_json_atomic, write_text_atomic

JSON_NAME = "gpu_check.json"
MARKDOWN_NAME = "gpu_check.md"
MIB = 2**20

LOOP_COLUMNS = (
    "variant",
    "loop s",
    "speedup",
    "call s",
    "call speedup",
    "passes",
    "ideal",
    "of ideal",
    "peak MiB over plain",
    "cache MiB",
)


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _mib(value: int | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value / MIB:+.1f}" if signed else f"{value / MIB:.2f}"


def loop_cells(row: dict[str, Any]) -> list[str]:
    """One row of the loop table, in ``LOOP_COLUMNS`` order."""
    of_ideal = row["achieved_of_ideal"]
    return [
        row["variant"],
        f"{row['loop_s']:.3f}",
        _x(row["speedup"]),
        f"{row['call_s']:.3f}",
        _x(row["call_speedup"]),
        str(row["passes"]),
        _x(row["ideal_speedup"]),
        "-" if of_ideal is None else f"{100 * of_ideal:.1f}%",
        _mib(row["peak_bytes_over_plain"], signed=True),
        _mib(row["cache_bytes"]),
    ]


def _table(header: list[str] | tuple[str, ...], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cells) + " |" for cells in rows]


def _setting_line(data: dict[str, Any]) -> str:
    s, m, e = data["setting"], data["model"], data["environment"]
    text = f", {m['text_tokens']} text tokens" if "text_tokens" in m else ""
    return (
        f"STDiT3 depth {s['depth']}, hidden {s['hidden_size']}, {s['num_heads']} heads, caption channels "
        f"{s['caption_channels']} ({m['parameters'] / 1e6:,.1f}M parameters, random weights); {s['resolution']} "
        f"{s['aspect_ratio']} x {s['frames']} frames ({m['tokens_per_video']} tokens per video{text}), "
        f"{s['steps']} RFLOW steps, batched CFG, {s['dtype']} on {e['device']}; "
        f"VideoSys at {e['videosys']}; torch {e['torch']}; {s['rounds_run']} interleaved round(s) after warm-up, "
        f"best round per variant, timed with {s['clock']}."
    )


def _sync_rows(sync: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name, found in sync["variants"].items():
        if not sync["checked"]:
            verdict = "not checked (CPU)"
        elif found["strict"]:
            verdict = "passed" if found["error"] is None else f"FAILED: {found['error']}"
        else:
            verdict = "counted (warn)"
        per_step = [found["plugin_per_step"], found["videosys_per_step"]]
        rows.append([name, *("-" if v is None else f"{v:.2f}" for v in per_step), verdict])
    return rows


def _metric_rows(metrics: dict[str, Any]) -> list[list[str]]:
    diff = metrics["max_abs_difference"]
    rows = []
    for label, key, names in (("PSNR + SSIM", "psnr_ssim", ("psnr", "ssim")), ("LPIPS", "lpips", ("lpips",))):
        rates = metrics[key]
        if rates is None:
            rows.append([label, "-", "-", "-", f"not run: {metrics['lpips_missing']}"])
            continue
        rows.append(
            [
                label,
                f"{rates['device_frame_pairs_per_s']:.1f}",
                f"{rates['cpu_frame_pairs_per_s']:.1f}",
                f"{rates['ratio']:.2f}x",
                ", ".join(f"{n.upper()} {diff[n]:.1e}" for n in names),
            ]
        )
    return rows


def render_markdown(data: dict[str, Any]) -> str:
    lines = ["# GPU check: MagCache on VideoSys's Open-Sora 1.2 pipeline", ""]
    if not data["complete"]:
        lines += [f"**Incomplete**: the run stopped after the phase `{data['phase']}`.", ""]
    lines += [_setting_line(data), ""]
    if data["rows"]:
        lines += ["## Transformer loop and whole call", ""]
        lines += _table(LOOP_COLUMNS, [loop_cells(r) for r in data["rows"]])
        lines += ["", f"Block-stack share of the plain loop: {100 * data['stack_share']:.2f}%.", ""]
    sync = data["sync"]
    if sync["variants"]:
        lines += ["## Host-device synchronisation", "", sync["note"], ""]
        header = ["variant", "syncs/step, plugin code", "syncs/step, elsewhere", "plugin code under mode error"]
        lines += _table(header, _sync_rows(sync)) + [""]
    metrics = data["metrics"]
    if metrics:
        lines += [
            "## Metrics",
            "",
            f"{metrics['videos']} synthetic pairs of {metrics['frames']} frames {metrics['width']}x"
            f"{metrics['height']}; device path: {metrics['device_path']}; CPU path: {metrics['cpu_path']} (first "
            f"call {metrics['cpu_first_call_s']:.1f} s, not in the rate); values equal within "
            f"{metrics['tolerance']:g}: {'yes' if metrics['equal_within_tolerance'] else 'NO'}.",
            "",
        ]
        header = ["metrics", "device frame pairs/s", "CPU frame pairs/s", "device / CPU", "max abs difference"]
        lines += _table(header, _metric_rows(metrics)) + [""]
    if data["failed"]:
        lines += ["## Failed variants (left out from then on)", ""]
        lines += [f"- {name}: {error}" for name, error in data["failed"].items()] + [""]
    if data["notes"]:
        lines += ["## Notes", ""] + [f"- {note}" for note in data["notes"]] + [""]
    return "\n".join(lines)


def save(out: Path, data: dict[str, Any]) -> tuple[Path, Path]:
    """``OUT/gpu_check.json`` and ``OUT/gpu_check.md``."""
    return write_json_atomic(out / JSON_NAME, data), write_text_atomic(out / MARKDOWN_NAME, render_markdown(data))
