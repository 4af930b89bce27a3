"""SSRF guard for every user-supplied URL.

Checked twice: when a URL is saved (`check_url`) and when a socket is opened
(`resolve_checked`, used by the guarded HTTP transport in apps.providers.http), so a
name that later resolves elsewhere (DNS rebinding) or a redirect to an internal
address is refused at connect time. Only globally routable addresses pass, unless an
operator lists an address or network in `SSRF_ALLOW_LIST`.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from functools import lru_cache
from urllib.parse import urlsplit

from django.conf import settings

from apps.core.errors import ApplicationError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Blocked although Python may call them global: CGNAT and cloud metadata addresses.
_EXTRA_BLOCKED = [
    ipaddress.ip_network("100.64.0.0/10"),
    ipaddress.ip_network("169.254.0.0/16"),
    ipaddress.ip_network("fd00:ec2::/32"),
    ipaddress.ip_network("64:ff9b::/96"),  # NAT64 can reach IPv4 internals
]
# Numeric host spellings that resolvers read as IPv4 (2130706433, 0x7f.1, 0177.0.0.1).
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}$", re.I)


class UnsafeURLError(ApplicationError):
    code = "unsafe_url"


@lru_cache(maxsize=8)
def _allow_list(entries: tuple[str, ...]) -> tuple[ipaddress._BaseNetwork, ...]:
    return tuple(ipaddress.ip_network(e, strict=False) for e in entries)


def _allowed_networks() -> tuple[ipaddress._BaseNetwork, ...]:
    return _allow_list(tuple(getattr(settings, "SSRF_ALLOW_LIST", ())))


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            return ip.ipv4_mapped
        if ip.sixtofour:
            return ip.sixtofour
        if ip.teredo:
            return ip.teredo[1]
        if int(ip) >> 32 == 0 and int(ip) > 1:  # deprecated IPv4-compatible ::a.b.c.d
            return ipaddress.IPv4Address(int(ip))
    return None


def address_is_allowed(ip: IPAddress) -> bool:
    """True for globally routable addresses and for the operator's allow-list."""
    if any(ip in net for net in _allowed_networks() if net.version == ip.version):
        return True
    inner = _embedded_ipv4(ip)
    if inner is not None:
        return address_is_allowed(inner)
    if any(ip in net for net in _EXTRA_BLOCKED if net.version == ip.version):
        return False
    return ip.is_global and not ip.is_multicast


def _refuse(url: str, reason: str) -> UnsafeURLError:
    return UnsafeURLError(
        f"URL refused: {reason}.", fields={"base_url": [f"{url!r}: {reason}."]}
    )


def check_url(url: str, *, resolve: bool = True) -> str:
    """Validate scheme, host spelling and (by default) every resolved address.
    Returns the URL unchanged; raises UnsafeURLError naming the reason."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _refuse(url, "not a valid URL") from exc
    if parts.scheme not in ("http", "https"):
        raise _refuse(url, "only http and https are allowed")
    host = parts.hostname
    if not host:
        raise _refuse(url, "no host")
    if parts.username or parts.password:
        raise _refuse(url, "credentials in the URL are not allowed")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is None and _NUMERIC_HOST.match(host):
        raise _refuse(
            url, "numeric host names must be written as a dotted IPv4 address"
        )
    if literal is not None and not address_is_allowed(literal):
        raise _refuse(url, f"{literal} is not a public address")
    if resolve and literal is None:
        resolve_checked(host, port or (443 if parts.scheme == "https" else 80), url=url)
    return url


def resolve_checked(host: str, port: int, *, url: str = "") -> list[tuple]:
    """getaddrinfo, refusing the whole name if any address is not allowed.

    Returns the addrinfo tuples to connect to: callers connect to these exact
    addresses, never re-resolve the name."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise _refuse(url or host, f"host '{host}' does not resolve") from exc
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not address_is_allowed(ip):
            raise _refuse(
                url or host, f"'{host}' resolves to {ip}, not a public address"
            )
    return infos
