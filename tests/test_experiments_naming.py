"""Video file names: VBench's ``{prompt}-{index}.mp4`` and the stand-ins for prompts that cannot be names."""

from __future__ import annotations

import hashlib

from magcache_videosys.experiments.naming import MAX_SAMPLES, VBENCH_LONG_PROMPT_CHARS, assign_stems, video_file


def test_plain_prompts_are_used_exactly():
    stems = assign_stems(["A 3D model of a 1800s victorian house.", "The bund Shanghai, oil painting"])
    assert video_file(stems["The bund Shanghai, oil painting"].text, 4) == "The bund Shanghai, oil painting-4.mp4"
    assert not any(s.altered for s in stems.values())


def test_slash_becomes_underscore():
    stem = assign_stems(["AC/DC on stage"])["AC/DC on stage"]
    assert stem.text == "AC_DC on stage" and stem.altered


def test_control_characters_never_reach_a_file_name():
    prompt = "a cat\non a sofa\tat night\r"
    stem = assign_stems([prompt])[prompt]
    assert stem.text == "a cat_on a sofa_at night_" and stem.altered


def test_too_long_keeps_vbench2_first_180_characters():
    prompt = "a" * 300
    stem = assign_stems([prompt])[prompt]
    assert stem.text == "a" * VBENCH_LONG_PROMPT_CHARS and stem.altered
    fits = "b" * 247  # "-999.mp4" makes 255 bytes: still a legal name for any sample index, kept whole
    assert assign_stems([fits])[fits].text == fits


def test_limit_counts_bytes_with_room_for_any_sample_index():
    prompt = "é" * 150  # 300 bytes in UTF-8
    stem = assign_stems([prompt])[prompt]
    name = video_file(stem.text, MAX_SAMPLES - 1)
    assert len(name.encode("utf-8")) <= 255 and len(video_file(stem.text + "é", MAX_SAMPLES - 1).encode("utf-8")) > 255
    assert prompt.startswith(stem.text)
    assert not assign_stems(["x" * 247])["x" * 247].altered  # "-999.mp4": 255 bytes
    assert assign_stems(["x" * 248])["x" * 248].altered


def test_collisions_get_a_hash_and_exact_names_win():
    a, b, c = "cats/dogs", "cats_dogs", "cats\0dogs"
    stems = assign_stems([a, b, c])
    assert stems[b].text == b and not stems[b].altered  # the prompt that is a valid name keeps it
    assert stems[a].text == "cats_dogs~" + hashlib.sha1(a.encode()).hexdigest()[:8]
    assert stems[c].text == "cats_dogs~" + hashlib.sha1(c.encode()).hexdigest()[:8]
    long1, long2 = "z" * 260 + " one", "z" * 260 + " two"
    stems = assign_stems([long1, long2])
    assert stems[long1].text == "z" * 180
    assert stems[long2].text == "z" * 180 + "~" + hashlib.sha1(long2.encode()).hexdigest()[:8]
    huge1, huge2 = "é" * 200 + "1", "é" * 200 + "2"  # 180 characters are 360 bytes: cut to fit, hash included
    stems = assign_stems([huge1, huge2])
    assert len(video_file(stems[huge2].text, 0).encode()) <= 255 and stems[huge2].text.endswith(
        "~" + hashlib.sha1(huge2.encode()).hexdigest()[:8]
    )
    assert stems[huge1].text != stems[huge2].text


def test_names_do_not_depend_on_the_slice():
    prompts = ["p/" + str(i % 3) for i in range(3)] + ["p_0"]
    whole = assign_stems(prompts)
    assert len({s.text for s in whole.values()}) == len(prompts)
    assert assign_stems(list(reversed(prompts)))["p_0"] == whole["p_0"]
