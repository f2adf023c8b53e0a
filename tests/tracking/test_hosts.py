"""Hosts and domains: normalising what browsers send and what people type, matching a host to a
site's domain, recognising localhost."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skopos._tracking.hosts import (
    _HOSTNAME,
    _looks_like_ip,
    _normalize_host,
    host_matches_domain,
    is_localhost,
    normalize_domain,
)
from skopos._tracking.ip_rules import normalize_ip
from tests._support.host_cases import HOST_MATCHES_DOMAIN, IS_LOCALHOST, NORMALIZE_DOMAIN


@pytest.mark.parametrize(("domain", "expected"), NORMALIZE_DOMAIN)
def test_normalize_domain(domain: object, expected: str | None) -> None:
    assert normalize_domain(domain) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(("host", "domain", "expected"), HOST_MATCHES_DOMAIN)
def test_host_matches_domain(host: str, domain: str, expected: bool) -> None:
    assert host_matches_domain(host, domain) is expected


@given(st.text(max_size=40), st.text(max_size=40))
def test_host_matches_domain_never_raises(host: str, domain: str) -> None:
    assert isinstance(host_matches_domain(host, domain), bool)
    assert isinstance(is_localhost(host), bool)


dns_labels = st.text(st.sampled_from("abcxyz019-"), min_size=1, max_size=8).filter(
    lambda label: label[0] != "-" and label[-1] != "-"
)


@given(
    st.lists(dns_labels, min_size=1, max_size=3).map(lambda labels: ".".join([*labels, "com"])),
    dns_labels,
)
def test_every_subdomain_matches_and_lookalikes_do_not(domain: str, label: str) -> None:
    if domain.startswith("www."):
        return
    assert host_matches_domain(domain, domain)
    assert host_matches_domain(f"{label}.{domain}", domain)
    assert not host_matches_domain(f"{label}{domain}", domain)
    assert not host_matches_domain(f"{domain}.{label}", domain)


@pytest.mark.parametrize(("host", "expected"), IS_LOCALHOST)
def test_is_localhost(host: str, expected: bool) -> None:
    assert is_localhost(host) is expected


# -- the ipaddress short cut and the hostname pattern -----------------------------------------


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
