"""Request recording, fault injection and Discord-shaped errors: the fake's aiohttp middleware.

A mixin of FakeDiscord (kept apart to keep files short); see server.py for the public API.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter, deque
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .rest import PARSED, ApiError, jres, parse_body, summarize
from .state import Fault, RequestRecord

log = logging.getLogger(__name__)


class Recorder:
    if TYPE_CHECKING:
        requests: list[RequestRecord]
        faults: deque[Fault]
        edits_in_flight: Counter[str]
        max_edits_in_flight: Counter[str]

        def notify(self) -> None: ...

    def inject(self, status: int, body: Any = None, *, times: int = 1, **kwargs: Any) -> None:
        """Serve ``status``/``body`` for the next ``times`` requests matching path_contains/method."""
        for _ in range(times):
            self.faults.append(Fault(status, body, **kwargs))

    def requests_to(self, path_contains: str, method: str | None = None) -> list[RequestRecord]:
        return [r for r in self.requests if path_contains in r.path and (method is None or r.method == method)]

    @property
    def count_429(self) -> int:
        return sum(1 for r in self.requests if r.status == 429)

    def _take_fault(self, request: web.Request) -> Fault | None:
        for fault in self.faults:
            if fault.path_contains in request.path and fault.method in (None, request.method):
                self.faults.remove(fault)
                return fault
        return None

    async def _fault_response(self, request: web.Request, fault: Fault) -> web.Response:
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.drop_connection:
            assert request.transport is not None
            request.transport.close()
            raise ConnectionResetError
        headers = dict(fault.headers)
        body = fault.body
        if fault.status == 429:
            if body is None:
                body = {"message": "You are being rate limited.", "retry_after": 0.05, "global": False}
            if isinstance(body, dict):
                retry = float(body.get("retry_after", 0.05))
                headers.setdefault("Retry-After", str(math.ceil(retry)))
                headers.setdefault("X-RateLimit-Scope", "user")
            headers.setdefault("Via", "1.1 google")
        if isinstance(body, (dict, list)):
            return jres(body, fault.status, headers)
        return web.Response(status=fault.status, text=body or "", headers=headers)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path == "/gateway":
            return await handler(request)
        record = RequestRecord(request.method, request.path, dict(request.query))
        self.requests.append(record)
        try:
            try:
                parsed = await parse_body(request)
            except (ValueError, UnicodeDecodeError):
                raise ApiError(400, "The request body contains invalid JSON.", 50109) from None
            request[PARSED] = parsed
            record.json, record.files = parsed[0], summarize(parsed[1])
            fault = self._take_fault(request)
            # PATCHes to one message that overlap in time: the bot promises there are never any.
            edit_key = request.path if request.method == "PATCH" and "/messages/" in request.path else None
            if edit_key is not None:
                self.edits_in_flight[edit_key] += 1
                self.max_edits_in_flight[edit_key] = max(
                    self.max_edits_in_flight[edit_key], self.edits_in_flight[edit_key]
                )
            try:
                response = await (self._fault_response(request, fault) if fault else handler(request))
            finally:
                if edit_key is not None:
                    self.edits_in_flight[edit_key] -= 1
        except ApiError as err:
            response = jres(err.body, err.status, err.headers)
        except web.HTTPNotFound:
            log.warning("fake discord: no route for %s %s", request.method, request.path)
            response = jres({"message": "404: Not Found", "code": 0}, 404)
        except web.HTTPMethodNotAllowed:
            log.warning("fake discord: method not allowed: %s %s", request.method, request.path)
            response = jres({"message": "405: Method Not Allowed", "code": 0}, 405)
        record.status = response.status
        self.notify()
        return response
