"""Per-server settings (``/sora-admin``) in SQLite. Shares the Repository's connection and write lock,
so its writes never interleave with a ledger transaction."""

from __future__ import annotations

import time
from typing import Any

from bot.errors import InvalidRequest
from bot.moderation.policy import MAX_BLOCKED_TERMS, BlockedTerm, GuildSettings, MatchMode
from bot.storage.outage import raises_database_unavailable, sqlite_outage
from bot.storage.repository import Repository

# The scalar settings an admin may change, and the column each one lives in.
SCALAR_FIELDS = (
    "required_role_id",
    "cooldown_seconds",
    "max_jobs_per_user",
    "pro_allowed",
    "audit_channel_id",
    "daily_allowance",
)


@raises_database_unavailable(sqlite_outage)
class GuildSettingsRepository:
    def __init__(self, repo: Repository) -> None:
        self.repo = repo

    async def get(self, guild_id: str) -> GuildSettings:
        """The stored settings of ``guild_id`` (all defaults when it never changed anything)."""
        db = self.repo.db
        async with db.execute("SELECT * FROM guild_settings WHERE guild_id = ?", (guild_id,)) as cur:
            row = await cur.fetchone()
        async with db.execute("SELECT channel_id FROM guild_channels WHERE guild_id = ?", (guild_id,)) as cur:
            channels = frozenset(r[0] for r in await cur.fetchall())
        async with db.execute(
            "SELECT term, mode FROM guild_blocked_terms WHERE guild_id = ? ORDER BY term", (guild_id,)
        ) as cur:
            terms = tuple(BlockedTerm(r[0], MatchMode(r[1])) for r in await cur.fetchall())
        scalars: dict[str, Any] = {}
        if row is not None:
            scalars = {name: row[name] for name in SCALAR_FIELDS}
            if scalars["pro_allowed"] is not None:
                scalars["pro_allowed"] = bool(scalars["pro_allowed"])
        return GuildSettings(guild_id=guild_id, allowed_channel_ids=channels, blocked_terms=terms, **scalars)

    async def update(self, guild_id: str, *, actor_id: str, now: float | None = None, **fields: Any) -> None:
        """Set the given scalar settings (``None`` = back to the default); others stay as they are."""
        unknown = set(fields) - set(SCALAR_FIELDS)
        if unknown or not fields:
            raise ValueError(f"cannot update {sorted(unknown) or 'nothing'}")
        now = time.time() if now is None else now
        values = {k: (int(v) if isinstance(v, bool) else v) for k, v in fields.items()}
        columns = ", ".join(values)
        updates = ", ".join(f"{c} = excluded.{c}" for c in values)
        await self.repo._write(  # one lock for every write on the shared connection
            f"INSERT INTO guild_settings (guild_id, {columns}, updated_by, updated_at)"  # noqa: S608 - names checked
            f" VALUES (?, {', '.join('?' * len(values))}, ?, ?)"
            f" ON CONFLICT (guild_id) DO UPDATE SET {updates}, updated_by = excluded.updated_by,"
            " updated_at = excluded.updated_at",
            (guild_id, *values.values(), actor_id, now),
        )

    async def add_channel(self, guild_id: str, channel_id: str, *, actor_id: str) -> bool:
        """False if it was already allowed."""
        return await self._change(
            "INSERT OR IGNORE INTO guild_channels (guild_id, channel_id, added_by, added_at) VALUES (?,?,?,?)",
            (guild_id, channel_id, actor_id, time.time()),
        )

    async def remove_channel(self, guild_id: str, channel_id: str) -> bool:
        return await self._change(
            "DELETE FROM guild_channels WHERE guild_id = ? AND channel_id = ?", (guild_id, channel_id)
        )

    async def add_blocked_term(self, guild_id: str, term: str, mode: MatchMode, *, actor_id: str) -> bool:
        """Add (or change the mode of) a normalised term; False if it was there with that mode already."""
        async with self.repo._transaction():  # count and insert atomically
            async with self.repo.db.execute(
                "SELECT mode FROM guild_blocked_terms WHERE guild_id = ? AND term = ?", (guild_id, term)
            ) as cur:
                row = await cur.fetchone()
            if row is not None and row[0] == mode.value:
                return False
            if row is None:
                async with self.repo.db.execute(
                    "SELECT COUNT(*) FROM guild_blocked_terms WHERE guild_id = ?", (guild_id,)
                ) as cur:
                    count = (await cur.fetchone() or (0,))[0]
                if count >= MAX_BLOCKED_TERMS:
                    raise InvalidRequest(
                        f"This server already has {count} blocked terms (the most it can have); remove some first."
                    )
            await self.repo.db.execute(
                "INSERT INTO guild_blocked_terms (guild_id, term, mode, added_by, added_at) VALUES (?,?,?,?,?)"
                " ON CONFLICT (guild_id, term) DO UPDATE SET mode = excluded.mode, added_by = excluded.added_by,"
                " added_at = excluded.added_at",
                (guild_id, term, mode.value, actor_id, time.time()),
            )
        return True

    async def remove_blocked_term(self, guild_id: str, term: str) -> bool:
        return await self._change("DELETE FROM guild_blocked_terms WHERE guild_id = ? AND term = ?", (guild_id, term))

    async def _change(self, sql: str, params: tuple[Any, ...]) -> bool:
        """Run one write; whether it changed a row."""
        async with self.repo._transaction():  # the connection's one write lock, retried on SQLITE_BUSY
            cur = await self.repo.db.execute(sql, params)
        return cur.rowcount > 0
