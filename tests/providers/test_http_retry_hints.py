"""The server's retry hints are honoured on every kind of provider request, read off a sleep recorder.

Status polls, cancels, result downloads and job-creating submits each go through their own retry
loop in bot/providers/http.py; before these tests only submits were checked.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from bot.providers.http import HttpClient
from tests.fakes.base import FakeServer

VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(4000)


class FakeApi(FakeServer):
    """One route per request kind; faults come from ``inject``."""

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_get("/jobs/1", self.status)
        app.router.add_delete("/jobs/1", self.cancel)
        app.router.add_get("/files/1.mp4", self.file)
        app.router.add_post("/jobs", self.create)

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "running"})

    async def cancel(self, request: web.Request) -> web.Response:
        return web.json_response({"cancelled": True})

    async def file(self, request: web.Request) -> web.Response:
        return web.Response(body=VIDEO, content_type="video/mp4")

    async def create(self, request: web.Request) -> web.Response:
        return web.json_response({"id": "job-1"})


class SleepRecorder:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
async def api() -> AsyncIterator[FakeApi]:
    async with FakeApi() as server:
        yield server


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def client(http_session: aiohttp.ClientSession, sleeps: SleepRecorder, api: FakeApi) -> HttpClient:
    # A huge base delay: a recorded delay that is not the server's hint cannot pass for it.
    return HttpClient(
        http_session,
        "fake",
        max_retries=2,
        base_delay=1000.0,
        max_delay=1000.0,
        max_server_delay=60.0,
        sleep=sleeps,
        base_url=api.base_url,
    )


Kind = Callable[[HttpClient, FakeApi, Path], Awaitable[object]]


async def poll(client: HttpClient, api: FakeApi, tmp: Path) -> object:
    return (await client.request("GET", f"{api.base_url}/jobs/1")).body


async def cancel(client: HttpClient, api: FakeApi, tmp: Path) -> object:
    return (await client.request("DELETE", f"{api.base_url}/jobs/1")).body


async def download(client: HttpClient, api: FakeApi, tmp: Path) -> object:
    return (await client.download(f"{api.base_url}/files/1.mp4", tmp / "out.mp4", max_bytes=10**6)).read_bytes()


async def submit(client: HttpClient, api: FakeApi, tmp: Path) -> object:
    return (await client.create("POST", f"{api.base_url}/jobs", json_body={"prompt": "x"})).body


KINDS: dict[str, tuple[Kind, str, str, object]] = {
    "status poll": (poll, "/jobs/1", "GET", {"status": "running"}),
    "cancel": (cancel, "/jobs/1", "DELETE", {"cancelled": True}),
    "download": (download, "/files/1.mp4", "GET", VIDEO),
    "submit": (submit, "/jobs", "POST", {"id": "job-1"}),
}


def http_date(seconds_ahead: float) -> str:
    return email.utils.formatdate(time.time() + seconds_ahead, usegmt=True)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"Retry-After": "2.5"}, 2.5),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "250", "Retry-After": "9"}, 0.25),  # the precise one wins
        ({"Retry-After": "86400"}, 60.0),  # capped at max_server_delay
        ({"retry-after-ms": "900000"}, 60.0),
    ],
    ids=["seconds", "fractional", "ms", "ms-wins", "capped", "ms-capped"],
)
async def test_server_delay_is_honoured_and_capped(
    kind: str,
    status: int,
    headers: dict[str, str],
    expected: float,
    api: FakeApi,
    client: HttpClient,
    sleeps: SleepRecorder,
    tmp_path: Path,
) -> None:
    call, path, method, answer = KINDS[kind]
    api.inject(status, {"error": {"message": "busy"}}, headers=headers, path_contains=path, method=method)

    assert await call(client, api, tmp_path) == answer

    assert sleeps.delays == [pytest.approx(expected)]
    assert len(api.requests_to(path, method)) == 2


@pytest.mark.parametrize("kind", list(KINDS))
async def test_retry_after_as_an_http_date(
    kind: str, api: FakeApi, client: HttpClient, sleeps: SleepRecorder, tmp_path: Path
) -> None:
    call, path, method, answer = KINDS[kind]
    api.inject(503, "down for maintenance", headers={"Retry-After": http_date(30)}, path_contains=path, method=method)

    assert await call(client, api, tmp_path) == answer

    (delay,) = sleeps.delays
    assert 27.0 <= delay <= 30.0  # the date has whole seconds; the request took a moment


@pytest.mark.parametrize("kind", list(KINDS))
async def test_a_date_in_the_past_means_at_once_and_a_bad_hint_means_backoff(
    kind: str, api: FakeApi, client: HttpClient, sleeps: SleepRecorder, tmp_path: Path
) -> None:
    call, path, method, answer = KINDS[kind]
    api.inject(429, None, headers={"Retry-After": http_date(-120)}, path_contains=path, method=method)
    api.inject(429, None, headers={"Retry-After": "soon"}, path_contains=path, method=method)

    assert await call(client, api, tmp_path) == answer

    past, garbage = sleeps.delays
    assert past == 0.0
    assert 750.0 <= garbage <= 1000.0  # no usable hint: the (huge) jittered backoff


@pytest.mark.parametrize("kind", list(KINDS))
async def test_each_retry_takes_its_own_answers_hint(
    kind: str, api: FakeApi, client: HttpClient, sleeps: SleepRecorder, tmp_path: Path
) -> None:
    call, path, method, answer = KINDS[kind]
    api.inject(503, None, headers={"Retry-After": "3"}, path_contains=path, method=method)
    api.inject(429, None, headers={"retry-after-ms": "40"}, path_contains=path, method=method)

    assert await call(client, api, tmp_path) == answer

    assert sleeps.delays == [pytest.approx(3.0), pytest.approx(0.04)]
