"""The local members of the playground's one server and channel. Pure data: no I/O."""

from __future__ import annotations

from dataclasses import dataclass

GUILD_ID = "playground"
"""Playground jobs, credits and rules live under this server id (never a Discord snowflake)."""
CHANNEL_ID = "playground"


@dataclass(frozen=True)
class Member:
    id: str
    name: str
    moderator: bool = False
    """May cancel and delete other members' videos (Discord's Manage Messages)."""


MEMBERS: tuple[Member, ...] = (
    Member("alice", "Alice"),
    Member("bob", "Bob"),
    Member("mod", "Mo (moderator)", moderator=True),
)


def member(member_id: str | None) -> Member:
    """The member for an id from a form or URL (untrusted): an unknown one is the first member."""
    return next((m for m in MEMBERS if m.id == member_id), MEMBERS[0])


def may_manage(who: Member, user_id: str) -> bool:
    """The requester, or a moderator."""
    return who.id == user_id or who.moderator
