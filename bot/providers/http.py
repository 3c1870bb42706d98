"""HTTP plumbing shared by the providers: retries, retry hints, status -> typed error, streaming.

Modelled on openai-python's ``_base_client``: bounded retries with jittered exponential backoff on
connection errors, 408/409/429 and 5xx; the server's own delay (``retry-after-ms``, ``Retry-After``
in seconds or as an HTTP date) is honoured but capped; 4xx answers are never retried.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from bot.errors import (
    AuthenticationFailed,
    GenerationFailed,
    ProviderError,
    ProviderOutOfCredits,
    ProviderRequestRejected,
    ProviderUnavailable,
    RateLimited,
    ResultTooLarge,
    UnsafeResultUrl,
    redact,
)
from bot.providers.url_guard import Resolver, UrlGuard, system_resolver

log = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
# Answers proving a job-creating request was NOT taken. A 500 or 504, a timeout or a dropped
# connection may come after the provider created the job, and no provider offers an idempotency
# key: re-sending those could make (and bill) the video twice.
CREATE_RETRY_STATUSES = frozenset({429, 502, 503})
MAX_SERVER_DELAY = 60.0
CHUNK = 64 * 1024
MAX_BODY = 64 * 1024
"""Bodies read into memory (JSON answers, error pages) stop here; only results stream to disk."""
MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

RequestHook = Callable[[str, int | None, str | None], None]
"""``(provider, HTTP status or None when no answer came, error class name or None)``: once per attempt."""


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """The server's requested delay in seconds, from ``retry-after-ms`` or ``Retry-After``."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    parsed = email.utils.parsedate_to_datetime(raw) if _looks_like_date(raw) else None
    if parsed is None:
        return None
    return max(0.0, parsed.timestamp() - (time.time() if now is None else now))


def _looks_like_date(raw: str) -> bool:
    try:
        email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return False
    return True


def parse_poll_after(headers: Mapping[str, str]) -> float | None:
    """``openai-poll-after-ms`` in seconds, when the server sends it."""
    raw = headers.get("openai-poll-after-ms")
    if not raw:
        return None
    try:
        return max(0.0, float(raw) / 1000)
    except ValueError:
        return None


def backoff_delay(attempt: int, *, base: float = 0.5, cap: float = 8.0) -> float:
    """Exponential backoff with jitter (openai-python's shape): attempt 0 -> ~0.5 s, capped."""
    delay = min(base * (2**attempt), cap)
    return delay * (1 - 0.25 * random.random())  # noqa: S311 - jitter, not crypto


def error_for_status(
    status: int,
    message: str,
    *,
    provider: str,
    headers: Mapping[str, str] | None = None,
    out_of_credits: Iterable[int] = (),
) -> ProviderError:
    """The one place an HTTP status becomes a typed error.

    ``out_of_credits`` lists the statuses this provider uses for an empty account
    (Segmind 406, Sora2API 402).
    """
    detail = f"{provider}: HTTP {status}: {message}"
    if status in out_of_credits:
        return ProviderOutOfCredits(detail, status=status)
    if status in (401, 403):
        return AuthenticationFailed(detail, status=status)
    if status == 429:
        return RateLimited(detail, retry_after=parse_retry_after(headers or {}), status=status)
    if status >= 500 or status in (408, 409):
        return ProviderUnavailable(detail, status=status)
    return ProviderRequestRejected(detail, status=status)


def error_message_from_body(body: Any) -> str:
    """Find a human message in the error bodies providers send."""
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            return str(err.get("message") or err.get("code") or err)
        if isinstance(err, str) and err:
            return err
        for key in ("msg", "message", "detail", "fail_reason"):
            if body.get(key):
                return str(body[key])
    if isinstance(body, str):
        return body[:500]
    return json.dumps(body)[:500] if body is not None else ""


@dataclass
class Response:
    status: int
    headers: Mapping[str, str]
    body: Any
    """Parsed JSON when the response is JSON, else the text (truncated)."""


