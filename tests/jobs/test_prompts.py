"""clean_prompt: invisible and control characters go, newlines, emoji and real text stay."""

from __future__ import annotations

import pytest

from bot.jobs.prompts import clean_prompt


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("a cat\x00 on\x07 a\x1b[31m mat\x7f", "a cat on a[31m mat"),  # C0 controls and DEL
        ("c1\x85\x9b control", "c1 control"),  # C1 controls
        ("admin\u202eelif\u202c txt", "adminelif txt"),  # bidi override / pop
        ("\u2066isolated\u2069 \u2067rtl\u2069 \u2068first\u2069", "isolated rtl first"),  # bidi isolates
        ("mark\u200e\u200f\u061c", "mark"),  # LRM, RLM, Arabic letter mark
        ("zero\u200bwidth\u200c\u2060joiner\ufeff", "zerowidthjoiner"),  # ZWSP, ZWNJ, WJ, BOM
        ("hid\u200dden", "hidden"),  # a joiner between letters hides nothing useful
        ("\ufeff  padded \t ", "padded"),
    ],
)
def test_invisible_and_control_characters_are_removed(raw: str, clean: str) -> None:
    assert clean_prompt(raw) == clean


def test_newlines_are_kept_and_tabs_become_spaces() -> None:
    assert clean_prompt("line one\nline two\r\n\tindented") == "line one\nline two\n indented"


@pytest.mark.parametrize(
    "emoji",
    [
        "🐱🚀",
        "👨\u200d👩\u200d👧",  # family: a ZWJ sequence
        "❤\ufe0f\u200d🔥",  # heart on fire: variation selector then ZWJ
        "🏳\ufe0f\u200d🌈",
        "👍🏽",  # skin tone modifier
        "🇯🇵",  # regional indicator flag
    ],
)
def test_emoji_survive_intact(emoji: str) -> None:
    assert clean_prompt(f"a video with {emoji} in it") == f"a video with {emoji} in it"


def test_text_in_other_scripts_is_kept_and_nfc_normalised() -> None:
    assert clean_prompt("café") == "café"  # e + combining acute -> é
    assert clean_prompt("東京の夜景、ネオン") == "東京の夜景、ネオン"
    assert clean_prompt("שלום עולם") == "שלום עולם"


def test_a_prompt_of_only_invisible_characters_is_empty() -> None:
    assert clean_prompt("\u200b\u202e\x00 \t\n") == ""
