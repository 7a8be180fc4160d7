"""The client's own address behind trusted reverse proxies (`trusted_proxies`, PROTOCOL.md §10.6)."""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable

import tornado.httputil

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """Addresses or CIDRs as networks; ValueError naming the entry that is neither."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or CIDR") from None
    return tuple(networks)


def _is_trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def client_address(request: tornado.httputil.HTTPServerRequest, trusted: tuple[Network, ...]) -> str:
    """The peer's address, or, when the peer is a trusted proxy, the address it forwarded.

    X-Forwarded-For is read right to left, skipping the trusted proxies on the way: the first
    address that is not one of them is the client (a client may put anything at the left end,
    so the left end is never believed). X-Real-IP is the fallback. An untrusted peer's headers
    are ignored.
    """
    peer = request.remote_ip or ""
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    forwarded = [a.strip() for a in request.headers.get("X-Forwarded-For", "").split(",") if a.strip()]
    for address in reversed(forwarded):
        if not _is_trusted(address, trusted):
            return address if _valid(address) else peer
    real = request.headers.get("X-Real-IP", "").strip()
    if real and _valid(real):
        return real
    return forwarded[0] if forwarded and _valid(forwarded[0]) else peer


def _valid(address: str) -> bool:
    try:
        ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return False
    return True
