"""Result downloads cannot be steered inside the bot's network (issue 13, item 1).

The fakes run on 127.0.0.1, which is the configured provider origin and therefore trusted; a
*different* loopback origin stands for "somewhere inside" and must never be reached.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from bot.domain import JobState, JobStatus, VideoRequest
from bot.errors import UnsafeResultUrl
from bot.providers.http import MAX_BODY, HttpClient
from bot.providers.relay import RelayProvider
from bot.providers.url_guard import UrlGuard, is_public_address
from tests.fakes.base import FakeServer
from tests.fakes.relay import FakeRelay
from tests.fakes.videos import tiny_mp4

KEY = "sk-relay-SECRET-0123456789"


class Inside(FakeServer):
    """An internal service the bot must never be made to call."""

    def setup_routes(self, app: web.Application) -> None:
        async def anything(request: web.Request) -> web.Response:
            return web.Response(body=b"internal secrets", content_type="video/mp4")

        async def huge_json(request: web.Request) -> web.Response:
            return web.Response(body=json.dumps({"pad": "x" * (3 * MAX_BODY)}), content_type="application/json")

        app.router.add_get("/huge.json", huge_json)
        app.router.add_get("/{tail:.*}", anything)


@pytest.fixture
async def relay() -> AsyncIterator[FakeRelay]:
    async with FakeRelay(api_key=KEY, run_seconds=0.0) as server:
        yield server


@pytest.fixture
async def inside() -> AsyncIterator[Inside]:
    async with Inside() as server:
        yield server


async def finished_task(provider: RelayProvider, relay: FakeRelay) -> tuple[str, JobStatus]:
    task_id = await provider.submit(VideoRequest("a cat", seconds=4))
    relay.finish(task_id)
    status = await provider.status(task_id)
    assert status.state is JobState.SUCCEEDED
    return task_id, status


def relay_provider(session: aiohttp.ClientSession, relay: FakeRelay) -> RelayProvider:
    return RelayProvider(session, api_key=KEY, base_url=relay.base_url, retry_base_delay=0.01)


async def test_redirect_to_another_loopback_server_is_refused_unfetched(
    http_session: aiohttp.ClientSession, relay: FakeRelay, inside: Inside, tmp_path: Path
) -> None:
    relay.result_location = f"{inside.base_url}/admin/dump"
    provider = relay_provider(http_session, relay)
    task_id, status = await finished_task(provider, relay)
    dest = tmp_path / "out.mp4"
    with pytest.raises(UnsafeResultUrl) as info:
        await provider.download(task_id, status, dest, max_bytes=10_000_000)
    assert inside.requests == []  # nothing was fetched from it
    assert not dest.exists()
    assert "refunded" in info.value.user_message
    assert KEY not in info.value.detail


async def test_result_url_on_another_loopback_origin_is_refused_unfetched(
    http_session: aiohttp.ClientSession, relay: FakeRelay, inside: Inside, tmp_path: Path
) -> None:
    provider = relay_provider(http_session, relay)
    task_id, _ = await finished_task(provider, relay)
    status = JobStatus(JobState.SUCCEEDED, result_url=f"{inside.base_url}/video.mp4")
    with pytest.raises(UnsafeResultUrl):
        await provider.download(task_id, status, tmp_path / "out.mp4", max_bytes=10_000_000)
    assert inside.requests == []


async def test_redirect_within_the_provider_origin_is_followed(
    http_session: aiohttp.ClientSession, relay: FakeRelay, tmp_path: Path
) -> None:
    relay.uploads["moved.mp4"] = tiny_mp4()
    relay.result_location = "/uploads/moved.mp4"  # relative, as servers often send
    provider = relay_provider(http_session, relay)
    task_id, status = await finished_task(provider, relay)
    dest = await provider.download(task_id, status, tmp_path / "out.mp4", max_bytes=10_000_000)
    assert dest.read_bytes() == tiny_mp4()


async def test_redirect_loop_stops_after_a_bounded_number_of_hops(
    http_session: aiohttp.ClientSession, relay: FakeRelay, tmp_path: Path
) -> None:
    provider = relay_provider(http_session, relay)
    task_id, status = await finished_task(provider, relay)
    assert status.result_url is not None
    relay.result_location = status.result_url  # redirects to itself, forever
    with pytest.raises(UnsafeResultUrl, match="redirects more than"):
        await provider.download(task_id, status, tmp_path / "out.mp4", max_bytes=10_000_000)
    assert len(relay.requests_to("/files/")) == 6


async def test_json_answers_are_read_to_64_kib_at_most(http_session: aiohttp.ClientSession, inside: Inside) -> None:
    client = HttpClient(http_session, provider="test", max_retries=0, base_url=inside.base_url)
    answer = await client.request("GET", f"{inside.base_url}/huge.json")
    # Cut at 64 KiB, the answer is no longer JSON: it comes back as (truncated) text, never parsed whole.
    assert isinstance(answer.body, str)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # CGNAT
        ("224.0.0.1", False),
        ("0.0.0.0", False),  # noqa: S104 - an address under test, not a bind
        ("::1", False),
        ("fe80::1", False),
        ("fd00::1", False),
        ("::ffff:127.0.0.1", False),
        ("ff02::1", False),
        ("93.184.216.34", True),
        ("2606:4700:4700::1111", True),
        ("not-an-ip", False),
    ],
)
def test_public_addresses(address: str, public: bool) -> None:
    assert is_public_address(address) is public


def stub_resolver(answers: dict[str, list[str]]) -> tuple[list[str], object]:
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return answers[host]

    return calls, resolve


async def test_a_name_is_judged_by_every_address_it_resolves_to() -> None:
    calls, resolve = stub_resolver({"cdn.example": ["93.184.216.34", "10.0.0.5"], "good.example": ["93.184.216.34"]})
    guard = UrlGuard("https://api.example", resolve)  # type: ignore[arg-type]
    with pytest.raises(UnsafeResultUrl, match="non-public"):
        await guard.target("https://cdn.example/v.mp4", "test")
    target = await guard.target("https://good.example:8443/v.mp4?sig=abc", "test")
    # Pinned: the connection goes to the checked address, the name only rides in Host and TLS.
    assert str(target.url) == "https://93.184.216.34:8443/v.mp4?sig=abc"
    assert target.host_header == "good.example:8443"
    assert target.server_hostname == "good.example"
    assert calls == ["cdn.example", "good.example"]


async def test_localhost_by_name_is_refused_after_real_dns() -> None:
    with pytest.raises(UnsafeResultUrl, match="non-public"):
        await UrlGuard("https://api.example").target("https://localhost:9/v.mp4", "test")


@pytest.mark.parametrize(
    "url",
    [
        "http://93.184.216.34/v.mp4",  # plain http off the provider's origin
        "https://127.0.0.1/v.mp4",
        "https://[::1]/v.mp4",
        "https://user:pw@93.184.216.34/v.mp4",
        "file:///etc/passwd",
        "ftp://93.184.216.34/v.mp4",
        "https://api.example:444/v.mp4",  # same host, other port: another origin
    ],
)
async def test_refused_urls(url: str) -> None:
    with pytest.raises(UnsafeResultUrl):
        await UrlGuard("https://api.example").target(url, "test")


async def test_the_provider_origin_is_trusted_whatever_its_address() -> None:
    guard = UrlGuard("http://127.0.0.1:8080/v1")
    target = await guard.target("http://127.0.0.1:8080/files/v.mp4", "test")
    assert target.same_origin
    assert str(target.url) == "http://127.0.0.1:8080/files/v.mp4"