@dataclass
class HttpClient:
    """One provider's view of the shared ``aiohttp.ClientSession``.

    ``secrets`` are scrubbed from every error detail. ``out_of_credits`` as in ``error_for_status``.
    """

    session: aiohttp.ClientSession
    provider: str
    secrets: tuple[str, ...] = ()
    max_retries: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_server_delay: float = MAX_SERVER_DELAY
    request_timeout: float = 60.0
    out_of_credits: tuple[int, ...] = ()
    remap: Callable[[ProviderError], ProviderError] | None = field(default=None, repr=False)
    """A provider's own corrections to the generic status mapping (e.g. Sora2API's 455 = maintenance)."""
    create_retry_statuses: frozenset[int] = CREATE_RETRY_STATUSES
    sleep: Callable[[float], Any] = field(default=asyncio.sleep, repr=False)
    on_request: RequestHook | None = field(default=None, repr=False)
    """Told about every HTTP attempt (metrics); set by bot.providers.registry."""
    base_url: str | None = None
    """The configured API base: result links on its origin are trusted whatever their address
    (local and self-hosted servers); any other must be https to a public address (bot.providers.url_guard)."""
    resolver: Resolver = field(default=system_resolver, repr=False)

    def _report(self, status: int | None, error: ProviderError | None) -> None:
        if self.on_request is not None:
            self.on_request(self.provider, status, type(error).__name__ if error is not None else None)

    def error(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> ProviderError:
        message = redact(error_message_from_body(body), self.secrets)
        error = error_for_status(
            status, message, provider=self.provider, headers=headers, out_of_credits=self.out_of_credits
        )
        if error.retry_after is None and headers is not None:
            # A 503 may say when to come back too, not only a 429.
            error.retry_after = parse_retry_after(headers)
        return self.remap(error) if self.remap is not None else error

    def retry_delay(self, attempt: int, server_delay: float | None) -> float:
        """The server's requested delay (capped) when it gave one, else jittered backoff."""
        if server_delay is not None:
            return min(max(server_delay, 0.0), self.max_server_delay)
        return backoff_delay(attempt, base=self.base_delay, cap=self.max_delay)

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        json_body: Any = None,
        data: Any = None,
        params: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        envelope_status: Callable[[Any], int | None] | None = None,
        retry: bool = True,
        ok_statuses: Iterable[int] = (),
    ) -> Response:
        """Send a request, retrying what may be retried, and return the parsed response.

        Raises a typed ProviderError for any non-2xx answer not listed in ``ok_statuses``.
        ``envelope_status`` extracts a business status from a 2xx JSON body (Sora2API's ``code``),
        which is then treated like an HTTP status. ``data`` may be a callable returning a fresh
        body per attempt (multipart forms cannot be re-sent).
        """
        ok = set(ok_statuses)
        attempts = self.max_retries + 1 if retry else 1
        last_error: ProviderError | None = None
        for attempt in range(attempts):
            try:
                body_data = data() if callable(data) else data
                async with self.session.request(
                    method,
                    url,
                    headers=headers,
                    json=json_body,
                    data=body_data,
                    params=params,
                    timeout=aiohttp.ClientTimeout(total=timeout_s or self.request_timeout),
                ) as resp:
                    body = await read_body(resp)
                    status = resp.status
                    if 200 <= status < 300 and envelope_status is not None:
                        status = envelope_status(body) or status
                    if 200 <= status < 300 or status in ok:
                        self._report(resp.status, None)
                        return Response(resp.status, resp.headers, body)
                    last_error = self.error(status, body, resp.headers)
                    server_delay = parse_retry_after(resp.headers)
                    self._report(resp.status, last_error)
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
                last_error = ProviderUnavailable(
                    redact(f"{self.provider}: {method} {_path(url)}: {type(exc).__name__}: {exc}", self.secrets)
                )
                server_delay = None
                self._report(None, last_error)
            if not last_error.retryable or attempt == attempts - 1:
                break
            delay = self.retry_delay(attempt, server_delay)
            log.info(
                "%s %s %s failed (%s); retry %d/%d in %.1fs",
                self.provider,
                method,
                _path(url),
                last_error.detail,
                attempt + 1,
                attempts - 1,
                delay,
            )
            await self.sleep(delay)
        assert last_error is not None  # noqa: S101 - loop always sets it before breaking
        raise last_error

    async def create(self, method: str, url: str, **kwargs: Any) -> Response:
        """Send a job-creating request, retrying only answers in ``create_retry_statuses``."""
        for attempt in range(self.max_retries + 1):
            try:
                return await self.request(method, url, retry=False, **kwargs)
            except ProviderError as exc:
                # A provider may mark an answer not retryable (fal's X-Fal-Retryable: false).
                if exc.status not in self.create_retry_statuses or not exc.retryable or attempt == self.max_retries:
                    raise
                delay = self.retry_delay(attempt, exc.retry_after)
                log.info(
                    "%s %s %s not taken (%s); retry %d/%d in %.1fs",
                    self.provider,
                    method,
                    _path(url),
                    exc.status,
                    attempt + 1,
                    self.max_retries,
                    delay,
                )
                await self.sleep(delay)
        raise AssertionError("unreachable")

    async def download_result(
        self,
        job_id: str,
        url: str | None,
        refresh: Callable[[], Awaitable[str | None]],
        dest: Path,
        max_bytes: int,
    ) -> Path:
        """Fetch a job's public result link (asking the provider for it when ``url`` is unknown).

        Result links point at public CDN hosts: no Authorization header is sent, so the API key
        never leaves for a third-party host."""
        url = url or await refresh()
        if not url:
            raise GenerationFailed(f"{self.provider}: job {job_id} has no result URL")
        return await self.download(url, dest, max_bytes=max_bytes)

    async def download(
        self,
        url: str,
        dest: Path,
        *,
        max_bytes: int,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 600.0,
    ) -> Path:
        """Stream ``url`` to ``dest`` in chunks, refusing more than ``max_bytes``.

        A body shorter than its Content-Length (a dropped connection) is an error, retried like
        any connection error; a partial file is never left behind.
        """
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            try:
                return await self._download_once(url, dest, max_bytes=max_bytes, headers=headers, timeout_s=timeout_s)
            except ProviderError as exc:
                dest.unlink(missing_ok=True)  # noqa: ASYNC240 - a local unlink, microseconds
                if not exc.retryable or attempt == attempts - 1:
                    raise
                delay = self.retry_delay(attempt, exc.retry_after)
                log.info("%s download failed (%s); retry in %.1fs", self.provider, exc.detail, delay)
                await self.sleep(delay)
        raise AssertionError("unreachable")

    async def _download_once(
        self, url: str, dest: Path, *, max_bytes: int, headers: Mapping[str, str] | None, timeout_s: float
    ) -> Path:
        """One download, following redirects by hand so that every hop passes the URL guard; the
        caller's headers (an API key) go to the provider's own origin only."""
        guard = UrlGuard(self.base_url, self.resolver)
        current = URL(url)
        try:
            for _hop in range(MAX_REDIRECTS + 1):
                target = await guard.target(current, self.provider)
                hop_headers = dict(headers or {}) if target.same_origin else {}
                if target.host_header is not None:
                    hop_headers["Host"] = target.host_header
                async with self.session.get(
                    target.url,
                    headers=hop_headers,
                    allow_redirects=False,
                    server_hostname=target.server_hostname,
                    timeout=aiohttp.ClientTimeout(total=timeout_s, sock_read=60),
                ) as resp:
                    if resp.status in REDIRECT_STATUSES:
                        location = resp.headers.get("Location")
                        if not location:
                            raise ProviderUnavailable(f"{self.provider}: redirect {resp.status} without a Location")
                        current = current.join(URL(location))
                        continue
                    if resp.status >= 300:
                        error = self.error(resp.status, await read_body(resp), resp.headers)
                        self._report(resp.status, error)
                        raise error
                    try:
                        await stream_to_file(resp, dest, max_bytes=max_bytes, provider=self.provider)
                    except ProviderError as exc:
                        self._report(resp.status, exc)
                        raise
                    self._report(resp.status, None)
                    return dest
            raise UnsafeResultUrl(f"{self.provider}: result link redirects more than {MAX_REDIRECTS} times")
        except UnsafeResultUrl as exc:
            log.warning("%s: refused a result link: %s", self.provider, redact(exc.detail, self.secrets))
            self._report(None, exc)
            raise
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
            error = ProviderUnavailable(
                redact(f"{self.provider}: download {_path(url)}: {type(exc).__name__}: {exc}", self.secrets)
            )
            self._report(None, error)
            raise error from exc
        except ValueError as exc:  # yarl: a Location that is not a URL
            raise UnsafeResultUrl(f"{self.provider}: unparsable redirect: {exc}") from exc


