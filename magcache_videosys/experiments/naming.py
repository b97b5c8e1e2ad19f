"""Video file names as VBench reads them.

VBench's standard mode looks each video up as ``f"{prompt}-{index}.mp4"`` with the prompt exactly
as in its prompt list, so every name that the file system accepts is used as it is (all VBench
prompts fit). A prompt that cannot be a file name as it is gets a stand-in stem:

* ``/`` and control characters (NUL, a newline, a tab, ...) become ``_``;
* a name longer than the file-system limit (255 bytes) keeps the first 180 characters of the
  prompt, VBench-2.0's rule for its over-long prompts, cut further if still too long in bytes;
* a stand-in that collides with another prompt's name gets ``~`` and 8 hex digits of the prompt's
  SHA-1 appended.

Whether a name fits is judged with room for a sample index up to ``MAX_SAMPLES - 1``, whatever
``--num-samples`` a run uses, so a resume with another sample count finds every video under the
same name.

VBench cannot recover such a prompt from the file name, so the run also writes
``vbench_prompts.json`` (``{file name: prompt}`` for every video), the file that
``vbench evaluate --mode custom_input --prompt_file`` takes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Iterable

NAME_MAX = 255  # bytes in one file name on Linux file systems (ext4, xfs, Lustre, NFS)
VBENCH_LONG_PROMPT_CHARS = 180
SUFFIX = ".mp4"
PROMPT_FILE = "vbench_prompts.json"
MAX_SAMPLES = 1000  # names leave room for "-999.mp4"
_NOT_IN_NAMES = re.compile(r"[/\x00-\x1f\x7f]")  # a path separator, or characters no one wants in a file name


@dataclass(frozen=True)
class Stem:
    """The part of a video's file name before ``-{index}.mp4``."""

    text: str
    altered: bool  # True when it differs from the prompt (VBench's standard mode cannot find it)


def video_file(stem: str, index: int) -> str:
    return f"{stem}-{index}{SUFFIX}"


def _fits(stem: str, name_max: int) -> bool:
    return len(video_file(stem, MAX_SAMPLES - 1).encode("utf-8")) <= name_max


def _cut_to_fit(text: str, name_max: int) -> str:
    while text and not _fits(text, name_max):
        text = text[:-1]
    return text


def _stand_in(prompt: str, name_max: int) -> str:
    text = _NOT_IN_NAMES.sub("_", prompt)
    if not _fits(text, name_max):
        text = _cut_to_fit(text[:VBENCH_LONG_PROMPT_CHARS], name_max)
    return text


def assign_stems(prompts: Iterable[str], name_max: int = NAME_MAX) -> dict[str, Stem]:
    """A file-name stem for each distinct prompt.

    Computed over the whole prompt list, before any slice or shard, so every process of a run and
    every rerun gives a prompt the same name.
    """
    prompts = list(dict.fromkeys(prompts))
    stems: dict[str, Stem] = {}
    for prompt in prompts:
        if not _NOT_IN_NAMES.search(prompt) and _fits(prompt, name_max):
            stems[prompt] = Stem(prompt, altered=False)
    used = {s.text for s in stems.values()}
    for prompt in prompts:
        if prompt in stems:
            continue
        text = _stand_in(prompt, name_max)
        if text in used or not text:
            tag = "~" + hashlib.sha1(prompt.encode("utf-8")).hexdigest()[:8]
            text = _cut_to_fit(text, name_max - len(tag)) + tag
        used.add(text)
        stems[prompt] = Stem(text, altered=True)
    return stems
