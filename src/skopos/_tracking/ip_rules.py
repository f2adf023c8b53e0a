"""IP address parsing, fast address/range sets, and a website's IP blacklist.

Everything here is pure and allocation-light: the worker calls :meth:`IpBlacklist.contains`
once per event, so a lookup costs one hash probe per distinct prefix length, however many
entries the dashboard holds.

IPv4-mapped IPv6 addresses (``::ffff:192.0.2.1``, what a dual-stack socket reports for an
IPv4 client) are turned into plain IPv4 everywhere, so they match IPv4 entries.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Iterator
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import TypeAlias

__all__ = [
    "IPAddress",
    "IPNetwork",
    "IpBlacklist",
    "IpRangeSet",
    "normalize_ip",
    "parse_network",
]

IPAddress: TypeAlias = IPv4Address | IPv6Address
IPNetwork: TypeAlias = IPv4Network | IPv6Network

# Longer than any textual address with brackets and a zone id we are willing to read.
_MAX_ADDRESS_CHARS = 100
_MAX_NETWORK_CHARS = 110
_MAPPED_V4 = IPv6Network("::ffff:0:0/96")
_ENTRY_SEPARATORS = re.compile(r"[\s,;]+")


def _to_ipv4_if_mapped(address: IPAddress) -> IPAddress:
    if isinstance(address, IPv6Address):
        mapped = address.ipv4_mapped
        if mapped is not None:
            return mapped
    return address


def _strip_address_decorations(text: str) -> str:
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1].strip()
    # A zone id only exists on IPv6; "1.2.3.4%x" stays invalid.
    if ":" in text:
        text = text.split("%", 1)[0]
    return text


def normalize_ip(value: str) -> IPAddress | None:
    """Parse one IP address the liberal way, or return None for anything else.

    Strips surrounding whitespace, ``[...]`` brackets and an IPv6 zone id (``%eth0``), and
    turns IPv4-mapped IPv6 into IPv4. Ports, CIDR suffixes, hostnames, non-ASCII digits and
    IPv4 octets with leading zeros are rejected.

    Example::

        >>> normalize_ip(" [::ffff:192.0.2.1] ")
        IPv4Address('192.0.2.1')
        >>> normalize_ip("fe80::1%eth0")
        IPv6Address('fe80::1')
        >>> normalize_ip("example.com") is None
        True
    """
    if not isinstance(value, str) or len(value) > _MAX_ADDRESS_CHARS or not value.isascii():
        return None
    text = _strip_address_decorations(value)
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    return _to_ipv4_if_mapped(address)


def parse_network(value: str) -> IPNetwork | None:
    """Parse an address or a CIDR range into a network, or return None.

    Host bits may be set (``10.1.2.3/8`` means ``10.0.0.0/8``); a bare address becomes a
    ``/32`` or ``/128``; brackets and zone ids are stripped as in :func:`normalize_ip`; a
    range inside ``::ffff:0:0/96`` becomes the IPv4 range it maps.

    Example::

        >>> parse_network("10.1.2.3/8")
        IPv4Network('10.0.0.0/8')
        >>> parse_network("::ffff:10.0.0.0/104")
        IPv4Network('10.0.0.0/8')
        >>> parse_network("10.0.0.0/33") is None
        True
    """
    if not isinstance(value, str) or len(value) > _MAX_NETWORK_CHARS or not value.isascii():
        return None
    text = value.strip()
    address_part, slash, prefix_part = text.partition("/")
    address_part = _strip_address_decorations(address_part)
    prefix_part = prefix_part.strip()
    if not address_part or (slash and not prefix_part):
        return None
    try:
        network = ipaddress.ip_network(
            f"{address_part}/{prefix_part}" if slash else address_part, strict=False
        )
    except ValueError:
        return None
    return _to_ipv4_network_if_mapped(network)


def _to_ipv4_network_if_mapped(network: IPNetwork) -> IPNetwork:
    if (
        isinstance(network, IPv6Network)
        and network.prefixlen >= 96
        and network.subnet_of(_MAPPED_V4)
    ):
        low_bits = int(network.network_address) & 0xFFFFFFFF
        return IPv4Network((low_bits, network.prefixlen - 96))
    return network


class IpRangeSet:
    """An immutable set of IP addresses and ranges with fast membership tests.

    Ranges inside ``::ffff:0:0/96`` become the IPv4 ranges they map; a wider IPv6 range
    (``::/0``) matches only real IPv6 addresses, since mapped ones are treated as IPv4.
    Networks are collapsed (overlaps and neighbours merged), then grouped by prefix length;
    each group is a frozenset of the network numbers shifted right by the host bits. A
    lookup shifts the address once per group and probes the set, so it costs
    O(distinct prefix lengths), not O(entries): 100,000 single addresses are one probe.

    Example::

        >>> ranges = IpRangeSet([parse_network("10.0.0.0/8"), parse_network("2001:db8::/32")])
        >>> normalize_ip("10.9.8.7") in ranges, normalize_ip("::ffff:10.1.1.1") in ranges
        (True, True)
        >>> normalize_ip("2001:db9::1") in ranges
        False
    """

    __slots__ = ("_count", "_v4", "_v6")

    def __init__(self, networks: Iterable[IPNetwork | None] = ()) -> None:
        v4: list[IPv4Network] = []
        v6: list[IPv6Network] = []
        for candidate in networks:
            network = _to_ipv4_network_if_mapped(candidate) if candidate is not None else None
            if isinstance(network, IPv4Network):
                v4.append(network)
            elif isinstance(network, IPv6Network):
                v6.append(network)
        collapsed_v4 = list(ipaddress.collapse_addresses(v4))
        collapsed_v6 = list(ipaddress.collapse_addresses(v6))
        self._count = len(collapsed_v4) + len(collapsed_v6)
        self._v4 = self._index(collapsed_v4, 32)
        self._v6 = self._index(collapsed_v6, 128)

    @staticmethod
    def _index(
        networks: Iterable[IPv4Network | IPv6Network], bits: int
    ) -> tuple[tuple[int, frozenset[int]], ...]:
        groups: dict[int, set[int]] = {}
        for network in networks:
            shift = bits - network.prefixlen
            groups.setdefault(shift, set()).add(int(network.network_address) >> shift)
        # Biggest groups first: a hit usually comes from the group holding most entries.
        ordered = sorted(groups.items(), key=lambda item: len(item[1]), reverse=True)
        return tuple((shift, frozenset(keys)) for shift, keys in ordered)

    def __contains__(self, address: object) -> bool:
        if isinstance(address, str):
            address = normalize_ip(address)
        if isinstance(address, IPv6Address):
            address = _to_ipv4_if_mapped(address)
        if isinstance(address, IPv4Address):
            table = self._v4
        elif isinstance(address, IPv6Address):
            table = self._v6
        else:
            return False
        number = int(address)
        return any((number >> shift) in keys for shift, keys in table)

    def __len__(self) -> int:
        """The number of networks after collapsing overlaps."""
        return self._count

    def __repr__(self) -> str:
        return f"<IpRangeSet networks={self._count}>"


class IpBlacklist:
    """A website's ``ipBlacklist`` field, parsed leniently, with fast lookups.

    The dashboard stores a JSON list of strings; this also accepts a single string of
    entries separated by commas, semicolons or whitespace (also a JSON list inside a
    string), and None. Each entry is an address or a CIDR range, IPv4 or IPv6; host bits
    may be set. Invalid entries never raise: they are skipped and listed (truncated, at
    most :attr:`MAX_REPORTED_INVALID`) in :attr:`invalid_entries`, with
    :attr:`invalid_count` counting all of them, so the site-rules loader can warn once.

    Example::

        >>> blacklist = IpBlacklist(["203.0.113.7", "10.0.0.0/8", "2001:db8::/32", "oops"])
        >>> blacklist.contains("10.20.30.40"), blacklist.contains("::ffff:203.0.113.7")
        (True, True)
        >>> blacklist.contains("198.51.100.1")
        False
        >>> blacklist.invalid_entries
        ('oops',)
    """

    MAX_ENTRIES = 50_000
    MAX_REPORTED_INVALID = 100
    _MAX_REPORTED_CHARS = 64

    __slots__ = ("_ranges", "invalid_count", "invalid_entries")

    def __init__(self, value: object = None) -> None:
        networks: list[IPNetwork] = []
        invalid: list[str] = []
        invalid_count = 0
        seen = 0
        for entry in _iter_entries(value):
            seen += 1
            if seen > self.MAX_ENTRIES:
                invalid_count += 1
                continue
            network = parse_network(entry) if isinstance(entry, str) else None
            if network is not None:
                networks.append(network)
                continue
            invalid_count += 1
            if len(invalid) < self.MAX_REPORTED_INVALID:
                text = entry if isinstance(entry, str) else _describe(entry)
                invalid.append(text[: self._MAX_REPORTED_CHARS])
        if seen > self.MAX_ENTRIES and len(invalid) < self.MAX_REPORTED_INVALID:
            invalid.append(f"<{seen - self.MAX_ENTRIES} entries beyond {self.MAX_ENTRIES}>")
        self._ranges = IpRangeSet(networks)
        self.invalid_entries: tuple[str, ...] = tuple(invalid)
        self.invalid_count: int = invalid_count

    def contains(self, ip: str | IPAddress | None) -> bool:
        """Whether ``ip`` (text or address; None and garbage are never listed) is blacklisted.

        Example::

            >>> IpBlacklist("10.0.0.0/8, 192.0.2.1").contains("10.1.2.3")
            True
        """
        return ip in self._ranges

    def __contains__(self, ip: object) -> bool:
        return ip in self._ranges

    def __len__(self) -> int:
        """The number of listed networks after merging overlaps."""
        return len(self._ranges)

    def __repr__(self) -> str:
        return f"<IpBlacklist networks={len(self._ranges)} invalid={self.invalid_count}>"


def _describe(value: object) -> str:
    return f"<{type(value).__name__}>"


def _iter_entries(value: object) -> Iterator[object]:
    """Yield candidate entries (strings, or other values to report as invalid)."""
    if value is None:
        return
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            try:
                decoded = json.loads(stripped)
            except (ValueError, RecursionError):
                decoded = None
            if isinstance(decoded, list):
                yield from _iter_entries(decoded)
                return
        yield from (part for part in _ENTRY_SEPARATORS.split(stripped) if part)
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            if isinstance(item, str):
                # Lenient: "10.0.0.1, 10.0.0.2" typed into one list item is two entries.
                yield from (part for part in _ENTRY_SEPARATORS.split(item.strip()) if part)
            elif item is not None:
                yield item
        return
    yield value
