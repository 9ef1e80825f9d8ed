"""The client's IP address, and the address group that anonymous rate limits count against.

`X-Forwarded-For` is believed only when the direct peer is a trusted proxy. The header is then read from
the right, skipping trusted proxies, because every proxy appends the address it saw and only the entries
added by our own proxies can be trusted; the leftmost entries are whatever the client sent.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Providers hand out at least a /64 to one IPv6 customer, so a single client can use any address in it.
IPV6_GROUP_PREFIX = 64


@lru_cache(maxsize=4096)
def _parse(text: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class ClientAddressResolver:
    """Find a request's client address from its peer and `X-Forwarded-For` values."""

    def __init__(self, trusted_proxies: list[Network]) -> None:
        self._trusted = tuple(trusted_proxies)
        self._trusted_cache: dict[IPAddress, bool] = {}

    def _is_trusted(self, address: IPAddress) -> bool:
        known = self._trusted_cache.get(address)
        if known is None:
            known = any(address in network for network in self._trusted)
            if len(self._trusted_cache) < 10_000:
                self._trusted_cache[address] = known
        return known

    def resolve(self, peer: str | None, forwarded_for: list[str]) -> str:
        """Return the client address as text; "unknown" when the peer is not an IP address."""
        peer_address = _parse(peer) if peer else None
        if peer_address is None:
            return "unknown"
        if not forwarded_for or not self._is_trusted(peer_address):
            return str(peer_address)

        hops = [hop for value in forwarded_for for hop in value.split(",")]
        client = peer_address
        for hop in reversed(hops):
            address = _parse(hop)
            if address is None:
                # Our proxies write addresses only, so an unreadable entry came from the client side:
                # the last address walked is the nearest one we can trust.
                break
            client = address
            if not self._is_trusted(address):
                break
        return str(client)


@lru_cache(maxsize=65536)
def address_group(address: str) -> str:
    """Return the rate-limit group of a client address: the address itself, or its /64 for IPv6."""
    parsed = _parse(address)
    if isinstance(parsed, ipaddress.IPv6Address):
        network = ipaddress.IPv6Network((parsed, IPV6_GROUP_PREFIX), strict=False)
        return str(network)
    return address
