"""Turn a provider's free-text failure reason into the right typed error.

Providers report a failed job with a sentence, not a code we can trust; moderation must be told
apart from other failures (it is explained to the user differently and never retried).
"""

from __future__ import annotations

import re

from bot.errors import GenerationFailed, ModerationRejected, ProviderError, ProviderOutOfCredits

_MODERATION = re.compile(
    r"moderat|safety|content.?polic|policy|violat|\brai\b|blocked|inappropriate|nsfw|sensitive|"
    r"real person|celebrit|public figure|copyright|guardrail|prohibited|not allowed|flagged|审核|违规",
    re.IGNORECASE,
)
_OUT_OF_CREDITS = re.compile(r"insufficient (credit|balance|quota)|out of credits|余额不足", re.IGNORECASE)

# Where in the pipeline the moderation fired, when the text says so (the relay documents three stages).
_STAGES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"image|photo|picture|input_reference|inpaint|real person|face", re.IGNORECASE), "reference image"),
    (re.compile(r"output|result|generated|video content", re.IGNORECASE), "finished video"),
    (re.compile(r"prompt|text|input", re.IGNORECASE), "prompt"),
)


def moderation_stage(message: str) -> str | None:
    for pattern, stage in _STAGES:
        if pattern.search(message):
            return stage
    return None


def classify_failure(message: str, *, provider: str, code: str | int | None = None) -> ProviderError:
    """A failed job's reason -> ModerationRejected / ProviderOutOfCredits / GenerationFailed."""
    text = f"{code} {message}" if code not in (None, "", 0) else message
    detail = f"{provider}: job failed: {text}".strip()
    if _OUT_OF_CREDITS.search(text):
        return ProviderOutOfCredits(detail)
    if _MODERATION.search(text):
        return ModerationRejected(detail, stage=moderation_stage(message))
    return GenerationFailed(detail)
