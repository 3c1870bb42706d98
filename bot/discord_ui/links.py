"""Links the bot shows in Discord. Result URLs come from providers (untrusted text): one is shown
only after parsing, as ``<url>`` (a plain link that cannot be disguised as other text, and whose
preview is suppressed), never inside a masked ``[text](url)`` link."""

from __future__ import annotations

from urllib.parse import urlsplit

MAX_URL_CHARS = 1024
NOT_SHOWN = "(link not shown)"
# Anything that could end the <...> form, start markdown or break the line.
_FORBIDDEN = frozenset("<>`|\\\"' ") | {chr(c) for c in range(0x20)} | {"\x7f"}


def safe_url(raw: str | None) -> str | None:
    """``raw`` when it is a plain http(s) URL with a host and nothing that could escape its display; else None."""
    if not raw or len(raw) > MAX_URL_CHARS or any(ch in _FORBIDDEN or ch.isspace() for ch in raw):
        return None
    try:
        parts = urlsplit(raw)
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok or parts.username:
        return None
    return raw


def shown(raw: str | None, missing: str = NOT_SHOWN) -> str:
    """``<url>`` for a safe URL, else ``missing``."""
    url = safe_url(raw)
    return f"<{url}>" if url else missing
