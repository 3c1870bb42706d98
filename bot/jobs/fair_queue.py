"""The order queued jobs get a running slot in: servers take turns, so one server's backlog cannot
hold every slot while another server's members wait. Pure: no I/O."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from bot.jobs.model import Job


def fair_order(queued: Iterable[Job], running: Mapping[str, int]) -> list[Job]:
    """``queued`` ordered so each server's n-th waiting job comes after every server's jobs that
    would leave it with fewer running: rank = the server's running jobs + the job's place in its
    server's queue; ties go to the older job. ``running``: running jobs per guild id ("" = none)."""
    seen: Counter[str] = Counter()
    ranked: list[tuple[int, int, Job]] = []
    for job in sorted(queued, key=lambda j: j.id):
        guild = job.guild_id or ""
        ranked.append((running.get(guild, 0) + seen[guild], job.id, job))
        seen[guild] += 1
    ranked.sort(key=lambda r: (r[0], r[1]))
    return [job for _, _, job in ranked]
