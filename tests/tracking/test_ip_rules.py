"""IP normalisation, IpRangeSet lookups and the website IP blacklist."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skopos._tracking.ip_rules import IpBlacklist, IpRangeSet, normalize_ip, parse_network

# --- normalize_ip ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.1", IPv4Address("192.0.2.1")),
        ("  192.0.2.1\t\n", IPv4Address("192.0.2.1")),
        ("0.0.0.0", IPv4Address("0.0.0.0")),
        ("255.255.255.255", IPv4Address("255.255.255.255")),
        ("2001:db8::1", IPv6Address("2001:db8::1")),
        ("2001:DB8:0:0:0:0:0:1", IPv6Address("2001:db8::1")),
        ("[2001:db8::1]", IPv6Address("2001:db8::1")),
        (" [ 2001:db8::1 ] ", IPv6Address("2001:db8::1")),
        ("::1", IPv6Address("::1")),
        ("[::1]", IPv6Address("::1")),
        ("::", IPv6Address("::")),
        ("fe80::1%eth0", IPv6Address("fe80::1")),
        ("[fe80::1%25en0]", IPv6Address("fe80::1")),
        ("::ffff:192.0.2.1", IPv4Address("192.0.2.1")),
        ("::FFFF:c000:0201", IPv4Address("192.0.2.1")),
        ("[::ffff:10.0.0.1]", IPv4Address("10.0.0.1")),
        ("0:0:0:0:0:ffff:7f00:1", IPv4Address("127.0.0.1")),
        # IPv4-compatible (deprecated, not mapped) and NAT64 stay IPv6.
        ("::192.0.2.1", IPv6Address("::c000:201")),
        ("64:ff9b::192.0.2.1", IPv6Address("64:ff9b::c000:201")),
    ],
)
def test_normalize_ip_accepts(text: str, expected: IPv4Address | IPv6Address) -> None:
    assert normalize_ip(text) == expected
    assert type(normalize_ip(text)) is type(expected)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "[]",
        "garbage",
        "example.com",
        "localhost",
        "unknown",
        "256.1.1.1",
        "1.2.3",
        "1.2.3.4.5",
        "01.2.3.4",  # leading zeros are ambiguous (octal in some parsers)
        "1.2.3.4:80",  # ports are the caller's job
        "[::1]:80",
        "1.2.3.4/32",
        "1.2.3.4%eth0",  # zone ids only exist on IPv6
        "2001:db8::g",
        "2001:db8:::1",
        "[2001:db8::1",
        "١.٢.٣.٤",  # Arabic-Indic digits  # noqa: RUF001
        "１.２.３.４",  # fullwidth digits  # noqa: RUF001
        "1.2.3.4\x00",
        "1" * 200,
    ],
)
def test_normalize_ip_rejects(text: str) -> None:
    assert normalize_ip(text) is None


def test_normalize_ip_tolerates_non_strings() -> None:
    assert normalize_ip(None) is None  # type: ignore[arg-type]
    assert normalize_ip(b"1.2.3.4") is None  # type: ignore[arg-type]


@given(st.ip_addresses())
def test_normalize_ip_round_trips_every_address(address: IPv4Address | IPv6Address) -> None:
    result = normalize_ip(str(address))
    mapped = address.ipv4_mapped if isinstance(address, IPv6Address) else None
    assert result == (mapped if mapped is not None else address)
    assert normalize_ip(f" [{address}] ") == result


@given(st.text(max_size=120))
def test_normalize_ip_never_raises(text: str) -> None:
    result = normalize_ip(text)
    assert result is None or isinstance(result, (IPv4Address, IPv6Address))


# --- parse_network ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.0/8", IPv4Network("10.0.0.0/8")),
        ("10.1.2.3/8", IPv4Network("10.0.0.0/8")),  # host bits set: accepted
        (" 10.0.0.0 / 8 ", IPv4Network("10.0.0.0/8")),
        ("192.0.2.7", IPv4Network("192.0.2.7/32")),
        ("0.0.0.0/0", IPv4Network("0.0.0.0/0")),
        ("2001:db8::/32", IPv6Network("2001:db8::/32")),
        ("2001:db8:1234::5/32", IPv6Network("2001:db8::/32")),
        ("[2001:db8::]/32", IPv6Network("2001:db8::/32")),
        ("2001:db8::1", IPv6Network("2001:db8::1/128")),
        ("fe80::1%eth0/64", IPv6Network("fe80::/64")),
        ("::ffff:10.0.0.0/104", IPv4Network("10.0.0.0/8")),
        ("::ffff:192.0.2.1", IPv4Network("192.0.2.1/32")),
        ("10.0.0.0/255.0.0.0", IPv4Network("10.0.0.0/8")),
    ],
)
def test_parse_network_accepts(text: str, expected: IPv4Network | IPv6Network) -> None:
    assert parse_network(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "/8", "10.0.0.0/", "10.0.0.0/33", "2001:db8::/129", "10.0.0.0/-1", "x/8", "10.0.0.0/8/8"],
)
def test_parse_network_rejects(text: str) -> None:
    assert parse_network(text) is None


# --- IpRangeSet ------------------------------------------------------------------------------


def test_range_set_membership_ipv4_and_ipv6() -> None:
    ranges = IpRangeSet(
        [
            parse_network("10.0.0.0/8"),
            parse_network("192.0.2.7"),
            parse_network("2001:db8::/32"),
            parse_network("fe80::1"),
        ]
    )
    assert IPv4Address("10.255.255.255") in ranges
    assert IPv4Address("11.0.0.0") not in ranges
    assert IPv4Address("192.0.2.7") in ranges
    assert IPv4Address("192.0.2.8") not in ranges
    assert IPv6Address("2001:db8:ffff::1") in ranges
    assert IPv6Address("2001:db9::") not in ranges
    assert IPv6Address("fe80::1") in ranges
    assert IPv6Address("fe80::2") not in ranges
    # IPv4-mapped IPv6 matches the IPv4 entries, as an address object or as text.
    assert IPv6Address("::ffff:10.1.2.3") in ranges
    assert "::ffff:10.1.2.3" in ranges
    assert "not an ip" not in ranges
    assert None not in ranges


def test_range_set_ipv4_entry_does_not_match_ipv6_with_same_bits() -> None:
    ranges = IpRangeSet([parse_network("0.0.0.0/0")])
    assert IPv4Address("8.8.8.8") in ranges
    assert IPv6Address("::8.8.8.8") not in ranges
    assert IPv6Address("2001:db8::1") not in ranges


def test_range_set_collapses_overlaps() -> None:
    ranges = IpRangeSet(
        [parse_network("10.0.0.0/8"), parse_network("10.1.0.0/16"), parse_network("10.2.3.4")]
    )
    assert len(ranges) == 1
    assert len(IpRangeSet([parse_network("10.0.0.0/25"), parse_network("10.0.0.128/25")])) == 1


def test_range_set_lookup_cost_depends_on_prefix_lengths_not_entries() -> None:
    # 5,000 scattered /32s and 500 scattered /24s: two probes per lookup.
    singles = [IPv4Network((0x0B000000 + i * 7919, 32)) for i in range(5_000)]
    blocks = [IPv4Network((0x64000000 + i * 4099 * 256, 24)) for i in range(500)]
    ranges = IpRangeSet([*singles, *blocks])
    assert len(ranges._v4) == 2
    assert singles[2_345].network_address in ranges
    assert blocks[234].network_address + 200 in ranges
    assert IPv4Address("8.8.8.8") not in ranges


ipv4_networks = st.builds(
    lambda number, prefix: IPv4Network((number, prefix), strict=False),
    st.integers(0, 2**32 - 1),
    st.integers(0, 32),
)
ipv6_networks = st.builds(
    lambda number, prefix: IPv6Network((number, prefix), strict=False),
    st.integers(0, 2**128 - 1),
    st.integers(0, 128),
)
mapped_networks = st.builds(
    lambda number, prefix: IPv6Network(((0xFFFF << 32) | number, 96 + prefix), strict=False),
    st.integers(0, 2**32 - 1),
    st.integers(0, 32),
)


@given(
    st.lists(st.one_of(ipv4_networks, ipv6_networks, mapped_networks), max_size=12),
    st.ip_addresses(),
)
def test_range_set_agrees_with_linear_scan(
    networks: list[IPv4Network | IPv6Network], address: IPv4Address | IPv6Address
) -> None:
    ranges = IpRangeSet(networks)
    mapped = address.ipv4_mapped if isinstance(address, IPv6Address) else None
    probe = mapped if mapped is not None else address

    def linear(candidate: IPv4Address | IPv6Address) -> bool:
        for network in networks:
            converted = parse_network(str(network))
            assert converted is not None
            if converted.version == candidate.version and candidate in converted:
                return True
        return False

    assert (address in ranges) == linear(probe)
    for network in networks:
        for edge in (network.network_address, network.broadcast_address):
            normalized = normalize_ip(str(edge))
            assert normalized is not None
            assert (edge in ranges) == linear(normalized)


# --- IpBlacklist -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field",
    [
        ["203.0.113.7", "10.0.0.0/8", "2001:db8::/32"],
        "203.0.113.7, 10.0.0.0/8\n2001:db8::/32",
        "203.0.113.7;10.0.0.0/8 2001:db8::/32",
        json.dumps(["203.0.113.7", "10.0.0.0/8", "2001:db8::/32"]),
        ("203.0.113.7", "10.0.0.0/8", "2001:db8::/32"),
        ["203.0.113.7, 10.0.0.0/8", " 2001:db8::/32 "],
    ],
)
def test_blacklist_field_shapes(field: object) -> None:
    blacklist = IpBlacklist(field)
    assert blacklist.invalid_entries == ()
    assert blacklist.invalid_count == 0
    assert blacklist.contains("203.0.113.7")
    assert blacklist.contains("10.200.0.1")
    assert blacklist.contains("2001:db8:1::1")
    assert not blacklist.contains("203.0.113.8")
    assert not blacklist.contains("2001:db9::1")
    assert len(blacklist) == 3


@pytest.mark.parametrize("field", [None, [], "", "   ", "[]", {}])
def test_blacklist_empty(field: object) -> None:
    blacklist = IpBlacklist(field)
    assert not blacklist.contains("1.2.3.4")
    assert len(blacklist) == 0


def test_blacklist_reports_invalid_entries_and_keeps_the_rest() -> None:
    blacklist = IpBlacklist(
        ["10.0.0.1", "bogus", 42, None, "10.0.0.0/33", ["nested"], "x" * 500, "192.0.2.0/24"]
    )
    assert blacklist.contains("10.0.0.1")
    assert blacklist.contains("192.0.2.55")
    assert blacklist.invalid_entries == (
        "bogus",
        "<int>",
        "10.0.0.0/33",
        "<list>",
        "x" * 64,
    )
    assert blacklist.invalid_count == 5


def test_blacklist_non_list_field_is_invalid_not_an_error() -> None:
    blacklist = IpBlacklist({"ip": "1.2.3.4"})
    assert blacklist.invalid_entries == ("<dict>",)
    assert not blacklist.contains("1.2.3.4")


def test_blacklist_host_bits_and_mapped_forms() -> None:
    blacklist = IpBlacklist(["10.1.2.3/8", "::ffff:198.51.100.0/120", "[2001:db8::5]"])
    assert blacklist.contains("10.99.0.1")
    assert blacklist.contains("198.51.100.200")
    assert blacklist.contains("::ffff:198.51.100.200")
    assert blacklist.contains(IPv6Address("::ffff:10.0.0.1"))
    assert blacklist.contains(IPv6Address("2001:db8::5"))
    assert not blacklist.contains("2001:db8::6")


def test_blacklist_contains_accepts_addresses_text_and_none() -> None:
    blacklist = IpBlacklist(["192.0.2.1"])
    assert blacklist.contains(IPv4Address("192.0.2.1"))
    assert blacklist.contains(" 192.0.2.1 ")
    assert "192.0.2.1" in blacklist
    assert not blacklist.contains(None)
    assert not blacklist.contains("")
    assert not blacklist.contains("192.0.2.1:80")


def test_blacklist_invalid_reports_are_bounded() -> None:
    blacklist = IpBlacklist([f"bad{i}" for i in range(1_000)])
    assert len(blacklist.invalid_entries) == IpBlacklist.MAX_REPORTED_INVALID
    assert blacklist.invalid_count == 1_000


def test_blacklist_entry_cap() -> None:
    class SmallBlacklist(IpBlacklist):
        MAX_ENTRIES = 100

    entries = [str(IPv4Address(0x0A000000 + i)) for i in range(SmallBlacklist.MAX_ENTRIES + 5)]
    blacklist = SmallBlacklist(entries)
    assert blacklist.contains(entries[0])
    assert not blacklist.contains(entries[-1])
    assert blacklist.invalid_count == 5
    assert blacklist.invalid_entries[-1].startswith("<5 entries beyond")


def test_blacklist_json_string_with_garbage_falls_back_to_splitting() -> None:
    blacklist = IpBlacklist('["1.2.3.4", ')
    assert blacklist.invalid_entries == ('["1.2.3.4"',)
    assert not blacklist.contains("1.2.3.4")


@given(st.one_of(st.none(), st.text(max_size=200), st.lists(st.text(max_size=40), max_size=20)))
def test_blacklist_never_raises(field: object) -> None:
    blacklist = IpBlacklist(field)
    assert isinstance(blacklist.contains("1.2.3.4"), bool)
    assert blacklist.invalid_count >= len(blacklist.invalid_entries)


@given(st.lists(st.ip_addresses(), min_size=1, max_size=20), st.ip_addresses())
def test_blacklist_of_addresses_is_exact(
    listed: list[IPv4Address | IPv6Address], probe: IPv4Address | IPv6Address
) -> None:
    blacklist = IpBlacklist([str(address) for address in listed])
    normalized = {normalize_ip(str(address)) for address in listed}
    for address in listed:
        assert blacklist.contains(address)
    assert blacklist.contains(probe) == (normalize_ip(str(probe)) in normalized)
