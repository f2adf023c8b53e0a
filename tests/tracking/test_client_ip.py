"""Trusted proxies and client IP resolution from the peer and forwarding headers."""

from __future__ import annotations

import ipaddress
from ipaddress import IPv4Address, IPv6Address
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skopos._lru import LruCache
from skopos._tracking import client_ip as _client_ip
from skopos._tracking.client_ip import (
    CLOUDFLARE_RANGES,
    FORWARDING_HEADERS,
    MAX_HOPS,
    PRIVATE_RANGES,
    ResolvedIp,
    TrustedProxies,
    client_ip_header,
    keep_tail,
    resolve_client_ip,
)
from skopos._tracking.ip_rules import normalize_ip

CLOUDFLARE_EDGE = "173.245.48.10"
CLOUDFLARE_EDGE_V6 = "2606:4700::6810:1"
NONE = TrustedProxies()
PRIVATE = TrustedProxies(["private"])
CLOUDFLARE = TrustedProxies(["cloudflare"])
CLOUDFLARE_AND_PRIVATE = TrustedProxies(["cloudflare", "private"])


def ip(text: str) -> IPv4Address | IPv6Address:
    address = normalize_ip(text)
    assert address is not None
    return address


# --- TrustedProxies --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "trusted"),
    [
        ("10.1.2.3", True),
        ("172.16.0.1", True),
        ("172.31.255.255", True),
        ("172.32.0.1", False),
        ("192.168.1.1", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("169.254.1.1", True),
        ("::1", True),
        ("fe80::1", True),
        ("fc00::1", True),
        ("fd12:3456::1", True),
        ("::ffff:10.0.0.1", True),
        ("8.8.8.8", False),
        ("100.64.0.1", False),  # carrier-grade NAT is not "private" here
        ("2001:db8::1", False),
        (CLOUDFLARE_EDGE, False),
    ],
)
def test_private_preset(address: str, trusted: bool) -> None:
    assert PRIVATE.is_trusted(ip(address)) is trusted


@pytest.mark.parametrize(
    "address",
    [
        "173.245.48.1",
        "103.21.244.1",
        "104.16.0.1",
        "104.27.255.255",  # 104.16.0.0/13 + 104.24.0.0/14 end here
        "172.64.1.1",
        "162.159.1.1",
        "131.0.72.1",
        "2400:cb00::1",
        "2606:4700:10::1",
        "2a06:98c0::1",
        "2a06:98c7:ffff::1",  # the /29 spans 2a06:98c0:: to 2a06:98c7:ffff:...
        "2c0f:f248::1",
    ],
)
def test_cloudflare_preset_ranges(address: str) -> None:
    assert CLOUDFLARE.is_trusted(ip(address))
    assert CLOUDFLARE.is_cloudflare_edge(ip(address))
    assert not PRIVATE.is_cloudflare_edge(ip(address))


@pytest.mark.parametrize("address", ["104.28.0.1", "2a06:98c8::1", "10.0.0.1", "8.8.8.8"])
def test_not_cloudflare(address: str) -> None:
    assert not CLOUDFLARE.is_trusted(ip(address))
    assert not CLOUDFLARE.is_cloudflare_edge(ip(address))


def test_preset_ranges_are_valid_and_disjoint_from_each_other() -> None:
    private = [ipaddress.ip_network(cidr) for cidr in PRIVATE_RANGES]
    cloudflare = [ipaddress.ip_network(cidr) for cidr in CLOUDFLARE_RANGES]
    assert len(cloudflare) == 22
    for a in private:
        for b in cloudflare:
            assert a.version != b.version or not a.overlaps(b)


