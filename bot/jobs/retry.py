"""Waiting out trouble that is not the job's fault: a database that does not answer, a full disk.

A job's step that meets such an error waits with a bounded backoff and does the same step again, so the
job carries on where it was within moments of the trouble ending, instead of being failed (and its
video lost) for something the requester did not cause. The loops of bot/jobs/runner.py use the same
backoff between passes.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from bot.errors import DatabaseUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """``first * factor**n`` seconds before the (n+2)-th try, never more than ``cap``: small enough
    that work resumes within ``cap`` seconds of the trouble ending."""

    first: float = 0.2
    factor: float = 2.0
    cap: float = 2.0

    def delay(self, failures: int) -> float:
        """The wait after ``failures`` failed tries in a row (1 or more)."""
        return min(self.first * self.factor ** max(failures - 1, 0), self.cap)


DATABASE_BACKOFF = Backoff()
DISK_BACKOFF = Backoff(first=1.0, cap=30.0)
"""A full disk is freed by an operator, not in milliseconds: try less often, still indefinitely."""

_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in _DISK_FULL


async def until_database_answers(
    step: Callable[[], Awaitable[T]], *, what: str, backoff: Backoff = DATABASE_BACKOFF
) -> T:
    """Run ``step`` until it gets past DatabaseUnavailable; every other error is raised at once.

    Never gives up by itself: a job's task is cancelled if it must stop (a shutdown, a cancel, a lease
    taken over by another process), and a fenced write raises LeaseLost once another process owns the job.
    """
    failures = 0
    since = 0.0
    while True:
        try:
            result = await step()
        except DatabaseUnavailable as exc:
            failures += 1
            if failures == 1:
                since = time.monotonic()
                log.warning("%s: database unavailable (%s); waiting for it", what, exc.detail)
            await asyncio.sleep(backoff.delay(failures))
            continue
        if failures:
            log.info("%s: database answers again after %.1fs", what, time.monotonic() - since)
        return result
