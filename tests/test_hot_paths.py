"""Fast paths and caches of the request path and the worker give the slow paths' answers."""

from __future__ import annotations

import hashlib
import hmac
import os
import random
import re
from collections import Counter
from ipaddress import IPv4Address
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skopos._lru import LruCache
from skopos._tracking import client_ip as _client_ip
from skopos._tracking import identity as _identity
from skopos._tracking.client_ip import ResolvedIp, TrustedProxies, resolve_client_ip
from skopos._tracking.hosts import (
    _HOSTNAME,
    _looks_like_ip,
    _normalize_host,
    host_matches_domain,
    is_localhost,
    normalize_domain,
)
from skopos._tracking.identity import VisitorHasher, random_record_id
from skopos._tracking.ip_rules import IpBlacklist, normalize_ip
from skopos._tracking.payload import ValidPayload, validate_payload
from skopos._tracking.pipeline import Pipeline
from skopos._tracking.site_rules import SiteRules
from skopos._tracking.snapshot import MAX_HEADER_LENGTH, RequestSnapshot, take_snapshot
from tests import test_client_ip, test_payload

# -- ASGI snapshot ---------------------------------------------------------------------------


def test_scope_snapshot_decodes_values_as_latin1_and_cuts_long_ones() -> None:
    exact = b"a" * MAX_HEADER_LENGTH
    scope = {
        "type": "http",
        "headers": [
            (b"user-agent", exact),
            (b"accept-language", b"x" * (MAX_HEADER_LENGTH + 5)),
            (b"sec-ch-ua", bytearray(b"\xe9t\xe9")),
            (b"sec-fetch-mode", memoryview(b"cors")),  # not bytes: ignored, as before
        ],
    }
    snap = take_snapshot(scope)
    assert snap is not None
    assert snap.user_agent == exact.decode()
    assert snap.accept_language == "x" * MAX_HEADER_LENGTH
    assert snap.sec_ch_ua == "\xe9t\xe9"
    assert snap.sec_fetch_mode is None


def test_scope_snapshot_header_names_in_any_case_and_shape() -> None:
    scope = {
        "type": "http",
        "headers": [
            (b"X-Forwarded-For", b"1.1.1.1"),
            (bytearray(b"x-forwarded-for"), b"9.9.9.9"),  # unhashable: skipped
            (b"x-forwarded-for", b"2.2.2.2"),
            (b"X-REAL-IP", b"3.3.3.3"),
            ("user-agent", b"str names are not ASGI"),
            ("User-Agent", b"nor in upper case"),
            (b"Host", b"example.com"),
            (b"cf-connecting-ip", "not bytes"),
            None,
            (b"forwarded", b"for=4.4.4.4", b"extra"),
            [b"cf-ipcountry", b"DE"],
        ],
    }
    snap = take_snapshot(scope)
    assert snap is not None
    assert snap.x_forwarded_for == "1.1.1.1, 2.2.2.2"
    assert snap.x_real_ip == "3.3.3.3"
    assert snap.user_agent is None
    assert snap.cf_connecting_ip is None
    assert snap.forwarded is None
    assert snap.cf_ipcountry == "DE"


def test_scope_snapshot_joined_repeats_stay_bounded() -> None:
    half = b"b" * (MAX_HEADER_LENGTH - 10)
    snap = take_snapshot({"type": "http", "headers": [(b"x-real-ip", half)] * 3})
    assert snap is not None
    assert snap.x_real_ip is not None
    assert len(snap.x_real_ip) == MAX_HEADER_LENGTH
    assert snap.x_real_ip.startswith(half.decode() + ", bbb")


# -- host checks: memoised verdicts and the ipaddress short cut ------------------------------


def _corpus(test: object) -> list[tuple[object, ...]]:
    """The parametrized cases of a test in test_payload.py."""
    marks = [mark for mark in getattr(test, "pytestmark", []) if mark.name == "parametrize"]
    return [tuple(case) for case in marks[0].args[1]]


HOSTS = [case[0] for case in _corpus(test_payload.test_is_localhost)]
HOST_DOMAINS = [case[:2] for case in _corpus(test_payload.test_host_matches_domain)]
DOMAINS = [case[0] for case in _corpus(test_payload.test_normalize_domain)]


def _slow_verdict(host: str, domain: str | None) -> int:
    """What the pipeline decided before the memo, written out."""
    if is_localhost(host):
        return 0
    if domain and not host_matches_domain(host, domain):
        return 2
    return 1


def _pipeline() -> Pipeline:
    return Pipeline(SimpleNamespace(get=lambda tracking_id: None), VisitorHasher(b"s"))  # type: ignore[arg-type]


def test_memoised_host_verdicts_equal_the_slow_path_over_the_corpus() -> None:
    pipeline = _pipeline()
    hosts = [str(host) for host in HOSTS] + [str(host) for host, _ in HOST_DOMAINS]
    domains: list[str | None] = [None, ""]
    for domain in [*DOMAINS, *(domain for _, domain in HOST_DOMAINS)]:
        if isinstance(domain, str):
            domains += [domain, normalize_domain(domain)]  # site rules hold the normalised one
    for _ in range(2):  # cold, then from the memo
        for host in hosts:
            validated = validate_payload({"type": "pageView", "url": f"https://{host}/"})
            candidates = [host] + ([validated.host] if isinstance(validated, ValidPayload) else [])
            for candidate in candidates:
                for domain in domains:
                    expected = _slow_verdict(candidate, domain)
                    assert pipeline._host_verdict(candidate, domain) == expected, (host, domain)


