"""How much public address space a list of CIDR ranges admits, measured by meaning, not by text.

`0.0.0.0/1` plus `128.0.0.0/1` is every IPv4 address though neither says /0; `::ffff:0.0.0.0/96`
is every IPv4 address written as IPv6. The ranges are collapsed into their union, IPv4 embedded in
IPv6 (mapped and NAT64) is counted as IPv4, and only addresses routable on the internet count.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

IPv4Net = ipaddress.IPv4Network
IPv6Net = ipaddress.IPv6Network

# IPv4 ranges not routed on the internet (IANA IPv4 Special-Purpose Address Registry, RFC 6890):
# a stack may list them freely (VNet ranges behind an internal load balancer).
IPV4_NOT_PUBLIC = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
    )
)
# Only global unicast IPv6 (2000::/3, RFC 4291) is routed on the internet.
IPV6_PUBLIC = ipaddress.IPv6Network("2000::/3")
# IPv6 ranges that carry an IPv4 address in their last 32 bits: IPv4-mapped (RFC 4291) and the
# NAT64 well-known prefix (RFC 6052). A range there admits those IPv4 addresses.
IPV4_EMBEDDING = (ipaddress.IPv6Network("::ffff:0:0/96"), ipaddress.IPv6Network("64:ff9b::/96"))

# The most public space one organisation holds: the largest IPv4 allocations are /8s (a few
# companies and agencies hold one), and /32 is a regional registry's standard IPv6 allocation
# to an organisation (RIPE-738, ARIN NRPM 6.5). Ranges that admit more admit other people.
MAX_PUBLIC_IPV4 = 2 ** (32 - 8)
MAX_PUBLIC_IPV6 = 2 ** (128 - 32)


@dataclass(frozen=True)
class PublicSpace:
    ipv4: int  # public IPv4 addresses admitted, embedded ones included
    ipv6: int  # public IPv6 addresses admitted

    @property
    def too_wide(self) -> bool:
        return self.ipv4 > MAX_PUBLIC_IPV4 or self.ipv6 > MAX_PUBLIC_IPV6

    def describe(self) -> str:
        parts = []
        if self.ipv4:
            parts.append(f"{self.ipv4:,} public IPv4 addresses (a /{32 - (self.ipv4.bit_length() - 1)} or more)")
        if self.ipv6:
            parts.append(f"2^{self.ipv6.bit_length() - 1} or more public IPv6 addresses")
        return " and ".join(parts) or "no public address"


def _overlap(a: IPv4Net | IPv6Net, b: IPv4Net | IPv6Net) -> int:
    """Addresses two CIDR ranges share: one holds the other, or they are disjoint."""
    if a.version != b.version or not a.overlaps(b):
        return 0
    return min(a.num_addresses, b.num_addresses)


def _embedded_ipv4(net: IPv6Net) -> list[IPv4Net]:
    out = []
    for prefix in IPV4_EMBEDDING:
        if net.overlaps(prefix):
            inner = net if net.prefixlen >= prefix.prefixlen else prefix
            low = int(inner.network_address) & 0xFFFFFFFF
            out.append(ipaddress.IPv4Network((low, inner.prefixlen - 96)))
    return out


def public_space(cidrs: Iterable[str]) -> PublicSpace:
    nets = [ipaddress.ip_network(c, strict=False) for c in cidrs]
    v6 = list(ipaddress.collapse_addresses(n for n in nets if isinstance(n, IPv6Net)))
    v4 = list(
        ipaddress.collapse_addresses(
            [n for n in nets if isinstance(n, IPv4Net)] + [e for n in v6 for e in _embedded_ipv4(n)]
        )
    )
    ipv4 = sum(n.num_addresses - sum(_overlap(n, s) for s in IPV4_NOT_PUBLIC) for n in v4)
    ipv6 = sum(_overlap(n, IPV6_PUBLIC) for n in v6)
    return PublicSpace(ipv4, ipv6)
