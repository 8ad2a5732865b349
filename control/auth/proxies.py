"""Where a request came from: its direct TCP peer, and the client that peer vouches for.

Only a peer in ``DIALGATE_TRUSTED_PROXIES`` may name the client, with ``X-Forwarded-For``
(the header reverse proxies append to). The list is read from its right end, the hop
nearest to us: each address is taken only from a hop that is itself trusted, so the
client is the rightmost address no trusted proxy sits behind, and whatever a client wrote
into the header before the first proxy appended to it is never believed. A malformed hop
ends the walk at the trusted proxy that passed it on.

``X-Real-IP`` and ``Forwarded`` are never read: a proxy that sets only
``X-Forwarded-For`` passes the others through as the client sent them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network
FORWARDED_FOR = "x-forwarded-for"


def address(raw: str) -> Address | None:
    """An address as a header or a socket gives it (``[v6]:port`` and ``v4:port`` too),
    IPv4-mapped IPv6 as IPv4; ``None`` for anything else (``unknown``, a name)."""
    raw = raw.strip()
    if raw.startswith("["):
        raw = raw[1:].partition("]")[0]
    elif raw.count(":") == 1:
        raw = raw.partition(":")[0]
    try:
        found = ip_address(raw)
    except ValueError:
        return None
    if isinstance(found, IPv6Address) and found.ipv4_mapped is not None:
        return found.ipv4_mapped
    return found


@dataclass(frozen=True)
class Origin:
    """The client as far as trusted proxies vouch for it, and the TCP peer itself."""

    client: str
    peer: str


class Proxies:
    def __init__(self, trusted: Iterable[Network]) -> None:
        self.trusted = tuple(trusted)

    def trusts(self, addr: Address) -> bool:
        return any(addr in net for net in self.trusted)

    def origin(self, peer: str, forwarded_for: Iterable[str]) -> Origin:
        """The client of a request from ``peer`` carrying these ``X-Forwarded-For``
        header values (in the order received)."""
        current = address(peer)
        if current is None or not self.trusted:
            return Origin(peer, peer)
        hops = [hop for value in forwarded_for for hop in value.split(",")]
        for hop in reversed(hops):
            if not self.trusts(current):
                break
            nearer = address(hop)
            if nearer is None:
                break
            current = nearer
        return Origin(str(current), peer)
