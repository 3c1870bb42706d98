"""Per-server settings (``/sora-admin``), written once for both backends. They share the repository's
driver, so on SQLite their writes take the same single-writer lock as a ledger transaction."""

from __future__ import annotations

import time
from typing import Any

from bot.errors import InvalidRequest
from bot.moderation.policy import MAX_BLOCKED_TERMS, BlockedTerm, GuildSettings, MatchMode
from bot.storage.driver import GUILD_TERMS_LOCK, Driver
from bot.storage.outage import raises_database_unavailable

# The scalar settings an admin may change, and the column each one lives in.
SCALAR_FIELDS = (
    "required_role_id",
    "cooldown_seconds",
    "max_jobs_per_user",
    "pro_allowed",
    "audit_channel_id",
    "daily_allowance",
)


@raises_database_unavailable
class SqlGuildSettings:
    def __init__(self, driver: Driver) -> None:
        self.driver = driver

    async def get(self, guild_id: str) -> GuildSettings:
        """The stored settings of ``guild_id`` (all defaults when it never changed anything)."""
        async with self.driver.read() as conn:
            row = await conn.fetchrow("SELECT * FROM guild_settings WHERE guild_id = ?", guild_id)
            channels = await conn.fetch("SELECT channel_id FROM guild_channels WHERE guild_id = ?", guild_id)
            terms = await conn.fetch(
                "SELECT term, mode FROM guild_blocked_terms WHERE guild_id = ? ORDER BY term", guild_id
            )
        scalars: dict[str, Any] = {}
        if row is not None:
            scalars = {name: row[name] for name in SCALAR_FIELDS}
            if scalars["pro_allowed"] is not None:
                scalars["pro_allowed"] = bool(scalars["pro_allowed"])  # SQLite stores booleans as 0/1
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
        # pro_allowed is a BOOLEAN column on PostgreSQL (SQLite binds a bool as 0/1).
        values = {k: (bool(v) if k == "pro_allowed" and v is not None else v) for k, v in fields.items()}
        columns = ", ".join(values)
        updates = ", ".join(f"{c} = excluded.{c}" for c in values)
        async with self.driver.write() as conn:
            await conn.execute(
                f"INSERT INTO guild_settings (guild_id, {columns}, updated_by, updated_at)"  # noqa: S608 - names checked
                f" VALUES (?, {', '.join('?' * len(values))}, ?, ?)"
                f" ON CONFLICT (guild_id) DO UPDATE SET {updates}, updated_by = excluded.updated_by,"
                " updated_at = excluded.updated_at",
                guild_id,
                *values.values(),
                actor_id,
                now,
            )

    async def add_channel(self, guild_id: str, channel_id: str, *, actor_id: str) -> bool:
        """False if it was already allowed."""
        return await self._change(
            "INSERT INTO guild_channels (guild_id, channel_id, added_by, added_at) VALUES (?,?,?,?)"
            " ON CONFLICT DO NOTHING",
            guild_id,
            channel_id,
            actor_id,
            time.time(),
        )

    async def remove_channel(self, guild_id: str, channel_id: str) -> bool:
        return await self._change(
            "DELETE FROM guild_channels WHERE guild_id = ? AND channel_id = ?", guild_id, channel_id
        )

    async def add_blocked_term(self, guild_id: str, term: str, mode: MatchMode, *, actor_id: str) -> bool:
        """Add (or change the mode of) a normalised term; False if it was there with that mode already."""
        async with self.driver.transaction() as conn:
            # Count and insert atomically: one server's term changes take turns across processes.
            await conn.lock(GUILD_TERMS_LOCK, guild_id)
            row = await conn.fetchrow(
                "SELECT mode FROM guild_blocked_terms WHERE guild_id = ? AND term = ?", guild_id, term
            )
            if row is not None and row[0] == mode.value:
                return False
            if row is None:
                counted = await conn.fetchrow("SELECT COUNT(*) FROM guild_blocked_terms WHERE guild_id = ?", guild_id)
                count = int(counted[0]) if counted else 0
                if count >= MAX_BLOCKED_TERMS:
                    raise InvalidRequest(
                        f"This server already has {count} blocked terms (the most it can have); remove some first."
                    )
            await conn.execute(
                "INSERT INTO guild_blocked_terms (guild_id, term, mode, added_by, added_at) VALUES (?,?,?,?,?)"
                " ON CONFLICT (guild_id, term) DO UPDATE SET mode = excluded.mode, added_by = excluded.added_by,"
                " added_at = excluded.added_at",
                guild_id,
                term,
                mode.value,
                actor_id,
                time.time(),
            )
        return True

    async def remove_blocked_term(self, guild_id: str, term: str) -> bool:
        return await self._change("DELETE FROM guild_blocked_terms WHERE guild_id = ? AND term = ?", guild_id, term)

    async def _change(self, sql: str, *params: Any) -> bool:
        """Run one write; whether it changed a row."""
        async with self.driver.write() as conn:
            return await conn.execute(sql, *params) > 0