def test_host_verdict_memo_is_bounded() -> None:
    pipeline = _pipeline()
    for number in range(pipeline._host_verdicts.maxsize + 50):
        pipeline._host_verdict(f"h{number}.example.com", "example.com")
    assert len(pipeline._host_verdicts) == pipeline._host_verdicts.maxsize


@given(st.text(st.sampled_from("0123456789abcdef.:[]%x-_ "), max_size=45) | st.text(max_size=20))
def test_only_ip_looking_hosts_can_be_ip_addresses(text: str) -> None:
    normalized = _normalize_host(text)
    if normalized is not None and not _looks_like_ip(normalized):
        assert normalize_ip(normalized) is None


@given(st.text(st.sampled_from("ab9_-."), max_size=70))
def test_hostname_pattern_is_every_label_matching(text: str) -> None:
    label = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
    expected = all(label.fullmatch(part) for part in text.split("."))
    assert bool(_HOSTNAME.fullmatch(text)) is expected


def test_hostname_pattern_label_lengths() -> None:
    assert _HOSTNAME.fullmatch("a" * 63 + ".com")
    assert not _HOSTNAME.fullmatch("a" * 64 + ".com")
    assert not _HOSTNAME.fullmatch("a..com")
    assert not _HOSTNAME.fullmatch("-a.com")


# -- client IP: the parsed-node cache ---------------------------------------------------------


def _resolve_all(cases: list[tuple[Any, ...]]) -> list[ResolvedIp]:
    return [resolve_client_ip(peer, headers, trusted) for _, peer, headers, trusted, *_ in cases]


def test_node_cache_gives_the_uncached_answers_over_the_corpus(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cases = test_client_ip.CASES
    cold_and_warm = [_resolve_all(cases), _resolve_all(cases)]
    monkeypatch.setattr(_client_ip, "_nodes", LruCache(0))
    uncached = _resolve_all(cases)
    assert cold_and_warm == [uncached, uncached]


@given(test_client_ip.peers, test_client_ip.header_maps, test_client_ip.configs)
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


def test_forwarding_headers_keep_their_order_and_skip_missing() -> None:
    snap = RequestSnapshot("1.2.3.4")
    assert snap.forwarding_headers() == {}
    snap.cf_connecting_ip, snap.forwarded, snap.x_forwarded_for = "c", "f", "x"
    assert list(snap.forwarding_headers().items()) == [
        ("x-forwarded-for", "x"),
        ("forwarded", "f"),
        ("cf-connecting-ip", "c"),
    ]


def test_blacklist_is_checked_on_the_resolved_address() -> None:
    listed = IpBlacklist(["203.0.113.7", "2001:db8::/32"])
    pipeline = _pipeline()
    for peer, blocked in [
        ("203.0.113.7", True),
        ("::ffff:203.0.113.7", True),
        ("[2001:db8::5]:443", True),
        ("203.0.113.8", False),
        ("not an address", False),
    ]:
        _, _, address = pipeline._client_ip(RequestSnapshot(peer))
        site = SiteRules("r" * 15, "t", None, False, False, False, listed)
        assert pipeline._blacklisted(site, address) is blocked, peer
        empty = SiteRules("r" * 15, "t", None, False, False, False, IpBlacklist(None))
        assert pipeline._blacklisted(empty, address) is False


# -- ids --------------------------------------------------------------------------------------


def _base36_reference(number: int) -> str:
    chars = []
    for _ in range(15):
        number, digit = divmod(number, 36)
        chars.append("abcdefghijklmnopqrstuvwxyz0123456789"[digit])
    return "".join(chars)


@given(st.integers(min_value=0, max_value=2**128 - 1))
def test_base36_in_pairs_is_digit_by_digit(number: int) -> None:
    assert _identity._base36(number) == _base36_reference(number)


def test_base36_edges() -> None:
    for number in (0, 35, 36, 1295, 1296, 36**14, 36**15 - 1, 36**15, 2**128 - 1):
        assert _identity._base36(number) == _base36_reference(number)


def test_visitor_id_is_the_hmac_hexdigest() -> None:
    hasher = VisitorHasher(b"salt")
    message = "site\x1f203.0.113.9\x1fMozilla \ud800".encode("utf-8", "surrogatepass")
    expected = hmac.new(b"salt", message, hashlib.sha256).hexdigest()[:32]
    assert hasher.visitor_id("site", "203.0.113.9", "Mozilla \ud800") == expected


def test_random_ids_are_distinct_and_use_every_character() -> None:
    ids = {random_record_id() for _ in range(20_000)}
    assert len(ids) == 20_000
    assert all(len(i) == 15 and i.isalnum() and i.isascii() and i == i.lower() for i in ids)
    counts = Counter("".join(ids))
    assert set(counts) == set("abcdefghijklmnopqrstuvwxyz0123456789")
    expected = 20_000 * 15 / 36
    assert all(0.8 * expected < count < 1.25 * expected for count in counts.values())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_never_repeats_the_parents_ids() -> None:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        try:
            os.close(read_end)
            os.write(write_end, " ".join(random_record_id() for _ in range(100)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    parent = {random_record_id() for _ in range(100)}
    with os.fdopen(read_end, "rb") as pipe:
        child = set(pipe.read().decode().split())
    os.waitpid(pid, 0)
    assert len(child) == 100
    assert not parent & child


def test_a_fork_that_bypassed_the_hook_reseeds_on_the_pid() -> None:
    generator = _identity._id_random
    state = generator._random.getstate()
    replay = random.Random()
    replay.setstate(state)
    generator._pid = -2  # as if this process were a fork the hook never saw
    assert generator.record_id() != replay.randbytes(15).translate(_identity._BYTE_TO_CHAR).decode()
    assert generator._pid == os.getpid()
