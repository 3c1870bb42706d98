"""The per-server rules of bot/moderation/policy.py: pure functions, table-driven."""

from __future__ import annotations

import pytest

from bot.errors import InvalidRequest
from bot.moderation.policy import (
    BlockedTerm,
    BlockedTermUsed,
    ChannelNotAllowed,
    CoolingDown,
    Defaults,
    GuildSettings,
    Limits,
    MatchMode,
    PolicyRefusal,
    ProNotAllowed,
    Requester,
    RoleRequired,
    TooManyJobs,
    blocked_term_in,
    check_activity,
    check_request,
    clean_term,
)

WORD, SUB = MatchMode.WORD, MatchMode.SUBSTRING
DEFAULTS = Defaults(cooldown_seconds=30, max_jobs_per_user=2, pro_allowed=True, daily_allowance=40)


def term(text: str, mode: MatchMode = WORD) -> BlockedTerm:
    return BlockedTerm(clean_term(text), mode)


@pytest.mark.parametrize(
    ("terms", "prompt", "blocked"),
    [
        ([term("cat")], "a cat on a boat", True),
        ([term("cat")], "A CAT on a boat", True),
        ([term("CAT")], "a cat.", True),
        ([term("cat")], "concatenate strings", False),
        ([term("cat")], "cats everywhere", False),
        ([term("cat", SUB)], "concatenate strings", True),
        ([term("cat", SUB)], "CONCATENATE", True),
        ([term("gore")], "Gore!", True),
        ([term("blood bath")], "a   Blood\tBath at dawn", True),
        ([term("blood bath")], "a bloodbath", False),
        ([term("cat")], "a ｃａｔ in fullwidth letters", True),
        ([term("straße")], "STRASSE at night", True),
        ([term("a.b")], "axb", False),
        ([term("a.b")], "see a.b here", True),
        ([term("dog"), term("cat")], "a dog", True),
        ([], "anything at all", False),
        ([term("über", SUB)], "ÜBERMENSCH", True),
    ],
)
def test_blocked_terms(terms: list[BlockedTerm], prompt: str, blocked: bool) -> None:
    assert (blocked_term_in(prompt, tuple(terms)) is not None) is blocked


@pytest.mark.parametrize("bad", ["", "   ", "\t\n", "x" * 101])
def test_unusable_terms_are_refused(bad: str) -> None:
    with pytest.raises(InvalidRequest):
        clean_term(bad)


def test_terms_are_stored_normalised() -> None:
    assert clean_term("  Blood   BATH ") == "blood bath"


ALICE = Requester(user_id="1", channel_id="100", role_ids=frozenset({"9"}))


@pytest.mark.parametrize(
    ("settings", "requester", "prompt", "model", "refusal"),
    [
        (GuildSettings("g"), ALICE, "a cat", "sora-2", None),
        (GuildSettings("g"), ALICE, "a cat", "sora-2-pro", None),
        (GuildSettings("g", allowed_channel_ids=frozenset({"100"})), ALICE, "a cat", "sora-2", None),
        (GuildSettings("g", allowed_channel_ids=frozenset({"200"})), ALICE, "a cat", "sora-2", ChannelNotAllowed),
        (
            GuildSettings("g", allowed_channel_ids=frozenset({"200"})),
            Requester("1", channel_id="555", parent_channel_id="200"),
            "a cat",
            "sora-2",
            None,
        ),
        (GuildSettings("g", required_role_id="9"), ALICE, "a cat", "sora-2", None),
        (GuildSettings("g", required_role_id="8"), ALICE, "a cat", "sora-2", RoleRequired),
        (GuildSettings("g", required_role_id="8"), Requester("1", role_ids=None), "a cat", "sora-2", None),
        (GuildSettings("g", pro_allowed=False), ALICE, "a cat", "sora-2-pro", ProNotAllowed),
        (GuildSettings("g", pro_allowed=False), ALICE, "a cat", "sora-2", None),
        (GuildSettings("g", blocked_terms=(term("cat"),)), ALICE, "a Cat", "sora-2", BlockedTermUsed),
    ],
)
def test_check_request(
    settings: GuildSettings, requester: Requester, prompt: str, model: str, refusal: type[PolicyRefusal] | None
) -> None:
    limits = Limits.of(settings, DEFAULTS)
    if refusal is None:
        check_request(settings, limits, requester, prompt, model)
        return
    with pytest.raises(refusal) as caught:
        check_request(settings, limits, requester, prompt, model)
    assert caught.value.user_message.endswith(".")


def test_blocked_term_is_not_echoed() -> None:
    settings = GuildSettings("g", blocked_terms=(term("zorblax"),))
    with pytest.raises(BlockedTermUsed) as caught:
        check_request(settings, Limits.of(settings, DEFAULTS), ALICE, "a ZORBLAX dance", "sora-2")
    assert "zorblax" not in caught.value.user_message.lower()
    assert "zorblax" not in caught.value.detail.lower()
    assert "blocked" in caught.value.user_message and "Nothing was charged" in caught.value.user_message


def test_channel_refusal_names_the_allowed_channels() -> None:
    settings = GuildSettings("g", allowed_channel_ids=frozenset({"200", "300"}))
    with pytest.raises(ChannelNotAllowed) as caught:
        check_request(settings, Limits.of(settings, DEFAULTS), ALICE, "x", "sora-2")
    assert "<#200>" in caught.value.user_message and "<#300>" in caught.value.user_message


LIMITS = Limits(cooldown_seconds=30, max_jobs_per_user=2, pro_allowed=True, daily_allowance=40)


@pytest.mark.parametrize(
    ("limits", "unfinished", "last", "now", "refusal"),
    [
        (LIMITS, 0, None, 1000.0, None),
        (LIMITS, 1, 900.0, 1000.0, None),
        (LIMITS, 2, 900.0, 1000.0, TooManyJobs),
        (LIMITS, 0, 990.0, 1000.0, CoolingDown),
        (LIMITS, 0, 970.0, 1000.0, None),
        (LIMITS, 0, 970.5, 1000.0, CoolingDown),
        (Limits(0, 2, True, 40), 0, 999.9, 1000.0, None),
        (Limits(30, 1, True, 40), 1, None, 1000.0, TooManyJobs),
    ],
)
def test_check_activity(
    limits: Limits, unfinished: int, last: float | None, now: float, refusal: type[PolicyRefusal] | None
) -> None:
    if refusal is None:
        check_activity(limits, unfinished, last, now)
        return
    with pytest.raises(refusal):
        check_activity(limits, unfinished, last, now)


def test_cooldown_says_how_long_to_wait() -> None:
    with pytest.raises(CoolingDown) as caught:
        check_activity(LIMITS, 0, 990.0, 1000.0)
    assert "wait 20 s" in caught.value.user_message


def test_too_many_jobs_is_polite_and_specific() -> None:
    with pytest.raises(TooManyJobs) as caught:
        check_activity(LIMITS, 2, None, 1000.0)
    assert "2 unfinished videos" in caught.value.user_message and "Please wait" in caught.value.user_message


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (GuildSettings("g"), Limits(30, 2, True, 40)),
        (GuildSettings("g", cooldown_seconds=0, pro_allowed=False), Limits(0, 2, False, 40)),
        (GuildSettings("g", max_jobs_per_user=5, daily_allowance=0), Limits(30, 5, True, 0)),
    ],
)
def test_limits_fill_in_defaults(settings: GuildSettings, expected: Limits) -> None:
    assert Limits.of(settings, DEFAULTS) == expected
