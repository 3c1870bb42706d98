"""The bot's optional HTTP port (``HTTP_PORT``): ``/healthz``, ``/metrics`` and provider callbacks.

* ``GET /healthz`` runs every check (each bounded by ``check_timeout``) and answers 200 with
  ``{"gateway": true, "database": true}`` when all pass, else 503 with the same object.
* ``GET /metrics`` is the process's Prometheus registry (bot/metrics.py); with ``metrics_token``
  (``METRICS_TOKEN``) only for ``Authorization: Bearer <token>``, else 401.
* ``POST /callbacks/{secret}`` hands the body to bot/callbacks.py and wakes the job it names.

No access log: the callback path carries a secret.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from bot.callbacks import MAX_BODY_BYTES, Callbacks
from bot.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger(__name__)

HealthCheck = Callable[[], Awaitable[bool]]


class WebServer:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        metrics: Metrics,
        checks: Mapping[str, HealthCheck],
        callbacks: Callbacks | None = None,
        wake: Callable[[int], None] | None = None,
        check_timeout: float = 3.0,
        metrics_token: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.metrics = metrics
        self.checks = dict(checks)
        self.callbacks = callbacks
        self.wake = wake
        self.check_timeout = check_timeout
        self._metrics_auth = f"Bearer {metrics_token}".encode() if metrics_token else None
        self.app = web.Application(client_max_size=MAX_BODY_BYTES)
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/metrics", self._metrics)
        self.app.router.add_post("/callbacks/{secret}", self._callback)
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:  # an ephemeral port (tests): report the real one
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        log.info("HTTP server on %s:%s (/healthz, /metrics, /callbacks)", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def health(self) -> dict[str, bool]:
        names = list(self.checks)
        results = await asyncio.gather(*(self._check(name) for name in names))
        return dict(zip(names, results, strict=True))

    async def _check(self, name: str) -> bool:
        try:
            return bool(await asyncio.wait_for(self.checks[name](), self.check_timeout))
        except Exception as exc:
            log.warning("health check %s failed: %s: %s", name, type(exc).__name__, exc)
            return False

    async def _healthz(self, request: web.Request) -> web.Response:
        result = await self.health()
        return web.json_response(result, status=200 if all(result.values()) else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        if self._metrics_auth is not None:
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, self._metrics_auth):  # constant time: no guessing by timing
                return web.Response(status=401, text="unauthorized", headers={"WWW-Authenticate": "Bearer"})
        response = web.Response(body=self.metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    async def _callback(self, request: web.Request) -> web.Response:
        if self.callbacks is None:
            return self._answer(404, "callbacks are not enabled")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._answer(413, "body too large")
        result = await self.callbacks.receive(request.match_info["secret"], body, request.headers)
        if result.job_id is not None and self.wake is not None:
            self.wake(result.job_id)
        return self._answer(result.status, result.reason)

    def _answer(self, status: int, reason: str) -> web.Response:
        self.metrics.callbacks.labels(str(status)).inc()
        return web.json_response({"status": reason}, status=status)