@pytest.mark.parametrize(
    ("config", "entries"),
    [
        ([], ()),
        ("", ()),
        ("private", ("private",)),
        ("Private, CLOUDFLARE", ("private", "cloudflare")),
        ("private cloudflare\nunix", ("private", "cloudflare", "unix")),
        (["203.0.113.0/24", "2001:db8::1"], ("203.0.113.0/24", "2001:db8::1/128")),
        (["203.0.113.9/24"], ("203.0.113.0/24",)),  # host bits set: accepted
        (("10.0.0.1", " "), ("10.0.0.1/32",)),
    ],
)
def test_trusted_proxies_config(config: str | list[str], entries: tuple[str, ...]) -> None:
    trusted = TrustedProxies(config)
    assert trusted.entries == entries
    assert bool(trusted) is bool(entries)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (["cloudfare"], "unknown trusted proxy preset 'cloudfare'"),
        (["aws"], "unknown trusted proxy preset 'aws'"),
        (["10.0.0.0/33"], "invalid trusted proxy '10.0.0.0/33'"),
        (["1.2.3.4.5"], "invalid trusted proxy"),
        (["10.0.0.0/8 garbage"], "invalid trusted proxy"),
        ([42], "must be strings"),
    ],
)
def test_trusted_proxies_reject_bad_config(config: list[object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrustedProxies(config)  # type: ignore[arg-type]


def test_trusted_proxies_custom_ranges() -> None:
    trusted = TrustedProxies(["203.0.113.0/24", "2001:db8::/48", "::ffff:198.51.100.7"])
    assert trusted.is_trusted(ip("203.0.113.200"))
    assert trusted.is_trusted(ip("2001:db8:0:1::1"))
    assert not trusted.is_trusted(ip("2001:db8:1::1"))
    assert trusted.is_trusted(ip("198.51.100.7"))
    assert not trusted.is_trusted(None)
    assert not trusted.cloudflare
    assert TrustedProxies("unix").is_trusted(None)


# --- resolve_client_ip: the table --------------------------------------------------------------

XFF = "x-forwarded-for"
FWD = "forwarded"
REAL = "x-real-ip"
CF = "cf-connecting-ip"

CASES: list[tuple[str, str | None, dict[str, str], TrustedProxies, str | None, str, bool]] = [
    # (id, peer, headers, trusted, expected ip, expected source, spoof_attempt)
    ("no proxies: peer", "198.51.100.4", {}, NONE, "198.51.100.4", "peer", False),
    (
        "no proxies: xff ignored",
        "198.51.100.4",
        {XFF: "1.2.3.4"},
        NONE,
        "198.51.100.4",
        "peer",
        True,
    ),
    (
        "no proxies: forwarded ignored",
        "198.51.100.4",
        {FWD: "for=1.2.3.4"},
        NONE,
        "198.51.100.4",
        "peer",
        True,
    ),
    (
        "no proxies: real-ip ignored",
        "198.51.100.4",
        {REAL: "1.2.3.4"},
        NONE,
        "198.51.100.4",
        "peer",
        True,
    ),
    (
        "no proxies: cf ignored",
        CLOUDFLARE_EDGE,
        {CF: "1.2.3.4"},
        NONE,
        CLOUDFLARE_EDGE,
        "peer",
        True,
    ),
    (
        "no proxies: empty header is no attempt",
        "198.51.100.4",
        {XFF: "  "},
        NONE,
        "198.51.100.4",
        "peer",
        False,
    ),
    (
        "no proxies: private peer not trusted by default",
        "10.0.0.1",
        {XFF: "1.2.3.4"},
        NONE,
        "10.0.0.1",
        "peer",
        True,
    ),
    (
        "untrusted peer with private preset",
        "198.51.100.4",
        {XFF: "1.2.3.4"},
        PRIVATE,
        "198.51.100.4",
        "peer",
        True,
    ),
    ("peer with port", "198.51.100.4:5555", {}, NONE, "198.51.100.4", "peer", False),
    ("peer ipv6 bracketed with port", "[2001:db8::7]:443", {}, NONE, "2001:db8::7", "peer", False),
    ("peer ipv4-mapped", "::ffff:198.51.100.4", {}, NONE, "198.51.100.4", "peer", False),
    ("peer garbage", "not-an-ip", {}, NONE, None, "peer", False),
    ("peer none", None, {}, NONE, None, "peer", False),
    ("peer none, unix not configured", None, {XFF: "1.2.3.4"}, PRIVATE, None, "peer", True),
    (
        "peer none, unix configured",
        None,
        {XFF: "1.2.3.4"},
        TrustedProxies("unix"),
        "1.2.3.4",
        "x-forwarded-for",
        False,
    ),
    (
        "unix socket path peer",
        "/run/app.sock",
        {XFF: "1.2.3.4"},
        TrustedProxies("unix"),
        "1.2.3.4",
        "x-forwarded-for",
        False,
    ),
    # X-Forwarded-For, walked from the right.
    ("xff single", "10.0.0.1", {XFF: "203.0.113.9"}, PRIVATE, "203.0.113.9", XFF, False),
    (
        "xff client spoofs left part",
        "10.0.0.1",
        {XFF: "6.6.6.6, 203.0.113.9"},
        PRIVATE,
        "203.0.113.9",
        XFF,
        False,
    ),
    (
        "xff skips trusted hops",
        "10.0.0.1",
        {XFF: "6.6.6.6, 203.0.113.9, 10.0.0.2, 192.168.0.3"},
        PRIVATE,
        "203.0.113.9",
        XFF,
        False,
    ),
    (
        "xff all trusted: leftmost",
        "10.0.0.1",
        {XFF: "10.0.0.7, 10.0.0.2"},
        PRIVATE,
        "10.0.0.7",
        XFF,
        False,
    ),
    (
        "xff with ports",
        "10.0.0.1",
        {XFF: "203.0.113.9:5678, 10.0.0.2:80"},
        PRIVATE,
        "203.0.113.9",
        XFF,
        False,
    ),
    (
        "xff ipv6 bracketed with port",
        "10.0.0.1",
        {XFF: "[2001:db8::9]:1234"},
        PRIVATE,
        "2001:db8::9",
        XFF,
        False,
    ),
    (
        "xff bare ipv6",
        "10.0.0.1",
        {XFF: "2001:db8::9, fd00::1"},
        PRIVATE,
        "2001:db8::9",
        XFF,
        False,
    ),
    (
        "xff ipv4-mapped",
        "10.0.0.1",
        {XFF: "::ffff:203.0.113.9"},
        PRIVATE,
        "203.0.113.9",
        XFF,
        False,
    ),
    (
        "xff mapped trusted hop skipped",
        "10.0.0.1",
        {XFF: "203.0.113.9, ::ffff:10.0.0.5"},
        PRIVATE,
        "203.0.113.9",
        XFF,
        False,
    ),
    (
        "xff empty elements",
        "10.0.0.1",
        {XFF: ",203.0.113.9,, ,"},
        PRIVATE,
        "203.0.113.9",
        XFF,
        False,
    ),
    (
        "xff garbage right of client: unknown",
        "10.0.0.1",
        {XFF: "203.0.113.9, garbage"},
        PRIVATE,
        None,
        XFF,
        False,
    ),
    ("xff 'unknown' hop", "10.0.0.1", {XFF: "unknown"}, PRIVATE, None, XFF, False),
    (
        "xff garbage left of client ignored",
        "10.0.0.1",
        {XFF: "<script>, 203.0.113.9"},
        PRIVATE,
        "203.0.113.9",
        XFF,
        False,
    ),
    ("xff quoted", "10.0.0.1", {XFF: '"203.0.113.9"'}, PRIVATE, "203.0.113.9", XFF, False),
    (
        "xff only separators: no client ip (x-real-ip not read)",
        "10.0.0.1",
        {XFF: ", ,", REAL: "203.0.113.9"},
        PRIVATE,
        None,
        XFF,
        False,
    ),
    ("xff ipv6 peer", "::1", {XFF: "203.0.113.9"}, PRIVATE, "203.0.113.9", XFF, False),
    (
        "xff custom trusted range",
        "203.0.113.1",
        {XFF: "198.51.100.2, 203.0.113.7"},
        TrustedProxies(["203.0.113.0/24"]),
        "198.51.100.2",
        XFF,
        False,
    ),
    # Forwarded (RFC 7239), when the proxy is said to set it (the "forwarded" cases).
    (
        "forwarded simple",
        "10.0.0.1",
        {FWD: "for=203.0.113.9", XFF: "6.6.6.6"},
        PRIVATE,
        "203.0.113.9",
        FWD,
        False,
    ),
    (
        "forwarded quoted ipv6 with port",
        "10.0.0.1",
        {FWD: 'for="[2001:db8:cafe::17]:4711"'},
        PRIVATE,
        "2001:db8:cafe::17",
        FWD,
        False,
    ),
    (
        "forwarded quoted ipv6 without port",
        "10.0.0.1",
        {FWD: 'For="[2001:db8::1]"'},
        PRIVATE,
        "2001:db8::1",
        FWD,
        False,
    ),
    (
        "forwarded ipv4 with port",
        "10.0.0.1",
        {FWD: 'for="203.0.113.9:8080"'},
        PRIVATE,
        "203.0.113.9",
        FWD,
        False,
    ),
    (
        "forwarded params and spaces",
        "10.0.0.1",
        {FWD: "proto=https ; for = 203.0.113.9 ; by=10.0.0.1;host=example.com"},
        PRIVATE,
        "203.0.113.9",
        FWD,
        False,
    ),
    (
        "forwarded multiple elements",
        "10.0.0.1",
        {FWD: "for=6.6.6.6, for=203.0.113.9;proto=https, for=10.0.0.2"},
        PRIVATE,
        "203.0.113.9",
        FWD,
        False,
    ),
    (
        "forwarded multiple headers joined",
        "10.0.0.1",
        {FWD: 'for=6.6.6.6, for="203.0.113.9", for=192.168.1.1'},
        PRIVATE,
        "203.0.113.9",
        FWD,
        False,
    ),
    (
        "forwarded obfuscated client",
        "10.0.0.1",
        {FWD: "for=_hidden, for=10.0.0.2"},
        PRIVATE,
        None,
        FWD,
        False,
    ),
    ("forwarded unknown client", "10.0.0.1", {FWD: "for=unknown"}, PRIVATE, None, FWD, False),
    (
        "forwarded obfuscated port",
        "10.0.0.1",
        {FWD: 'for="203.0.113.9:_abc"'},
        PRIVATE,
        "203.0.113.9",
        FWD,
        False,
    ),
    (
        "forwarded obfuscated left of client ignored",
        "10.0.0.1",
        {FWD: "for=_x, for=203.0.113.9"},
        PRIVATE,
        "203.0.113.9",
        FWD,
        False,
    ),
    (
        "forwarded comma inside quotes",
        "10.0.0.1",
        {FWD: 'for=203.0.113.9;ext="a,b;c=d", for=10.0.0.2'},
        PRIVATE,
        "203.0.113.9",
        FWD,
        False,
    ),
    (
        "forwarded escaped quote",
        "10.0.0.1",
        {FWD: r'for=203.0.113.9;x="\"", for=10.0.0.2'},
        PRIVATE,
        "203.0.113.9",
        FWD,
        False,
    ),
    (
        "forwarded without for: no client ip (xff not read)",
        "10.0.0.1",
        {FWD: "proto=https;host=example.com", XFF: "203.0.113.9"},
        PRIVATE,
        None,
        FWD,
        False,
    ),
    (
        "forwarded element without for is not a hop",
        "10.0.0.1",
        {FWD: "for=203.0.113.9, proto=https"},
        PRIVATE,
        "203.0.113.9",
        FWD,
        False,
    ),
    ("forwarded empty for value", "10.0.0.1", {FWD: "for="}, PRIVATE, None, FWD, False),
    (
        "forwarded duplicate for in one element",
        "10.0.0.1",
        {FWD: "for=1.1.1.1;for=2.2.2.2"},
        PRIVATE,
        None,
        FWD,
        False,
    ),
    (
        "forwarded unterminated quote: lenient",
        "10.0.0.1",
        {FWD: 'for="203.0.113.9'},
        PRIVATE,
        "203.0.113.9",
        FWD,
        False,
    ),
    (
        "forwarded all trusted: leftmost",
        "10.0.0.1",
        {FWD: "for=10.0.0.3, for=10.0.0.2"},
        PRIVATE,
        "10.0.0.3",
        FWD,
        False,
    ),
    # X-Real-IP, when the proxy is said to set it (the "real ip" cases).
    ("real ip", "10.0.0.1", {REAL: "203.0.113.9"}, PRIVATE, "203.0.113.9", REAL, False),
    (
        "real ip with port",
        "10.0.0.1",
        {REAL: "203.0.113.9:1234"},
        PRIVATE,
        "203.0.113.9",
        REAL,
        False,
    ),
    (
        "real ip duplicated: last copy",
        "10.0.0.1",
        {REAL: "6.6.6.6, 203.0.113.9"},
        PRIVATE,
        "203.0.113.9",
        REAL,
        False,
    ),
    ("real ip garbage", "10.0.0.1", {REAL: "nope"}, PRIVATE, None, REAL, False),
    (
        "xff beats real ip",
        "10.0.0.1",
        {XFF: "203.0.113.9", REAL: "6.6.6.6"},
        PRIVATE,
        "203.0.113.9",
        XFF,
        False,
    ),
    # Behind a trusted proxy, only the header it sets names the client; never the proxy.
    ("trusted peer without headers: no client ip", "10.0.0.1", {}, PRIVATE, None, XFF, False),
    (
        "a client's forwarded is ignored behind an xff proxy",
        "10.0.0.1",
        {FWD: "for=6.6.6.6", XFF: "203.0.113.9"},
        PRIVATE,
        "203.0.113.9",
        XFF,
        False,
    ),
    (
        "a client's for=unknown is ignored behind an xff proxy",
        "10.0.0.1",
        {FWD: "for=unknown", XFF: "203.0.113.9"},
        PRIVATE,
        "203.0.113.9",
        XFF,
        False,
    ),
    (
        "a client's x-real-ip is ignored behind an xff proxy",
        "10.0.0.1",
        {REAL: "6.6.6.6", XFF: "203.0.113.9"},
        PRIVATE,
        "203.0.113.9",
        XFF,
        False,
    ),
    (
        "real ip: a client's forwarded and xff are ignored",
        "10.0.0.1",
        {FWD: "for=6.6.6.6", XFF: "6.6.6.6", REAL: "203.0.113.9"},
        PRIVATE,
        "203.0.113.9",
        REAL,
        False,
    ),
    ("real ip missing: no client ip", "10.0.0.1", {XFF: "6.6.6.6"}, PRIVATE, None, REAL, False),
    # An untrusted peer that a server-side proxy fix already resolved (uvicorn rewrites the
    # client from X-Forwarded-For) is named by the header: the peer, and no attempt.
    (
        "uvicorn resolved the peer from xff: no attempt",
        "198.51.100.4",
        {XFF: "198.51.100.4"},
        TrustedProxies(["127.0.0.1/32"]),
        "198.51.100.4",
        "peer",
        False,
    ),
    (
        "peer named among xff hops: no attempt",
        "198.51.100.4",
        {XFF: "6.6.6.6, 198.51.100.4"},
        NONE,
        "198.51.100.4",
        "peer",
        False,
    ),
    (
        "peer not named by xff: attempt",
        "198.51.100.4",
        {XFF: "198.51.100.5"},
        NONE,
        "198.51.100.4",
        "peer",
        True,
    ),
    (
        "peer named by x-real-ip: no attempt",
        "198.51.100.4",
        {REAL: "198.51.100.4"},
        PRIVATE,
        "198.51.100.4",
        "peer",
        False,
    ),
    # CF-Connecting-IP: only from a Cloudflare edge with "cloudflare" configured.
    (
        "cf from edge",
        CLOUDFLARE_EDGE,
        {CF: "203.0.113.9", XFF: "6.6.6.6"},
        CLOUDFLARE,
        "203.0.113.9",
        CF,
        False,
    ),
    (
        "cf ipv6 from ipv6 edge",
        CLOUDFLARE_EDGE_V6,
        {CF: "2001:db8::9"},
        CLOUDFLARE,
        "2001:db8::9",
        CF,
        False,
    ),
    (
        "cf from mapped edge",
        f"::ffff:{CLOUDFLARE_EDGE}",
        {CF: "203.0.113.9"},
        CLOUDFLARE,
        "203.0.113.9",
        CF,
        False,
    ),
    (
        "cf from non-edge trusted peer ignored",
        "10.0.0.1",
        {CF: "6.6.6.6", XFF: "203.0.113.9"},
        CLOUDFLARE_AND_PRIVATE,
        "203.0.113.9",
        XFF,
        False,
    ),
    (
        "cf without preset ignored",
        CLOUDFLARE_EDGE,
        {CF: "6.6.6.6", XFF: "203.0.113.9"},
        TrustedProxies(["173.245.48.0/20"]),
        "203.0.113.9",
        XFF,
        False,
    ),
    (
        "cf from untrusted peer is an attempt",
        "198.51.100.4",
        {CF: "6.6.6.6"},
        CLOUDFLARE,
        "198.51.100.4",
        "peer",
        True,
    ),
    (
        "cf garbage falls back to xff",
        CLOUDFLARE_EDGE,
        {CF: "garbage", XFF: "203.0.113.9"},
        CLOUDFLARE,
        "203.0.113.9",
        XFF,
        False,
    ),
    (
        "cf edge xff skips cloudflare hops",
        "10.0.0.1",
        {XFF: f"203.0.113.9, {CLOUDFLARE_EDGE}"},
        CLOUDFLARE_AND_PRIVATE,
        "203.0.113.9",
        XFF,
        False,
    ),
]


def header_of(case_id: str) -> str:
    """The header a case's proxy sets: named by the case's first words (default: xff)."""
    if case_id.startswith("forwarded"):
        return FWD
    return REAL if case_id.startswith("real ip") else XFF


@pytest.mark.parametrize(
    ("peer", "headers", "trusted", "expected", "source", "spoof", "header"),
    [(*case[1:], header_of(case[0])) for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_resolve_client_ip(
    peer: str | None,
    headers: dict[str, str],
    trusted: TrustedProxies,
    expected: str | None,
    source: str,
    spoof: bool,
    header: str,
) -> None:
    result = resolve_client_ip(peer, headers, trusted, header)
    assert result == ResolvedIp(ip(expected) if expected else None, spoof, source)  # type: ignore[arg-type]
    assert result.unresolved == (expected is None and source != "peer")


# --- resolve_client_ip: bounds ---------------------------------------------------------------


def test_too_many_hops_all_trusted_gives_unknown() -> None:
    hops = ", ".join(f"10.0.{i // 250}.{i % 250}" for i in range(MAX_HOPS + 10))
    result = resolve_client_ip("10.0.0.1", {XFF: hops}, PRIVATE)
    assert result == ResolvedIp(None, False, "x-forwarded-for")


def test_many_hops_still_finds_the_client_near_the_right() -> None:
    junk = ", ".join(["6.6.6.6"] * 5_000)
    result = resolve_client_ip("10.0.0.1", {XFF: f"{junk}, 203.0.113.9, 10.0.0.2"}, PRIVATE)
    assert result.ip == ip("203.0.113.9")
    forwarded = ", ".join(["for=6.6.6.6"] * 5_000) + ", for=203.0.113.9"
    assert resolve_client_ip("10.0.0.1", {FWD: forwarded}, PRIVATE, FWD).ip == ip("203.0.113.9")


def test_exactly_max_hops_all_trusted_gives_leftmost() -> None:
    hops = [f"10.0.0.{i + 2}" for i in range(MAX_HOPS)]
    result = resolve_client_ip("10.0.0.1", {XFF: ", ".join(hops)}, PRIVATE)
    assert result.ip == ip(hops[0])


def test_forwarded_too_many_elements_all_trusted_gives_unknown() -> None:
    elements = ", ".join(f"for=10.0.0.{i % 250}" for i in range(MAX_HOPS + 1))
    assert resolve_client_ip("10.0.0.1", {FWD: elements}, PRIVATE).ip is None


def test_headers_that_are_bytes_or_odd_types() -> None:
    assert resolve_client_ip("10.0.0.1", {XFF: b"203.0.113.9"}, PRIVATE).ip == ip(  # type: ignore[dict-item]
        "203.0.113.9"
    )
    odd = {XFF: 12345, REAL: "203.0.113.9"}
    assert resolve_client_ip("10.0.0.1", odd, PRIVATE).ip is None  # type: ignore[arg-type]
    assert resolve_client_ip("10.0.0.1", odd, PRIVATE, REAL).source == REAL  # type: ignore[arg-type]


def test_a_broken_mapping_does_not_raise() -> None:
    class Broken(dict[str, str]):
        def get(self, key: object, default: object = None) -> str:
            raise RuntimeError("boom")

    assert resolve_client_ip("10.0.0.1", Broken(), PRIVATE) == ResolvedIp(None, False, "error")


def test_forwarding_headers_names_are_lowercase() -> None:
    assert all(name == name.lower() for name in FORWARDING_HEADERS)
    assert set(FORWARDING_HEADERS) == {XFF, FWD, REAL, CF}


# --- resolve_client_ip: properties -----------------------------------------------------------

header_text = st.text(
    alphabet=st.sampled_from(list('0123456789abcdef.:[]%,; ="_\\\tfor=unknown-_x')), max_size=80
) | st.text(max_size=80)
header_maps = st.dictionaries(st.sampled_from(FORWARDING_HEADERS), header_text, max_size=4)
peers = st.one_of(
    st.none(),
    st.ip_addresses().map(str),
    st.sampled_from(["10.0.0.1", "::1", CLOUDFLARE_EDGE, "[::ffff:10.0.0.1]:80", "/tmp/s"]),
    st.text(max_size=30),
)
configs = st.sampled_from(
    [NONE, PRIVATE, CLOUDFLARE, CLOUDFLARE_AND_PRIVATE, TrustedProxies("unix, private")]
)


@given(peers, header_maps, configs)
def test_resolve_never_raises(
    peer: str | None, headers: dict[str, str], trusted: TrustedProxies
) -> None:
    result = resolve_client_ip(peer, headers, trusted)
    assert result.source != "error"
    assert result.ip is None or isinstance(result.ip, (IPv4Address, IPv6Address))
    if isinstance(result.ip, IPv6Address):
        assert result.ip.ipv4_mapped is None  # always normalised to IPv4
    peer_only = resolve_client_ip(peer, {}, trusted)
    if peer_only.source == "peer":
        assert result.ip == peer_only.ip
        assert result.source == "peer"
    else:  # a trusted peer without headers names no client (never itself)
        assert peer_only.unresolved
    for header in (FWD, REAL, CF):
        assert resolve_client_ip(peer, headers, trusted, header).source != "error"


@given(peers, header_maps)
def test_without_trusted_proxies_the_peer_always_wins(
    peer: str | None, headers: dict[str, str]
) -> None:
    result = resolve_client_ip(peer, headers, NONE)
    assert result.source == "peer"
    expected = resolve_client_ip(peer, {}, NONE)
    assert result.ip == expected.ip
    assert expected.spoof_attempt is False
    sent = any(value.strip() for value in headers.values())
    if expected.ip is None or str(expected.ip) not in " ".join(headers.values()):
        assert result.spoof_attempt == sent
    else:  # headers naming the peer itself (a server resolved them already): no attempt
        assert result.spoof_attempt <= sent


@given(st.ip_addresses(), st.lists(st.ip_addresses(), max_size=8), st.ip_addresses())
def test_xff_client_is_first_untrusted_from_the_right(
    client: IPv4Address | IPv6Address,
    spoofed: list[IPv4Address | IPv6Address],
    proxy: IPv4Address | IPv6Address,
) -> None:
    trusted = TrustedProxies([str(proxy)])
    normalized_client = normalize_ip(str(client))
    if trusted.is_trusted(normalized_client):
        return
    chain = [*map(str, spoofed), str(client), str(proxy)]
    result = resolve_client_ip(str(proxy), {XFF: ", ".join(chain)}, trusted)
    assert result.ip == normalized_client


# --- resolve_client_ip: the parsed-node cache gives the uncached answers ---------------------


def _resolve_all(cases: list[tuple[Any, ...]]) -> list[ResolvedIp]:
    return [resolve_client_ip(peer, headers, trusted) for _, peer, headers, trusted, *_ in cases]


def test_node_cache_gives_the_uncached_answers_over_the_corpus(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cases = CASES
    cold_and_warm = [_resolve_all(cases), _resolve_all(cases)]
    monkeypatch.setattr(_client_ip, "_nodes", LruCache(0))
    uncached = _resolve_all(cases)
    assert cold_and_warm == [uncached, uncached]


@given(peers, header_maps, configs)
def test_node_cache_gives_the_uncached_answers(
    peer: str | None, headers: dict[str, str], trusted: TrustedProxies
) -> None:
    cached = [resolve_client_ip(peer, headers, trusted) for _ in range(2)]
    saved = _client_ip._nodes
    _client_ip._nodes = LruCache(0)
    try:
        uncached = resolve_client_ip(peer, headers, trusted)
    finally:
        _client_ip._nodes = saved
    assert cached == [uncached, uncached]


def test_node_cache_keeps_only_parsed_short_text() -> None:
    _client_ip._nodes.clear()
    assert _client_ip._parse_node("unknown") is None
    assert _client_ip._parse_node(" " * 300 + "192.0.2.1") == IPv4Address("192.0.2.1")
    assert _client_ip._parse_node("[::ffff:192.0.2.1]:80") == IPv4Address("192.0.2.1")
    assert len(_client_ip._nodes) == 1


# --- headers cut to their end, and the header a proxy sets -----------------------------------


def test_a_long_header_keeps_its_end_and_marks_the_cut() -> None:
    forged = ", ".join(["6.6.6.6"] * 1000)
    kept = keep_tail(f"{forged}, 203.0.113.9, 10.0.0.2")
    assert kept.startswith("for=unknown, 6.6.6.6")
    assert kept.endswith("6.6.6.6, 203.0.113.9, 10.0.0.2")
    result = resolve_client_ip("10.0.0.1", {XFF: f"{forged}, 203.0.113.9, 10.0.0.2"}, PRIVATE)
    assert result.ip == ip("203.0.113.9")
    # All trusted up to the cut: the client is on the far side of it, unknown.
    trusted_hops = ", ".join(["10.0.0.9"] * 1000)
    assert resolve_client_ip("10.0.0.1", {XFF: trusted_hops}, PRIVATE).ip is None
    assert keep_tail("203.0.113.9") == "203.0.113.9"


@pytest.mark.parametrize(
    ("name", "header"),
    [
        ("X-Forwarded-For", XFF),
        ("x-real-ip", REAL),
        ("Forwarded", FWD),
        ("cf-connecting-ip", CF),
        ("nginx", REAL),
        ("Caddy", XFF),
        ("traefik", XFF),
        ("aws-alb", XFF),
        ("cloudflare", CF),
    ],
)
def test_client_ip_header_names_and_presets(name: str, header: str) -> None:
    assert client_ip_header(name) == header


def test_an_unknown_client_ip_header_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown client_ip_header"):
        client_ip_header("x-client-ip")
