"""Per-server settings (``/sora-admin``) on PostgreSQL: the same methods as ``GuildSettingsRepository``."""

from __future__ import annotations

import time
from typing import Any

from bot.errors import InvalidRequest
from bot.moderation.policy import MAX_BLOCKED_TERMS, BlockedTerm, GuildSettings, MatchMode
from bot.storage.guilds import SCALAR_FIELDS
from bot.storage.outage import postgres_outage, raises_database_unavailable
from bot.storage.postgres.repository import GUILD_TERMS_LOCK_SPACE, PostgresRepository, _changed


@raises_database_unavailable(postgres_outage)
class PostgresGuildSettings:
    def __init__(self, repo: PostgresRepository) -> None:
        self.repo = repo

    async def get(self, guild_id: str) -> GuildSettings:
        """The stored settings of ``guild_id`` (all defaults when it never changed anything)."""
        async with self.repo.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM guild_settings WHERE guild_id = $1", guild_id)
            channels = await conn.fetch("SELECT channel_id FROM guild_channels WHERE guild_id = $1", guild_id)
            terms = await conn.fetch(
                "SELECT term, mode FROM guild_blocked_terms WHERE guild_id = $1 ORDER BY term", guild_id
            )
        scalars: dict[str, Any] = {name: row[name] for name in SCALAR_FIELDS} if row is not None else {}
        return GuildSettings(
            guild_id=guild_id,
            allowed_channel_ids=frozenset(r[0] for r in channels),
            blocked_terms=tuple(BlockedTerm(r[0], MatchMode(r[1])) for r in terms),
            **scalars,
        )

    async def update(self, guild_id: str, *, actor_id: str, now: float | None = None, **fields: Any) -> None:
        """Set the given scalar settings (``None`` = back to the default); others stay as they are."""
        unknown = set(fields) - set(SCALAR_FIELDS)
        if unknown or not fields:
            raise ValueError(f"cannot update {sorted(unknown) or 'nothing'}")
        now = time.time() if now is None else now
        # pro_allowed is a BOOLEAN column here; everything else keeps its type.
        values = {k: (bool(v) if k == "pro_allowed" and v is not None else v) for k, v in fields.items()}
        columns = ", ".join(values)
        marks = ", ".join(f"${i}" for i in range(2, len(values) + 2))
        n = len(values)
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in values)
        await self.repo.pool.execute(
            f"INSERT INTO guild_settings (guild_id, {columns}, updated_by, updated_at)"  # noqa: S608 - names checked
            f" VALUES ($1, {marks}, ${n + 2}, ${n + 3})"
            f" ON CONFLICT (guild_id) DO UPDATE SET {updates}, updated_by = EXCLUDED.updated_by,"
            " updated_at = EXCLUDED.updated_at",
            guild_id,
            *values.values(),
            actor_id,
            now,
        )

    async def add_channel(self, guild_id: str, channel_id: str, *, actor_id: str) -> bool:
        """False if it was already allowed."""
        status = await self.repo.pool.execute(
            "INSERT INTO guild_channels (guild_id, channel_id, added_by, added_at) VALUES ($1,$2,$3,$4)"
            " ON CONFLICT DO NOTHING",
            guild_id,
            channel_id,
            actor_id,
            time.time(),
        )
        return _changed(status) > 0

    async def remove_channel(self, guild_id: str, channel_id: str) -> bool:
        status = await self.repo.pool.execute(
            "DELETE FROM guild_channels WHERE guild_id = $1 AND channel_id = $2", guild_id, channel_id
        )
        return _changed(status) > 0

    async def add_blocked_term(self, guild_id: str, term: str, mode: MatchMode, *, actor_id: str) -> bool:
        """Add (or change the mode of) a normalised term; False if it was there with that mode already."""
        async with self.repo.pool.acquire() as conn, conn.transaction():
            # Count and insert atomically: one server's term changes take turns across processes.
            await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2::text))", GUILD_TERMS_LOCK_SPACE, guild_id)
            current = await conn.fetchval(
                "SELECT mode FROM guild_blocked_terms WHERE guild_id = $1 AND term = $2", guild_id, term
            )
            if current == mode.value:
                return False
            if current is None:
                count = await conn.fetchval("SELECT COUNT(*) FROM guild_blocked_terms WHERE guild_id = $1", guild_id)
                if count >= MAX_BLOCKED_TERMS:
                    raise InvalidRequest(
                        f"This server already has {count} blocked terms (the most it can have); remove some first."
                    )
            await conn.execute(
                "INSERT INTO guild_blocked_terms (guild_id, term, mode, added_by, added_at) VALUES ($1,$2,$3,$4,$5)"
                " ON CONFLICT (guild_id, term) DO UPDATE SET mode = EXCLUDED.mode, added_by = EXCLUDED.added_by,"
                " added_at = EXCLUDED.added_at",
                guild_id,
                term,
                mode.value,
                actor_id,
                time.time(),
            )
        return True

    async def remove_blocked_term(self, guild_id: str, term: str) -> bool:
        status = await self.repo.pool.execute(
            "DELETE FROM guild_blocked_terms WHERE guild_id = $1 AND term = $2", guild_id, term
        )
        return _changed(status) > 0
