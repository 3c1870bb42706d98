"""bot.bounded: bookkeeping that cannot grow without end."""

from __future__ import annotations

import pytest

from bot.bounded import RecentSet
from bot.discord_ui.coalescer import MAX_DEAD_MESSAGES, EditCoalescer


def test_recent_set_forgets_the_oldest() -> None:
    recent: RecentSet[int] = RecentSet(3)
    for item in (1, 2, 3, 1, 4):  # re-adding 1 makes it the newest
        recent.add(item)
    assert list(recent) == [3, 1, 4]
    assert 2 not in recent and 1 in recent
    recent.discard(3)
    assert len(recent) == 2
    with pytest.raises(ValueError):
        RecentSet(0)


def test_dead_message_ids_are_bounded() -> None:
    coalescer = EditCoalescer()
    for message_id in range(MAX_DEAD_MESSAGES + 50):
        coalescer.dead.add(message_id)
    assert len(coalescer.dead) == MAX_DEAD_MESSAGES
    assert MAX_DEAD_MESSAGES + 49 in coalescer.dead and 0 not in coalescer.dead


def test_recent_set_compares_like_a_set() -> None:
    recent: RecentSet[int] = RecentSet(2)
    recent.add(1)
    assert recent == {1}