async def stream_to_file(resp: aiohttp.ClientResponse, dest: Path, *, max_bytes: int, provider: str) -> int:
    """Write a response body to ``dest`` chunk by chunk; enforce the cap and the declared length."""
    declared = resp.content_length
    if declared is not None and declared > max_bytes:
        raise ResultTooLarge(f"{provider}: result is {declared} bytes, cap {max_bytes}")
    written = 0
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    try:
        with tmp.open("wb") as out:
            async for chunk in resp.content.iter_chunked(CHUNK):
                written += len(chunk)
                if written > max_bytes:
                    raise ResultTooLarge(f"{provider}: result exceeds cap of {max_bytes} bytes")
                out.write(chunk)
        if declared is not None and written != declared:
            raise ProviderUnavailable(f"{provider}: download truncated at {written} of {declared} bytes")
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
    return written


async def read_body(resp: aiohttp.ClientResponse) -> Any:
    """The answer parsed as JSON when it is JSON, else its text; at most MAX_BODY bytes are read (a
    longer answer is cut, which makes an over-long JSON body plain text)."""
    raw = bytearray()
    async for chunk in resp.content.iter_chunked(CHUNK):
        raw += chunk
        if len(raw) > MAX_BODY:
            del raw[MAX_BODY:]
            break
    try:
        encoding = resp.get_encoding()
    except (RuntimeError, LookupError):
        encoding = "utf-8"
    try:
        text = bytes(raw).decode(encoding, errors="replace")
    except LookupError:
        text = bytes(raw).decode("utf-8", errors="replace")
    if "json" in (resp.content_type or "") or text[:1] in ("{", "["):
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text[:2000]


def _path(url: str) -> str:
    """The URL without its query string (which may hold tokens) for log lines."""
    return url.split("?", 1)[0]
