"""The words of a delivery that Discord refused twice (413), and which provider links may be shown."""

from __future__ import annotations

import pytest

from bot.discord_ui.notifier import shareable_link
from bot.errors import DeliveryFailed, UploadRefused

REFUSED = "The video was made, but Discord refused the upload even after it was re-encoded smaller."


def test_without_a_link_it_says_refused_and_refunded() -> None:
    error = UploadRefused("job 3: 413 twice")
    assert isinstance(error, DeliveryFailed)
    assert error.user_message == f"{REFUSED} Your credits were refunded."
    assert error.detail == "job 3: 413 twice"


def test_with_a_link_and_expiry_it_offers_both() -> None:
    error = UploadRefused("x", link="https://cdn.example/v/abc_1.mp4", expires_at=1_900_000_000.7)
    assert error.user_message == (
        f"{REFUSED} Your credits were refunded. You can still download it from the provider: "
        "https://cdn.example/v/abc_1.mp4 (link expires <t:1900000000:R>)"
    )


@pytest.mark.parametrize(
    "url",
    [
        None,
        "",
        "ftp://cdn.example/v.mp4",
        "javascript:alert(1)",
        "https://cdn.example/v.mp4 @everyone",
        "https://cdn.example/<@123>.mp4",
        "https://cdn.example/`code`.mp4",
        "https://cdn.example/" + "a" * 600,
    ],
)
def test_links_unfit_to_show_are_dropped(url: str | None) -> None:
    assert shareable_link(url) is None


def test_a_plain_link_is_kept_as_is() -> None:
    url = "https://cdn.example/files/video_01.mp4?sig=abc&exp=123"
    assert shareable_link(url) == url
