"""Prompt files for experiments/opensora.py: formats, deduplication, slices and the errors."""

from __future__ import annotations

import importlib.util
import json

import pytest

from magcache_videosys.experiments import prompts as P
from magcache_videosys.experiments.prompts import PromptError, load_prompts, select


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_json_in_vbench_format_dedups_keeping_first_order(tmp_path):
    entries = [{"prompt_en": "b", "dimension": ["x"]}, {"prompt_en": "a"}, {"prompt_en": "b", "dimension": ["y"]}]
    got = load_prompts(write(tmp_path, "p.json", json.dumps(entries)))
    assert got.prompts == ("b", "a")
    assert got.entries == 3 and got.duplicates == 1


def test_text_file_one_prompt_a_line_skips_blank_lines(tmp_path):
    got = load_prompts(write(tmp_path, "p.txt", "  a cat \n\nthe dog\na cat\n"))
    assert got.prompts == ("a cat", "the dog")
    assert got.duplicates == 1


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("p.json", '[{"prompt_en": "a"},', "not valid JSON (line 1"),
        ("p.json", '{"prompt_en": "a"}', "holds a JSON dict"),
        ("p.json", '[{"prompt": "a"}]', "entry 0"),
        ("p.json", '[{"prompt_en": "  "}]', "entry 0"),
        ("p.json", "[]", "holds no prompts"),
        ("p.txt", "\n \n", "holds no prompts"),
    ],
)
def test_malformed_or_empty_files_name_the_problem(tmp_path, name, text, message):
    with pytest.raises(PromptError, match=message.replace("(", r"\(")):
        load_prompts(write(tmp_path, name, text))


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(PromptError, match="does not exist"):
        load_prompts(tmp_path / "nope.json")
    with pytest.raises(PromptError, match="is a folder"):
        load_prompts(tmp_path)


def test_default_without_vbench_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(P.importlib.util, "find_spec", lambda name, *a: None if name == "vbench" else real(name, *a))
    with pytest.raises(PromptError, match="pip install vbench --no-deps"):
        load_prompts()


@pytest.mark.skipif(
    importlib.util.find_spec("vbench") is None, reason="vbench (pip install vbench --no-deps) not installed"
)
def test_vbench_list_has_944_distinct_of_946():
    got = load_prompts()
    assert (got.entries, len(got.prompts)) == (946, 944)


def test_slices(tmp_path):
    got = load_prompts(write(tmp_path, "p.txt", "\n".join("abcdef")))
    assert select(got) == tuple("abcdef")
    assert select(got, start=2, end=4) == ("c", "d")
    assert select(got, start=4, limit=10) == ("e", "f")
    assert select(got, limit=1) == ("a",)
    with pytest.raises(PromptError, match="--end and --limit"):
        select(got, end=3, limit=2)
    with pytest.raises(PromptError, match="outside the 6"):
        select(got, start=6)
    with pytest.raises(PromptError, match="greater than --start"):
        select(got, start=3, end=3)
    with pytest.raises(PromptError, match="at least 1"):
        select(got, limit=0)


def test_a_byte_order_mark_is_not_part_of_the_first_prompt(tmp_path):
    for name, text in [("p.txt", "a cat\nthe dog\n"), ("p.json", '[{"prompt_en": "a cat"}, {"prompt_en": "the dog"}]')]:
        path = tmp_path / name
        path.write_bytes(b"\xef\xbb\xbf" + text.encode())
        assert load_prompts(path).prompts == ("a cat", "the dog")


def test_special_files_are_read_like_any_other():
    with pytest.raises(PromptError, match="/dev/null holds no prompts"):
        load_prompts("/dev/null")
