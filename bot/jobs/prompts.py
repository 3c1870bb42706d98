"""Prompt hygiene shared by every front end. Pure."""

from __future__ import annotations

import re
import unicodedata

# C0/C1 control characters (newline and tab are kept as whitespace), bidi overrides and
# zero-width characters: invisible text that can spoof what a prompt appears to say.
_INVISIBLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")


def clean_prompt(prompt: str) -> str:
    """NFC-normalise, drop invisible/control characters, turn tabs into spaces, trim."""
    text = unicodedata.normalize("NFC", prompt)
    text = _INVISIBLE.sub("", text).replace("\t", " ")
    return text.strip()
