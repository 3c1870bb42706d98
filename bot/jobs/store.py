"""What the jobs layer needs from storage. Both backends (bot/storage/) implement these Protocols; the
rest of the bot is typed against them, never against a concrete repository class (as with Notifier).

Every method may raise bot.errors.DatabaseUnavailable when the database is not answering.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from bot.credits.ledger import Balance, CreditPolicy, SpendingCaps
from bot.jobs.model import Job, State
from bot.moderation.policy import GuildSettings, MatchMode

Admission = Callable[[int, float | None], None]
"""``admission(unfinished_jobs, last_job_at)``: the server's per-user limits; raises to refuse."""


class JobStore(Protocol):
    """Jobs, their leases across bot processes, and the provider-callback secrets."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise unless the database answers (and, for a file, is still there)."""
        ...

    async def create_job(
        self,
        *,
        provider: str,
        user_id: str,
        prompt: str,
        seconds: int,
        size: str,
        model: str,
        guild_id: str | None = None,
        channel_id: str | None = None,
        cost: int = 0,
        policy: CreditPolicy | None = None,
        allowance: int | None = None,
        extra: dict[str, Any] | None = None,
        now: float | None = None,
        admission: Admission | None = None,
        caps: SpendingCaps | None = None,
    ) -> Job:
        """Store a queued job and reserve its credits atomically with the balance, admission and cap checks."""
        ...

    async def get_job(self, job_id: int) -> Job | None: ...

    async def save_job(self, job: Job, *, owner: str | None = None) -> None:
        """Write every stored field; with ``owner`` fenced by its lease (LeaseLost otherwise)."""
        ...

    async def finish_job(self, job: Job, settle: str, *, owner: str | None = None) -> bool:
        """Store a terminal job and capture or refund its credits in one transaction."""
        ...

    async def cancel_job(
        self, job: Job, *, from_states: Iterable[State], owner: str, now: float | None = None
    ) -> bool: ...

    async def update_job(self, job_id: int, **fields: Any) -> None: ...

    async def claim_jobs(
        self,
        owner: str,
        states: Iterable[State],
        *,
        lease_seconds: float,
        limit: int | None = None,
        job_ids: Iterable[int] | None = None,
        free_owners: Iterable[str] = (),
        now: float | None = None,
    ) -> list[Job]: ...

    async def renew_leases(
        self, owner: str, job_ids: Iterable[int], *, lease_seconds: float, now: float | None = None
    ) -> set[int]: ...

    async def release_leases(self, owner: str, job_ids: Iterable[int] | None = None) -> int: ...

    async def lease_owners(self) -> list[str]: ...

    async def jobs_in(self, states: Iterable[State]) -> list[Job]: ...

    async def unfinished_jobs(self) -> list[Job]: ...

    async def active_jobs(self) -> list[Job]: ...

    async def recent_jobs(self, user_id: str, *, limit: int = 10, offset: int = 0) -> list[Job]: ...

    async def count_jobs(self, user_id: str) -> int: ...

    async def guild_jobs(self, guild_id: str, *, limit: int = 10, offset: int = 0) -> list[Job]: ...

    async def count_guild_jobs(self, guild_id: str) -> int: ...

    async def mark_result_deleted(self, job_id: int, *, now: float | None = None) -> bool: ...

    async def recent_durations(self, provider: str, model: str, *, limit: int = 50) -> list[float]: ...

    async def user_activity(self, guild_id: str, user_id: str) -> tuple[int, float | None]: ...

    async def add_callback_secret(self, job_id: int, digest: str, *, now: float | None = None) -> None: ...

    async def callback_secret(self, digest: str) -> tuple[int, float | None] | None: ...

    async def use_callback_secret(self, digest: str, *, now: float | None = None) -> bool: ...


class Ledger(Protocol):
    """The credit ledger: balances, settlements and admin grants."""

    async def balance(self, guild_id: str, user_id: str, allowance: int, now: float | None = None) -> Balance: ...

    async def spent_on_day(self, guild_id: str | None, now: float) -> int: ...

    async def settle(self, job_id: int, kind: str, *, now: float | None = None) -> bool: ...

    async def grant(
        self, guild_id: str, user_id: str, amount: int, *, actor_id: str, note: str = "", now: float | None = None
    ) -> None: ...

    async def set_extra(
        self, guild_id: str, user_id: str, amount: int, *, actor_id: str, note: str = "", now: float | None = None
    ) -> int: ...

    async def reset_day(
        self, guild_id: str, user_id: str, *, actor_id: str, note: str = "", now: float | None = None
    ) -> int: ...

    async def ledger_entries(self, guild_id: str, user_id: str, *, limit: int = 10) -> list[dict[str, Any]]: ...

    async def settlements(self, job_id: int) -> dict[str, int]: ...


class Store(JobStore, Ledger, Protocol):
    """One database holds both: a job's reserve and its settlement share a transaction."""


class GuildSettingsStore(Protocol):
    """Per-server settings changed with ``/sora-admin``."""

    async def get(self, guild_id: str) -> GuildSettings: ...

    async def update(self, guild_id: str, *, actor_id: str, now: float | None = None, **fields: Any) -> None: ...

    async def add_channel(self, guild_id: str, channel_id: str, *, actor_id: str) -> bool: ...

    async def remove_channel(self, guild_id: str, channel_id: str) -> bool: ...

    async def add_blocked_term(self, guild_id: str, term: str, mode: MatchMode, *, actor_id: str) -> bool: ...

    async def remove_blocked_term(self, guild_id: str, term: str) -> bool: ...
