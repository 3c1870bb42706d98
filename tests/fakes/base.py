"""Shared machinery of the fake servers: start on a loopback port, record requests, inject faults."""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Fault:
    """One canned answer served instead of the real handler."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    path_contains: str = ""
    method: str | None = None
    drop_connection: bool = False


class FakeServer:
    """Subclasses add routes in ``setup_routes``; tests read ``requests`` and call ``inject``."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.faults: deque[Fault] = deque()
        self.app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        self.setup_routes(self.app)
        self._runner: web.AppRunner | None = None
        self.port = 0

    def setup_routes(self, app: web.Application) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> str:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def inject(self, status: int, body: Any = None, *, times: int = 1, **kwargs: Any) -> None:
        """Serve ``status``/``body`` for the next ``times`` matching requests."""
        for _ in range(times):
            self.faults.append(Fault(status, body, **kwargs))

    def requests_to(self, path_contains: str, method: str | None = None) -> list[RecordedRequest]:
        return [r for r in self.requests if path_contains in r.path and (method is None or r.method == method)]

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            RecordedRequest(request.method, request.path, dict(request.query), dict(request.headers), body)
        )
        for fault in list(self.faults):
            if fault.path_contains in request.path and fault.method in (None, request.method):
                self.faults.remove(fault)
                if fault.drop_connection:
                    assert request.transport is not None
                    request.transport.close()
                    raise ConnectionResetError
                if isinstance(fault.body, (dict, list)):
                    return web.json_response(fault.body, status=fault.status, headers=fault.headers)
                return web.Response(status=fault.status, text=fault.body or "", headers=fault.headers)
        return await handler(request)
