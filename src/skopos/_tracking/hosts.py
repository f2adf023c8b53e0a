"""Hosts and domains: normalising what browsers send and what people type in the dashboard.

Hosts are lowercased, stripped of port and trailing dot, IDN hosts converted to
punycode with the standard library's IDNA 2003 codec (browsers already send
punycode); IPv6 literals lose their brackets.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv6Address
from urllib.parse import urlsplit, urlunsplit

from skopos._tracking.ip_rules import normalize_ip

__all__ = [
    "host_matches_domain",
    "is_localhost",
    "normalize_domain",
    "normalize_hostname",
    "split_host_port",
    "traffic_source",
]

_MAX_INPUT_CHARS = 2048  # as long as a URL may be
_PORT = re.compile(r"[0-9]{0,5}")
_HOST_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
# Dot-separated labels in one match (a label holds no dot, so this is "every label matches").
_HOSTNAME = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*")
_IPV4_LIKE = re.compile(r"[0-9.]+")


def split_host_port(text: str) -> str | None:
    """The host of ``host``, ``host:port``, ``[v6]``, ``[v6]:port`` or a bare IPv6 address."""
    if text.startswith("["):
        inside, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not (rest[0] == ":" and _valid_port(rest[1:]))):
            return None
        return f"[{inside}]"
    if text.count(":") > 1:
        return text
    host, colon, port = text.partition(":")
    if colon and not _valid_port(port):
        return None
    return host


def _valid_port(port: str) -> bool:
    return bool(_PORT.fullmatch(port)) and (not port or int(port) <= 65535)


def normalize_hostname(text: str) -> str | None:
    """Lowercase ASCII hostname or IP literal (IPv6 without brackets), or None if invalid."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
        if ":" not in text:
            return None
    if ":" in text:
        if "%" in text:  # a zone id names an interface of the sender, not a host
            return None
        try:
            return str(IPv6Address(text))
        except ValueError:
            return None
    text = text.lower()
    if text.endswith("."):
        text = text[:-1]
    if not text or len(text) > 253:
        return None
    if not text.isascii():
        try:
            text = text.encode("idna").decode("ascii").lower()
        except UnicodeError:
            return None
        if len(text) > 253:
            return None
    if not _HOSTNAME.fullmatch(text):
        return None
    if _IPV4_LIKE.fullmatch(text):
        try:
            return str(IPv4Address(text))
        except ValueError:
            return None
    return text


def normalize_domain(domain: str) -> str | None:
    """Normalise a website's dashboard ``domain`` to a bare lowercase host, or None.

    Accepts what people type: a scheme, path, query, port, credentials, trailing dot, a
    leading ``*.`` and one leading ``www.`` are all removed, IDNs become punycode. Removing
    ``www.`` means a site configured as ``www.example.com`` also accepts ``example.com`` and
    its other subdomains -- the same owner, and the usual intent.

    Example::

        >>> normalize_domain("https://WWW.Example.com:8443/blog/")
        'example.com'
        >>> normalize_domain("bücher.de"), normalize_domain("not a domain")
        ('xn--bcher-kva.de', None)
    """
    if not isinstance(domain, str) or len(domain) > _MAX_INPUT_CHARS:
        return None
    text = domain.strip()
    scheme, separator, rest = text.partition("://")
    if separator and scheme.isalpha():
        text = rest
    text = text.removeprefix("//")
    text = re.split(r"[/?#]", text, maxsplit=1)[0]
    text = text.rpartition("@")[2]
    host_text = split_host_port(text)
    if host_text is None:
        return None
    host_text = host_text.removeprefix("*.")
    host = normalize_hostname(host_text)
    if host is not None and host.startswith("www.") and host.count(".") >= 2:
        host = host[4:]
    return host


def _looks_like_ip(normalized: str) -> bool:
    """Whether a normalised host can be an IP literal; others would only make ``ipaddress``
    raise twice. (IPv6 always has a colon; IPv4 is digits and dots; names have neither.)"""
    return ":" in normalized or _IPV4_LIKE.fullmatch(normalized) is not None


def _normalize_host(host: str) -> str | None:
    if not isinstance(host, str) or len(host) > _MAX_INPUT_CHARS:
        return None
    host_text = split_host_port(host.strip())
    return normalize_hostname(host_text) if host_text is not None else None


def host_matches_domain(host: str, domain: str) -> bool:
    """Whether an event's host belongs to the website's configured domain.

    True for the domain itself and its subdomains, compared case-insensitively after
    :func:`normalize_domain`; IP literals must match exactly. An empty or invalid domain
    matches nothing: whether to check at all when no domain is configured is the caller's
    policy.

    Example::

        >>> host_matches_domain("blog.example.com", "https://www.example.com/")
        True
        >>> host_matches_domain("badexample.com", "example.com")
        False
        >>> host_matches_domain("example.com.evil.net", "example.com")
        False
    """
    normalized_host = _normalize_host(host)
    normalized_domain = normalize_domain(domain)
    if normalized_host is None or normalized_domain is None:
        return False
    if normalized_host == normalized_domain:
        return True
    if _looks_like_ip(normalized_domain) and normalize_ip(normalized_domain) is not None:
        return False
    return normalized_host.endswith("." + normalized_domain)


def is_localhost(host: str) -> bool:
    """Whether a host is this machine: ``localhost``, ``*.localhost``, 127.0.0.0/8, ``::1``,
    ``0.0.0.0`` or ``::`` (a port, brackets and a trailing dot are fine).

    Example::

        >>> is_localhost("LOCALHOST:3000"), is_localhost("app.localhost"), is_localhost("[::1]")
        (True, True, True)
        >>> is_localhost("localhost.example.com")
        False
    """
    normalized = _normalize_host(host)
    if normalized is None:
        return False
    if normalized == "localhost" or normalized.endswith(".localhost"):
        return True
    if not _looks_like_ip(normalized):
        return False
    address = normalize_ip(normalized)
    return address is not None and (address.is_loopback or address.is_unspecified)


def traffic_source(referrer: str | None, site_domain: str | None) -> str:
    """The referrer as stored: without query or fragment (they may carry personal data),
    and empty for the site's own pages, which are navigation, not a source.

    >>> traffic_source("https://news.example.org/a?token=x#y", "example.com")
    'https://news.example.org/a'
    >>> traffic_source("https://www.example.com/pricing", "example.com")
    ''
    """
    if not referrer:
        return ""
    parts = urlsplit(referrer)
    host = parts.hostname or ""
    if site_domain and host_matches_domain(host, site_domain):
        return ""
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
