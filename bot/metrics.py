"""Prometheus metrics of one bot process, in its own registry (served at ``/metrics``).

Every figure is per process: with several processes, Prometheus scrapes each and sums. The job
runner reports through the :class:`bot.jobs.runner.JobEvents` methods below, the providers' HTTP
client through :meth:`Metrics.provider_request`, and discord.py's rate-limit log lines through
:class:`DiscordRateLimitCounter` (discord.py has no rate-limit event; its "We are being rate
limited" warning is logged once per 429 it receives, on REST and webhook routes alike).
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from bot.jobs.model import Job

# The classic text format: what generate_latest writes for our plain names, and what every Prometheus reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Minutes-long jobs: from a fast failure to past the default 30-minute timeout.
DURATION_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 180.0, 300.0, 450.0, 600.0, 900.0, 1200.0, 1800.0, 3600.0)
POLL_BUCKETS = (1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0, 55.0, 89.0, 144.0)
# discord.py's own warning texts (http.py, webhook/async_.py; unformatted, so stable) -> route kind.
_RATE_LIMIT_MESSAGES = {
    "We are being rate limited.": "rest",
    "Webhook ID %s is rate limited.": "webhook",
}


class Metrics:
    """The collectors, registered in a private registry (two bots in one test process never clash)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.job_transitions = Counter(
            "sora_job_transitions", "Jobs entering a state (submitting onwards)", ["provider", "state"], registry=r
        )
        self.jobs_active = Gauge(
            "sora_jobs_active", "Jobs this process is working, by state", ["provider", "state"], registry=r
        )
        self.job_duration = Histogram(
            "sora_job_duration_seconds",
            "Request to terminal state, by outcome",
            ["provider", "outcome"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.job_polls = Histogram(
            "sora_job_polls", "Status requests per job (this process)", ["provider"], buckets=POLL_BUCKETS, registry=r
        )
        self.provider_requests = Counter(
            "sora_provider_requests",
            "HTTP attempts to a provider, by status class (2xx..5xx, or 'none' without an answer)",
            ["provider", "code"],
            registry=r,
        )
        self.provider_errors = Counter(
            "sora_provider_errors", "Failed provider HTTP attempts, by error class", ["provider", "error"], registry=r
        )
        self.discord_rate_limits = Counter(
            "sora_discord_rate_limits", "429 answers from Discord (waited out by discord.py)", ["route"], registry=r
        )
        self.credits_spent = Counter(
            "sora_credits_spent", "Credits captured on successful jobs", ["provider"], registry=r
        )
        self.credits_refunded = Counter(
            "sora_credits_refunded", "Credits refunded on failed or cancelled jobs", ["provider"], registry=r
        )
        self.callbacks = Counter(
            "sora_provider_callbacks", "Provider callbacks received, by HTTP answer", ["code"], registry=r
        )
        # job id -> (provider, state) this process last counted in jobs_active: decrements only ever
        # undo an increment, so the gauge cannot go negative whatever order events come in.
        self._active: dict[int, tuple[str, str]] = {}

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # --- bot.jobs.runner.JobEvents ---------------------------------------------------------------

    def job_taken(self, job: Job) -> None:
        """This process started working ``job`` (new from the queue, or resumed after a restart)."""
        self._set_active(job)

    def job_moved(self, job: Job) -> None:
        """``job`` entered ``job.state`` (already stored)."""
        self.job_transitions.labels(job.provider, job.state.value).inc()
        self._set_active(job)
        if job.state.terminal and job.finished_at is not None:
            self.job_duration.labels(job.provider, job.state.value).observe(max(job.finished_at - job.created_at, 0.0))

    def job_settled(self, job: Job, kind: str) -> None:
        """``job``'s credits were captured or refunded (called once per job, when it happened)."""
        if job.cost > 0:
            counter = self.credits_spent if kind == "capture" else self.credits_refunded
            counter.labels(job.provider).inc(job.cost)

    def job_polled(self, job: Job, polls: int) -> None:
        self.job_polls.labels(job.provider).observe(polls)

    def _set_active(self, job: Job) -> None:
        previous = self._active.pop(job.id, None)
        if previous is not None:
            self.jobs_active.labels(*previous).dec()
        if job.state.active:
            self._active[job.id] = (job.provider, job.state.value)
            self.jobs_active.labels(job.provider, job.state.value).inc()

    # --- bot.providers.http.HttpClient.on_request --------------------------------------------------

    def provider_request(self, provider: str, status: int | None, error: str | None) -> None:
        """One HTTP attempt: ``status`` as answered (None when no answer came), ``error`` its error class."""
        self.provider_requests.labels(provider, f"{status // 100}xx" if status else "none").inc()
        if error is not None:
            self.provider_errors.labels(provider, error).inc()


class DiscordRateLimitCounter(logging.Handler):
    """Counts discord.py's one-per-429 warnings. Attach to the ``discord`` logger.

    Needs ``LOG_LEVEL`` at WARNING or below (the level also gates what reaches handlers).
    """

    def __init__(self, metrics: Metrics) -> None:
        super().__init__(logging.WARNING)
        self.metrics = metrics

    def emit(self, record: logging.LogRecord) -> None:
        message = record.msg if isinstance(record.msg, str) else ""
        for prefix, route in _RATE_LIMIT_MESSAGES.items():
            if message.startswith(prefix):
                self.metrics.discord_rate_limits.labels(route).inc()
                return
