"""Host and Origin checks for the HTTP edge (DNS-rebinding protection), by exact comparison.

Both headers are parsed into (host, port) by a strict grammar (a DNS name, a dotted IPv4 address
or a bracketed IPv6 address, then an optional all-digit port) and compared as pairs, never by
prefix or pattern: ``localhost:8765@evil.com``, ``127.0.0.1:1.evil.com`` and
``http://127.0.0.1:8765.evil.com`` do not parse, so they are refused.

Allow-list entries use the same form; ``*`` as the port accepts any port.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HOST = r"(\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)"
_HOST_RE = re.compile(rf"{_HOST}(?::([0-9]{{1,5}}|\*))?", re.ASCII)
_ORIGIN_RE = re.compile(rf"(https?)://{_HOST}(?::([0-9]{{1,5}}|\*))?", re.ASCII)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
_ANY_ADDRESS = ("0.0.0.0", "::")  # noqa: S104 - names to recognise, not an address to bind

# (scheme or "", lower-case host, port; None = no port given, -1 = any port)
Endpoint = tuple[str, str, int | None]


def parse_host(value: str) -> Endpoint | None:
    """A Host header or allow-list entry → ("", host, port); None when it is not exactly that."""
    match = _HOST_RE.fullmatch(value.strip())
    if match is None:
        return None
    return "", match.group(1).lower(), _port(match.group(2))


def parse_origin(value: str) -> Endpoint | None:
    """An Origin header or allow-list entry → (scheme, host, port); None when it does not parse."""
    match = _ORIGIN_RE.fullmatch(value.strip())
    if match is None:
        return None
    scheme = match.group(1)
    port = _port(match.group(3))
    return scheme, match.group(2).lower(), _DEFAULT_PORTS[scheme] if port is None else port


def _port(text: str | None) -> int | None:
    if text is None:
        return None
    if text == "*":
        return -1
    number = int(text)
    return number if 0 < number < 65536 else 0  # 0 never matches a real entry


def _allowed(candidate: Endpoint, allowed: frozenset[Endpoint]) -> bool:
    scheme, host, _ = candidate
    return candidate in allowed or (scheme, host, -1) in allowed


@dataclass(frozen=True)
class HostPolicy:
    hosts: frozenset[Endpoint]
    origins: frozenset[Endpoint]

    @classmethod
    def for_server(cls, host: str, port: int, extra_hosts: list[str], extra_origins: list[str]) -> HostPolicy:
        """The served address (and the loopback names when serving loopback or every address)."""
        name = f"[{host}]" if ":" in host and not host.startswith("[") else host
        names = [name]
        if host in ("127.0.0.1", "localhost", "::1", *_ANY_ADDRESS):
            names += list(_LOOPBACK_NAMES)
        hosts: set[Endpoint] = {("", n.lower(), port) for n in names}
        origins: set[Endpoint] = {(scheme, n.lower(), port) for n in names for scheme in ("http", "https")}
        hosts |= {e for e in (parse_host(v) for v in extra_hosts) if e is not None}
        origins |= {e for e in (parse_origin(v) for v in extra_origins) if e is not None}
        return cls(hosts=frozenset(hosts), origins=frozenset(origins))

    def refusal(self, host: str | None, origin: str | None) -> tuple[int, str] | None:
        """(status, reason) for a request to refuse; None to let it through.

        A missing Origin is fine (non-browser clients send none); a missing Host is not.
        """
        parsed_host = parse_host(host) if host is not None else None
        if parsed_host is None or not _allowed(parsed_host, self.hosts):
            return 421, "host_not_allowed"
        if origin is not None:
            parsed_origin = parse_origin(origin)
            if parsed_origin is None or not _allowed(parsed_origin, self.origins):
                return 403, "origin_not_allowed"
        return None
