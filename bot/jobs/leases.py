"""Job leases: which runner process works which job (several may share one database).

A runner works a job only while it holds the job's lease (``claim``); ``heartbeat`` renews them every
``lease_seconds / 3``, and every state write is fenced by the lease (``fence``), so a process that lost
a job (it stalled past its lease and another took over) can no longer move or settle it. A crashed
process's jobs are taken over once their leases expire, at once when the dead process ran on this host
(``dead_local_owner``)."""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Callable, Iterable

from bot.jobs.model import Job, State
from bot.jobs.store import JobStore

log = logging.getLogger(__name__)


def runner_id() -> str:
    """``host:pid:random``: unique per runner, and tells a runner on the same host whether we are alive."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def dead_local_owner(owner: str, me: str) -> bool:
    """Whether ``owner`` was a runner on this host whose process is gone (a crash or a restart within
    its lease): its jobs need not wait for the lease to expire."""
    parts = owner.rsplit(":", 2)
    if owner == me or len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return True  # an earlier process that had our pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, someone else's
    return False


class Leases:
    """The leases one runner holds, and the owners it knows are dead."""

    def __init__(self, store: JobStore, owner: str, lease_seconds: float) -> None:
        self.store = store
        self.owner = owner
        self.lease_seconds = lease_seconds
        self._held: set[int] = set()
        """Jobs whose lease this runner holds and renews; their writes are fenced by it."""
        self._dead_owners: list[str] = []
        """Lease holders known dead (processes of this host that are gone): their leases count as free."""

    def holds(self, job_id: int) -> bool:
        return job_id in self._held

    def drop(self, job_id: int) -> None:
        """Stop renewing ``job_id`` (finished, cancelled, or its task ended): left behind, it expires."""
        self._held.discard(job_id)

    def fence(self, job_id: int) -> str | None:
        """The owner a write of ``job_id`` is fenced by: ours while we hold its lease, else none (a cancel
        of a job no runner here works)."""
        return self.owner if job_id in self._held else None

    async def claim_queued(self, job_ids: Iterable[int]) -> list[Job]:
        """Take these queued jobs (another process may claim some of them first: it then runs them)."""
        claimed = await self.store.claim_jobs(
            self.owner, [State.QUEUED], lease_seconds=self.lease_seconds, job_ids=job_ids, free_owners=self._dead_owners
        )
        self._held.update(job.id for job in claimed)
        return claimed

    async def claim_unworked(self, states: Iterable[State]) -> list[Job]:
        """Take the started jobs nobody works on: those of dead local processes, of expired leases, and
        our own (a job we lease but no task of ours works is resumed now, not when its lease runs out;
        jobs still worked here just have it renewed). The caller holds every one it is handed."""
        self._dead_owners = [o for o in await self.store.lease_owners() if dead_local_owner(o, self.owner)]
        return await self.store.claim_jobs(
            self.owner, states, lease_seconds=self.lease_seconds, free_owners=[*self._dead_owners, self.owner]
        )

    def hold(self, job_id: int) -> None:
        self._held.add(job_id)

    async def heartbeat(self, lost: Callable[[int], None]) -> None:
        """Renew every lease we hold; ``lost(job_id)`` for each one another process took over."""
        held = set(self._held)
        if not held:
            return
        kept = await self.store.renew_leases(self.owner, held, lease_seconds=self.lease_seconds)
        for job_id in held - kept:
            # A job we finished a moment ago is no longer renewable either: look before stopping it.
            current = await self.store.get_job(job_id)
            if job_id not in self._held or current is None or current.state.terminal:
                self._held.discard(job_id)
                continue
            log.warning("job %s: lease lost (another process took it over); stopping work on it here", job_id)
            self._held.discard(job_id)
            lost(job_id)

    async def release_all(self) -> None:
        """Hand every lease back (at stop): another process may resume the jobs at once."""
        await self.store.release_leases(self.owner)
