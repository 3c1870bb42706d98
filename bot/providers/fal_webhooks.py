"""fal's signed webhooks: Ed25519 over ``request_id\\nuser_id\\ntimestamp\\nhex(sha256(body))``.

Wire facts: /work/shared/PROVIDERS-LIVE.md §2. The public keys are the OKP/Ed25519 entries of a JWKS
document (``FAL_JWKS_URL``), cached for up to a day. A signature no cached key accepts makes one
fresh fetch (fal may have rotated its key), at most once per ``refetch_interval`` so forged POSTs
cannot make us hammer the JWKS host. Every failure is a plain False: the caller answers 401.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bot.config import Settings

log = logging.getLogger(__name__)

DEFAULT_JWKS_URL = Settings.fal_jwks_url  # FAL_JWKS_URL's declared default
TOLERANCE_SECONDS = 300.0
JWKS_MAX_AGE = 24 * 3600.0
REFETCH_INTERVAL = 60.0
_MAX_JWKS_BYTES = 64 * 1024

REQUEST_ID = "x-fal-webhook-request-id"
USER_ID = "x-fal-webhook-user-id"
TIMESTAMP = "x-fal-webhook-timestamp"
SIGNATURE = "x-fal-webhook-signature"


def signed_message(request_id: str, user_id: str, timestamp: str, body: bytes) -> bytes:
    """The bytes fal signs for one webhook."""
    return f"{request_id}\n{user_id}\n{timestamp}\n{hashlib.sha256(body).hexdigest()}".encode()


def keys_from_jwks(document: Any) -> list[Ed25519PublicKey]:
    """Every usable OKP/Ed25519 key (``x``, base64url) in a JWKS document; anything else is skipped."""
    found: list[Ed25519PublicKey] = []
    entries = document.get("keys") if isinstance(document, Mapping) else None
    for entry in entries if isinstance(entries, list) else ():
        if not isinstance(entry, Mapping) or entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519":
            continue
        x = entry.get("x")
        if not isinstance(x, str):
            continue
        try:
            raw = base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
            found.append(Ed25519PublicKey.from_public_bytes(raw))
        except (ValueError, binascii.Error):
            continue
    return found


class FalWebhookVerifier:
    """Checks fal webhook signatures against the keys at ``jwks_url`` (fetched with the shared session)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        jwks_url: str = DEFAULT_JWKS_URL,
        *,
        max_age: float = JWKS_MAX_AGE,
        refetch_interval: float = REFETCH_INTERVAL,
        tolerance: float = TOLERANCE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._session = session
        self.jwks_url = jwks_url
        self.max_age = max_age
        self.refetch_interval = refetch_interval
        self.tolerance = tolerance
        self.clock = clock
        self._keys: list[Ed25519PublicKey] = []
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0
        """How many times the JWKS was fetched (tests and logs)."""

    async def verify(self, headers: Mapping[str, str], body: bytes) -> bool:
        """True when a fal key signed this request, the timestamp is fresh and the headers name the
        request the body is about."""
        lowered = {k.lower(): v for k, v in headers.items()}
        request_id, user_id = lowered.get(REQUEST_ID, ""), lowered.get(USER_ID, "")
        timestamp, signature_hex = lowered.get(TIMESTAMP, ""), lowered.get(SIGNATURE, "")
        if not (request_id and user_id and timestamp and signature_hex):
            log.info("fal webhook without its signature headers")
            return False
        try:
            sent_at = int(timestamp)
            signature = bytes.fromhex(signature_hex)
        except ValueError:
            log.info("fal webhook with a malformed timestamp or signature")
            return False
        # Checked before any key work: a replayed or stale POST costs no JWKS fetch.
        if abs(self.clock() - sent_at) > self.tolerance:
            log.info("fal webhook timestamp is %.0f s off; refused", self.clock() - sent_at)
            return False
        if _body_request_id(body) != request_id:
            log.info("fal webhook headers name another request than its body")
            return False
        message = signed_message(request_id, user_id, timestamp, body)
        if _any_verifies(await self._current_keys(), signature, message):
            return True
        # Perhaps fal rotated its key since we fetched: look once more, rate-limited.
        fresh = await self._refetch()
        return fresh is not None and _any_verifies(fresh, signature, message)

    async def _current_keys(self) -> list[Ed25519PublicKey]:
        async with self._lock:
            if self._fetched_at is None or self.clock() - self._fetched_at > self.max_age:
                await self._fetch()
            return self._keys

    async def _refetch(self) -> list[Ed25519PublicKey] | None:
        """Fresh keys, or None when the last fetch was too recent to fetch again."""
        async with self._lock:
            if self._fetched_at is not None and self.clock() - self._fetched_at < self.refetch_interval:
                return None
            await self._fetch()
            return self._keys

    async def _fetch(self) -> None:
        """Replace the cached keys. A failed fetch keeps the old ones (and counts as a fetch, so a
        broken JWKS host is not asked again before ``refetch_interval``)."""
        self.fetches += 1
        self._fetched_at = self.clock()
        try:
            async with self._session.get(self.jwks_url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
                raw = await resp.content.read(_MAX_JWKS_BYTES + 1)
                if resp.status != 200 or len(raw) > _MAX_JWKS_BYTES:
                    log.warning(
                        "fal JWKS fetch answered %s (%d bytes); keeping %d keys", resp.status, len(raw), len(self._keys)
                    )
                    return
            keys = keys_from_jwks(json.loads(raw))
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("fal JWKS fetch failed: %s: %s; keeping %d keys", type(exc).__name__, exc, len(self._keys))
            return
        if not keys:
            log.warning("fal JWKS has no Ed25519 keys; keeping %d keys", len(self._keys))
            return
        self._keys = keys
        log.info("fal JWKS fetched: %d Ed25519 keys", len(keys))


def _any_verifies(keys: list[Ed25519PublicKey], signature: bytes, message: bytes) -> bool:
    for key in keys:
        try:
            key.verify(signature, message)
        except InvalidSignature:
            continue
        return True
    return False


def _body_request_id(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    value = data.get("request_id") if isinstance(data, Mapping) else None
    return value if isinstance(value, str) else None
