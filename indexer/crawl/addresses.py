"""The address policy (SSRF protection): public-address check, DNS-pinning transport, HTTP client."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable

import httpcore
import httpx

from indexer.crawl.models import CrawlOptions

_NAT64 = ipaddress.ip_network("64:ff9b::/96")

Resolver = Callable[[str, int], Awaitable[list[str]]]
"""Resolves a host name to IP address strings; the seam for tests and custom DNS."""


def is_public_address(address: str) -> bool:
    """True when an IP address is globally routable unicast, including any IPv4 it embeds."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return is_public_address(str(ip.ipv4_mapped))  # ::ffff:a.b.c.d is a.b.c.d on the wire
    if ip.is_multicast or ip.is_reserved or ip.is_unspecified or ip.is_loopback or ip.is_link_local:
        return False
    if not ip.is_global or ip.is_private:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        embedded: list[ipaddress.IPv4Address] = []
        if ip.sixtofour is not None:
            embedded.append(ip.sixtofour)
        if ip.teredo is not None:
            embedded.extend(ip.teredo)
        if ip in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        return all(is_public_address(str(inner)) for inner in embedded)
    return True


async def system_resolve(host: str, port: int) -> list[str]:
    """All addresses the system resolver gives for ``host`` (an IP literal resolves to itself)."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for info in infos:
        address = str(info[4][0]).split("%", 1)[0]
        if address not in addresses:
            addresses.append(address)
    return addresses


class AddressRefusedError(Exception):
    """A host resolves to an address the policy forbids."""


class HostUnresolvableError(AddressRefusedError):
    """A host does not resolve, so its addresses cannot be checked (and it cannot be reached)."""


async def check_host(host: str, port: int, resolve: Resolver) -> list[str]:
    """Resolve ``host`` and return its addresses; raise `AddressRefusedError` unless all are public."""
    try:
        addresses = await resolve(host, port)
    except OSError as exc:
        raise HostUnresolvableError(f"cannot resolve host {host!r}: {exc}") from exc
    if not addresses:
        raise HostUnresolvableError(f"host {host!r} resolves to no address")
    refused = [address for address in addresses if not is_public_address(address)]
    if refused:
        raise AddressRefusedError(
            f"host {host!r} resolves to non-public address {refused[0]} "
            "(private, loopback, link-local, multicast or reserved)"
        )
    return addresses


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Resolves, checks and connects to the checked address in one step (no rebinding window).

    With ``check`` off (``allow_private``) it still resolves through ``resolve``, so a custom
    resolver decides where every connection goes either way."""

    def __init__(self, resolve: Resolver, *, check: bool) -> None:
        self._resolve = resolve
        self._check = check
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            if self._check:
                addresses = await check_host(host, port, self._resolve)
            else:
                addresses = await self._resolve(host, port)
        except (AddressRefusedError, OSError) as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        error: Exception = httpcore.ConnectError(f"cannot connect to {host}:{port}")
        for address in addresses:
            try:
                # TLS still verifies and sends SNI for the original host name: httpcore takes
                # those from the request's origin, not from the address connected to.
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not crawled")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport (request mapping, error mapping) over a connection pool whose
    network backend is `_PinnedBackend`. httpx offers no public hook for the backend, so the
    pool it built is swapped for an equivalent one; the pool type is pinned with httpx itself."""

    def __init__(self, resolve: Resolver, limits: httpx.Limits, *, check: bool) -> None:
        super().__init__(limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),  # honours SSL_CERT_FILE / SSL_CERT_DIR
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_PinnedBackend(resolve, check=check),
        )


def build_client(options: CrawlOptions, resolve: Resolver) -> httpx.AsyncClient:
    limits = httpx.Limits(
        max_connections=options.concurrency + 2, max_keepalive_connections=options.concurrency
    )
    transport = _PinnedTransport(resolve, limits, check=not options.allow_private)
    # trust_env=False: environment proxies would connect on our behalf to addresses we never checked.
    return httpx.AsyncClient(
        transport=transport,
        trust_env=False,
        follow_redirects=False,
        headers={"User-Agent": options.user_agent},
        timeout=options.timeout_s,
    )
