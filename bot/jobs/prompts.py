"""Prompt hygiene shared by every front end. Pure."""

from __future__ import annotations

import re
import unicodedata

# C0/C1 control characters (newline and tab are kept as whitespace), bidi overrides, embeddings,
# isolates and marks, and zero-width characters: invisible text that can spoof what a prompt appears to say.
_INVISIBLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b\u200c\u200e\u200f\u202a-\u202e\u2060-\u2069\ufeff]")
# The zero-width joiner is also what glues emoji sequences (👨‍👩‍👧, ❤️‍🔥): kept between emoji only.
_EMOJI = "\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff"
_STRAY_JOINER = re.compile(f"\u200d(?![{_EMOJI}])|(?<![{_EMOJI}\ufe0f])\u200d")


def clean_prompt(prompt: str) -> str:
    """NFC-normalise, drop invisible/control characters, turn tabs into spaces, trim."""
    text = unicodedata.normalize("NFC", prompt)
    text = _STRAY_JOINER.sub("", _INVISIBLE.sub("", text)).replace("\t", " ")
    return text.strip()
