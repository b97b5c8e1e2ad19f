"""Prompt lists: VBench's own file by default, or a user's JSON or text file.

VBench's ``VBench_full_info.json`` lists 946 entries but only 944 distinct prompts (two prompts
serve two dimensions each); a video exists once per prompt and sample index, so each distinct
prompt is generated once. ``--tiny`` smoke runs default to a handful of prompts shipped with the
package (:data:`SMOKE_FILE`, the same format), so they need nothing installed beyond VideoSys.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

VBENCH_FILE = "VBench_full_info.json"
SMOKE_FILE = Path(__file__).with_name("smoke_prompts.json")
VBENCH_HINT = (
    "VBench's prompt list ships with the `vbench` package; `pip install vbench --no-deps` installs just "
    "its files (no models), or pass --prompts FILE"
)


class PromptError(ValueError):
    """A prompt source that cannot be used; the message names the problem and the fix."""


@dataclass(frozen=True)
class PromptList:
    """Distinct prompts in first-seen order, and where they came from."""

    prompts: tuple[str, ...]
    source: str
    entries: int  # entries in the source, duplicates included

    @property
    def duplicates(self) -> int:
        return self.entries - len(self.prompts)


def vbench_prompt_file() -> Path:
    """``VBench_full_info.json`` of the installed ``vbench`` package (found without importing it,
    since a ``--no-deps`` install cannot import)."""
    spec = importlib.util.find_spec("vbench")
    if spec is None or not spec.submodule_search_locations:
        raise PromptError(f"the default prompt list is VBench's, and vbench is not installed: {VBENCH_HINT}.")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / VBENCH_FILE
        if path.is_file():
            return path
    raise PromptError(f"the installed vbench package has no {VBENCH_FILE}; reinstall it ({VBENCH_HINT}).")


def load_prompts(path: str | Path | None = None) -> PromptList:
    """Read prompts from ``path`` (JSON list of objects with ``prompt_en``, or one prompt a line),
    or VBench's list when ``path`` is None; duplicates are dropped, keeping the first.

    Any readable file works, ``/dev/stdin`` or a shell's ``<(...)`` included; a UTF-8 byte-order
    mark (as some editors save) is not part of the first prompt."""
    file = vbench_prompt_file() if path is None else Path(path)
    if not file.exists() or file.is_dir():
        what = "is a folder, not a file" if file.is_dir() else "does not exist"
        raise PromptError(
            f"prompt file {file} {what}; pass --prompts with a JSON or text file, or leave it out for {VBENCH_FILE}."
        )
    try:
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PromptError(f"prompt file {file} is not UTF-8 text ({exc}); save it as UTF-8.") from None
    except OSError as exc:
        reason = exc.strerror or exc
        raise PromptError(f"prompt file {file} cannot be read ({reason}); check its permissions.") from None
    raw = _parse_json(file, text) if file.suffix.lower() == ".json" and text.strip() else _parse_lines(text)
    if not raw:
        raise PromptError(f"prompt file {file} holds no prompts; give a file with at least one prompt.")
    return PromptList(prompts=tuple(dict.fromkeys(raw)), source=str(file), entries=len(raw))


def inline_prompts(texts: tuple[str, ...], source: str = "the command line") -> PromptList:
    """Prompts given directly (``calibrate --prompt ...``), checked as a file's would be."""
    prompts = [t.strip() for t in texts if isinstance(t, str) and t.strip()]
    if len(prompts) != len(texts) or not prompts:
        raise PromptError(f"give at least one prompt, each non-empty text; got {list(texts)!r}.")
    return PromptList(prompts=tuple(dict.fromkeys(prompts)), source=source, entries=len(prompts))


def _parse_json(file: Path, text: str) -> list[str]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PromptError(
            f"prompt file {file} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            f'a JSON prompt file is a list of objects with "prompt_en", as in {VBENCH_FILE}.'
        ) from None
    if not isinstance(data, list):
        raise PromptError(
            f'prompt file {file} holds a JSON {type(data).__name__}; expected a list of objects with "prompt_en" '
            f"(the {VBENCH_FILE} format)."
        )
    prompts = []
    for i, entry in enumerate(data):
        prompt = entry.get("prompt_en") if isinstance(entry, dict) else entry
        if not isinstance(prompt, str) or not prompt.strip():
            raise PromptError(
                f'prompt file {file}: entry {i} ({json.dumps(entry)[:80]}) has no usable "prompt_en"; every entry '
                f'must be an object with a non-empty "prompt_en" string.'
            )
        prompts.append(prompt)
    return prompts


def _parse_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def select(prompts: PromptList, start: int = 0, end: int | None = None, limit: int | None = None) -> tuple[str, ...]:
    """The distinct prompts ``[start, end)``, or ``limit`` prompts from ``start``."""
    n = len(prompts.prompts)
    if start < 0 or start >= n:
        raise PromptError(f"--start {start} is outside the {n} distinct prompts of {prompts.source}; use 0 to {n - 1}.")
    if end is not None and limit is not None:
        raise PromptError("--end and --limit both say where the slice stops; give one of them.")
    if limit is not None:
        if limit < 1:
            raise PromptError(f"--limit must be at least 1, got {limit}.")
        end = start + limit
    if end is not None and end <= start:
        raise PromptError(f"--end {end} must be greater than --start {start}.")
    return prompts.prompts[start : min(end, n) if end is not None else n]
