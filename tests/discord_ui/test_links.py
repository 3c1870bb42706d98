"""Provider-supplied URLs are shown parsed, as <url>, never as masked links (issue 13, item 7)."""

from __future__ import annotations

import dataclasses

import pytest

from bot.discord_ui.links import NOT_SHOWN, safe_url, shown
from bot.discord_ui.status import status_embed
from bot.jobs.model import Job, State
from cogs.jobs import describe

JOB = Job(
    id=42,
    state=State.SUCCEEDED,
    provider="relay",
    user_id="7",
    prompt="an owl",
    seconds=8,
    size="1280x720",
    model="sora-2",
    created_at=0.0,
    updated_at=0.0,
    guild_id="1",
    channel_id="2",
    cost=8,
    result_message_id="99",
    result_url="https://cdn.provider.example/v/42.mp4?sig=abc",
)
HOSTILE = [
    "https://evil.example/x) [Claim your free Nitro](https://phish.example",  # breaks out of a masked link
    "https://evil.example/a>@everyone",  # ends the <url> form early
    "javascript:alert(1)",
    "data:text/html,<script>",
    "https://evil.example/\n# heading",
    "https://user:pw@evil.example/v.mp4",
    "//evil.example/v.mp4",
    "https://evil.example/`code`",
    "https://evil.example/" + "a" * 2000,
    "https://:99999/v.mp4",
    "",
    None,
]


@pytest.mark.parametrize("url", HOSTILE)
def test_hostile_urls_are_not_shown(url: str | None) -> None:
    assert safe_url(url) is None
    assert shown(url) == NOT_SHOWN


def test_plain_urls_are_shown_in_angle_brackets() -> None:
    assert shown("https://cdn.provider.example/v/42.mp4?sig=abc") == "<https://cdn.provider.example/v/42.mp4?sig=abc>"
    assert shown("http://127.0.0.1:8080/files/1.mp4") == "<http://127.0.0.1:8080/files/1.mp4>"


def test_jobs_listing_and_status_use_the_plain_form() -> None:
    line = describe(JOB)
    assert "<https://cdn.provider.example/v/42.mp4?sig=abc>" in line and "](" not in line
    embed = status_embed(JOB).to_dict()
    (video,) = [f for f in embed.get("fields", []) if f["name"] == "Video"]
    assert video["value"] == "<https://cdn.provider.example/v/42.mp4?sig=abc>"


@pytest.mark.parametrize("url", HOSTILE[:2])
def test_a_hostile_result_url_never_reaches_the_listing_or_status(url: str) -> None:
    job = dataclasses.replace(JOB, result_url=url)
    assert "phish" not in describe(job) and "@everyone" not in describe(job)
    embed = str(status_embed(job).to_dict())
    assert "phish" not in embed and "@everyone" not in embed
