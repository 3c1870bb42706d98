"""Provider callbacks: a secret URL per job, and what to do when something POSTs to it.

Where a provider can call back (its ``capabilities.callbacks``: the relay's ``notify_hook``,
Sora2API's ``callBackUrl``, fal's ``fal_webhook``) and ``PUBLIC_BASE_URL`` is set, the runner asks
:meth:`Callbacks.url_for` before submitting: a random secret is made, its SHA-256 stored with the
job, and ``{PUBLIC_BASE_URL}/callbacks/{secret}`` sent.

A callback is only a hint. Its body is parsed to check it is about this job's task, then the job's
poll loop is woken to ask the provider itself (``status()``): a POST can never finish, fail or
charge a job. Polling stays the fallback, so a lost callback costs only delay.

Refused: an unknown secret (404), a signature the provider's ``verify`` rejects (401, fal), a body
that is not a task callback or names another task (400), a callback for a job that is already over
(410), and a second finished-task callback on the same secret (409, a replay). Everything lives in
the database, so any bot process can answer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from bot.jobs.model import Job
from bot.jobs.store import JobStore
from bot.providers.base import CallbackSupport, JobStatus, VideoProvider

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class CallbackResult:
    """The HTTP answer to a callback, and the job to wake (None: wake nothing)."""

    status: int
    reason: str
    job_id: int | None = None


class Callbacks:
    def __init__(
        self, repo: JobStore, public_base_url: str, providers: Mapping[str, VideoProvider] | None = None
    ) -> None:
        self.repo = repo
        self.public_base_url = public_base_url.rstrip("/")
        self.providers: Mapping[str, VideoProvider] = providers or {}
        """The configured providers by name; those whose capabilities declare callbacks get URLs."""

    def support(self, provider: str) -> CallbackSupport | None:
        found = self.providers.get(provider)
        return found.capabilities.callbacks if found is not None else None

    def enabled_for(self, provider: str) -> bool:
        return bool(self.public_base_url) and self.support(provider) is not None

    async def url_for(self, job: Job) -> str | None:
        """A fresh callback URL for ``job`` (stored before the provider ever sees it), or None."""
        if not self.enabled_for(job.provider):
            return None
        secret = secrets.token_urlsafe(24)
        await self.repo.add_callback_secret(job.id, digest(secret))
        return f"{self.public_base_url}/callbacks/{secret}"

    async def receive(self, secret: str, body: bytes, headers: Mapping[str, str] | None = None) -> CallbackResult:
        """Check one callback POST. Never changes the job: the caller wakes ``result.job_id``."""
        key = digest(secret)
        found = await self.repo.callback_secret(key)
        if found is None:
            return CallbackResult(404, "unknown callback")
        job_id, used_at = found
        job = await self.repo.get_job(job_id)
        if job is None:
            return CallbackResult(404, "unknown callback")
        support = self.support(job.provider)
        if support is not None and support.verify is not None and not await support.verify(headers or {}, body):
            log.warning(
                "job %s: %s callback failed its signature check", job.id, job.provider, extra={"job_id": job.id}
            )
            return CallbackResult(401, "bad signature")
        if job.state.terminal:
            return CallbackResult(410, "job already finished")
        if used_at is not None:
            return CallbackResult(409, "callback already received")
        parsed = _parse(support, body)
        if parsed is None:
            log.warning(
                "job %s: callback body is not a %s task callback", job.id, job.provider, extra={"job_id": job.id}
            )
            return CallbackResult(400, "not a task callback")
        task_id, status = parsed
        # Before the submit answer is stored the task id is unknown: the wake-up is harmless then.
        if job.provider_job_id is not None and support is not None and task_id != support.task_id(job.provider_job_id):
            log.warning("job %s: callback names another task", job.id, extra={"job_id": job.id})
            return CallbackResult(400, "callback is for another task")
        if status.done and not await self.repo.use_callback_secret(key):
            return CallbackResult(409, "callback already received")
        log.info(
            "job %s: provider callback (%s); checking with the provider", job.id, status.state, extra={"job_id": job.id}
        )
        return CallbackResult(202, "accepted", job.id)


def _parse(support: CallbackSupport | None, body: bytes) -> tuple[str, JobStatus] | None:
    if support is None:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return support.parse(data) if isinstance(data, Mapping) else None
