"""Which result URLs the bot may open, and the address it opens them at.

A provider (or a relay in front of it) chooses the result URL and every redirect after it, so a
careless or hostile one could make the bot fetch from inside its own network (a database admin
page, a cloud metadata service). A URL is accepted when it is on the configured provider's own
origin (local fakes and self-hosted servers keep working), or when it is ``https`` to a host whose
every DNS address is public. The checked address is then the one connected to (the URL is rewritten
to it, with the name kept for the Host header and TLS), so a second DNS answer cannot swap in a
private address between the check and the connection (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from yarl import URL

from bot.errors import UnsafeResultUrl

Resolver = Callable[[str, int], Awaitable[list[str]]]
"""``(host, port) -> IP addresses``; the default asks the system resolver without blocking the loop."""

_EXTRA_BLOCKED = tuple(
    ipaddress.ip_network(net)
    for net in (
        "100.64.0.0/10",  # CGNAT (carrier-grade NAT): not "private" to ipaddress, still internal
        "192.0.0.0/24",  # IETF protocol assignments
        "198.18.0.0/15",  # benchmarking
        "64:ff9b:1::/48",  # local-use NAT64
    )
)


def origin(url: str | URL) -> tuple[str, str, int | None]:
    """``(scheme, host, port)`` with the scheme's default port filled in, lower-cased."""
    parsed = url if isinstance(url, URL) else URL(url)
    return ((parsed.scheme or "").lower(), (parsed.host or "").lower(), parsed.port)


def is_public_address(address: str) -> bool:
    """Whether an IP address is on the public internet (not loopback, private, link-local, CGNAT,
    multicast, reserved or unspecified; IPv4-mapped IPv6 judged as the IPv4 inside)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            ip = mapped
    if not ip.is_global or ip.is_multicast:
        return False
    return not any(ip in net for net in _EXTRA_BLOCKED if net.version == ip.version)


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True)
class Target:
    """Where to connect for one URL: ``url`` (maybe rewritten to the checked IP), plus the original
    host for the Host header and TLS (None when ``url`` is used as given)."""

    url: URL
    host_header: str | None = None
    server_hostname: str | None = None
    same_origin: bool = False


@dataclass(frozen=True)
class UrlGuard:
    """The policy for one provider: ``base_url`` is its configured API base (None: no origin is trusted)."""

    base_url: str | None = None
    resolver: Resolver = system_resolver

    def trusted(self, url: URL) -> bool:
        return self.base_url is not None and origin(url) == origin(self.base_url)

    async def target(self, raw_url: str | URL, provider: str) -> Target:
        """Check ``raw_url`` and return where to connect; UnsafeResultUrl if it may not be opened.

        The refusal detail shows the scheme, host and port only: paths and queries may hold tokens."""
        try:
            url = raw_url if isinstance(raw_url, URL) else URL(raw_url)
        except (ValueError, TypeError) as exc:
            raise UnsafeResultUrl(f"{provider}: unparsable result URL: {exc}") from exc
        scheme, host, port = origin(url)
        where = f"{scheme}://{host}:{port}"
        if url.user or url.password:
            raise UnsafeResultUrl(f"{provider}: result URL {where} carries credentials")
        if not host or scheme not in ("http", "https"):
            raise UnsafeResultUrl(f"{provider}: result URL {where} is not http(s)")
        if self.trusted(url):
            return Target(url=url, same_origin=True)
        if scheme != "https":
            raise UnsafeResultUrl(f"{provider}: result URL {where} is plain http off the provider's origin")
        try:
            addresses = [str(ipaddress.ip_address(host.strip("[]")))]
            literal = True
        except ValueError:
            literal = False
            try:
                addresses = await self.resolver(host, port or 443)
            except OSError as exc:
                raise UnsafeResultUrl(f"{provider}: result host {host} does not resolve: {exc}") from exc
        blocked = [a for a in addresses if not is_public_address(a)]
        if not addresses or blocked:
            raise UnsafeResultUrl(f"{provider}: result URL {where} resolves to non-public {blocked or 'nothing'}")
        if literal:
            return Target(url=url)
        # Pin the checked address: connect to it, and keep the name for Host and TLS (SNI, certificate).
        host_header = host if port in (None, 443) else f"{host}:{port}"
        return Target(url=url.with_host(addresses[0].split("%", 1)[0]), host_header=host_header, server_hostname=host)
