"""Per-server settings on both backends: round trips, defaults, and that writes do not land inside a
ledger transaction."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.errors import InvalidRequest
from bot.jobs.store import Store
from bot.moderation.policy import MAX_BLOCKED_TERMS, BlockedTerm, GuildSettings, MatchMode
from bot.storage.sqlite import GuildSettingsRepository, Repository
from bot.storage.sqlite.db import connect
from tests.storage.conftest import guild_settings


async def test_a_new_server_has_every_default(repo: Store) -> None:
    assert await guild_settings(repo).get("g1") == GuildSettings("g1")


async def test_round_trip_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    repo = Repository(await connect(path))
    store = GuildSettingsRepository(repo)
    await store.update(
        "g1",
        actor_id="admin",
        required_role_id="42",
        cooldown_seconds=0,
        max_jobs_per_user=3,
        pro_allowed=False,
        audit_channel_id="77",
        daily_allowance=0,
    )
    assert await store.add_channel("g1", "100", actor_id="admin")
    assert not await store.add_channel("g1", "100", actor_id="admin")
    assert await store.add_blocked_term("g1", "gore", MatchMode.SUBSTRING, actor_id="admin")
    assert await store.add_blocked_term("g1", "blood bath", MatchMode.WORD, actor_id="admin")
    await store.add_channel("g2", "999", actor_id="other")  # another server's list stays apart
    await repo.close()

    repo = Repository(await connect(path))
    try:
        got = await GuildSettingsRepository(repo).get("g1")
        assert got == GuildSettings(
            "g1",
            allowed_channel_ids=frozenset({"100"}),
            required_role_id="42",
            blocked_terms=(BlockedTerm("blood bath", MatchMode.WORD), BlockedTerm("gore", MatchMode.SUBSTRING)),
            cooldown_seconds=0,
            max_jobs_per_user=3,
            pro_allowed=False,
            audit_channel_id="77",
            daily_allowance=0,
        )
        async with repo.db.execute("SELECT updated_by FROM guild_settings WHERE guild_id = 'g1'") as cur:
            assert [tuple(r) for r in await cur.fetchall()] == [("admin",)]
    finally:
        await repo.close()


async def test_update_changes_only_what_it_names_and_none_means_default(repo: Store) -> None:
    store = guild_settings(repo)
    await store.update("g1", actor_id="a", cooldown_seconds=5, daily_allowance=10)
    await store.update("g1", actor_id="b", cooldown_seconds=None)
    got = await store.get("g1")
    assert got.cooldown_seconds is None and got.daily_allowance == 10


async def test_unknown_fields_are_refused(repo: Store) -> None:
    with pytest.raises(ValueError, match="updated_by"):
        await guild_settings(repo).update("g1", actor_id="a", updated_by="someone else")
    with pytest.raises(ValueError, match="nothing"):
        await guild_settings(repo).update("g1", actor_id="a")


async def test_removing(repo: Store) -> None:
    store = guild_settings(repo)
    await store.add_channel("g1", "100", actor_id="a")
    await store.add_blocked_term("g1", "cat", MatchMode.WORD, actor_id="a")
    assert await store.remove_channel("g1", "100")
    assert not await store.remove_channel("g1", "100")
    assert await store.remove_blocked_term("g1", "cat")
    assert not await store.remove_blocked_term("g1", "cat")
    assert await store.get("g1") == GuildSettings("g1")


async def test_re_adding_a_term_changes_its_mode(repo: Store) -> None:
    store = guild_settings(repo)
    assert await store.add_blocked_term("g1", "cat", MatchMode.WORD, actor_id="a")
    assert not await store.add_blocked_term("g1", "cat", MatchMode.WORD, actor_id="a")
    assert await store.add_blocked_term("g1", "cat", MatchMode.SUBSTRING, actor_id="a")
    assert (await store.get("g1")).blocked_terms == (BlockedTerm("cat", MatchMode.SUBSTRING),)


async def test_the_number_of_terms_is_capped(repo: Store) -> None:
    store = guild_settings(repo)
    for i in range(MAX_BLOCKED_TERMS):
        await store.add_blocked_term("g1", f"t{i}", MatchMode.WORD, actor_id="a")
    with pytest.raises(InvalidRequest, match="remove some"):
        await store.add_blocked_term("g1", "one more", MatchMode.WORD, actor_id="a")
    # Changing the mode of an existing term is still fine at the cap.
    assert await store.add_blocked_term("g1", "t0", MatchMode.SUBSTRING, actor_id="a")


async def test_settings_writes_interleave_safely_with_ledger_transactions(repo: Store) -> None:
    """One connection: a settings write must wait for a ledger transaction instead of landing in it."""
    store = guild_settings(repo)

    async def settings_writes() -> None:
        for i in range(30):
            await store.update("g1", actor_id="a", cooldown_seconds=i)
            await store.add_channel("g1", str(i), actor_id="a")

    async def ledger_writes() -> None:
        for i in range(30):
            await repo.set_extra("g1", "u1", i, actor_id="a")

    await asyncio.gather(settings_writes(), ledger_writes())
    got = await store.get("g1")
    assert got.cooldown_seconds == 29 and len(got.allowed_channel_ids) == 30
    assert (await repo.balance("g1", "u1", 10)).extra == 29
