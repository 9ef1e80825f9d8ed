"""Rules for the network addresses a download may reach.

Shared by the gateway, which rejects addresses written literally in a URL, and the downloader, which checks
what a host name resolves to before it connects.
"""

from __future__ import annotations

import ipaddress
import re
import socket

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Hosts made only of digits, dots and hex numbers may be an IPv4 address in a legacy spelling
# (`2130706433`, `0x7f.1`, `017700000001`) that resolvers and browsers still accept.
_LEGACY_IPV4 = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}\.?$", re.IGNORECASE)
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "metadata.google.internal", "metadata"})


def literal_address(host: str) -> IPAddress | None:
    """Return the IP address a host names literally, whatever its spelling, or None for a name."""
    candidate = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    candidate = candidate.split("%", 1)[0]  # an IPv6 zone id does not change the address
    try:
        return ipaddress.ip_address(candidate)
    except ValueError:
        pass
    if _LEGACY_IPV4.match(candidate):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(candidate.rstrip(".")))
        except OSError:
            return None
    return None


def is_forbidden_address(address: IPAddress) -> bool:
    """True for loopback, private, link-local (cloud metadata), CGNAT, multicast and reserved addresses."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            return is_forbidden_address(embedded)
        if address.teredo is not None:
            return True
    return address.is_multicast or not address.is_global


def is_local_name(host: str) -> bool:
    name = host.lower().rstrip(".")
    return name in LOCAL_NAMES or name.endswith(".localhost")
