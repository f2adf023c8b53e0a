"""Which client IP address to believe, given the peer address and forwarding headers.

By default the peer address the server saw (``REMOTE_ADDR`` / the ASGI ``client``) is the
client, and forwarding headers are ignored: anyone can send ``X-Forwarded-For``. Only when
the peer is one of the configured :class:`TrustedProxies` are headers read, in this order:

1. ``CF-Connecting-IP`` -- only when "cloudflare" is configured and the peer itself is a
   Cloudflare edge address (Cloudflare overwrites that header, so it is authoritative).
2. ``Forwarded`` (RFC 7239) -- its ``for=`` nodes, walked from the right.
3. ``X-Forwarded-For`` -- walked from the right.
4. ``X-Real-IP``.

Walking from the right: each proxy appends the address it received the request from, so
everything right of the first untrusted hop was written by proxies we trust, and that
first untrusted hop is the client. Anything left of it is whatever the client claimed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from skopos._lru import LruCache
from skopos._tracking.ip_rules import IPAddress, IPNetwork, IpRangeSet, normalize_ip, parse_network

__all__ = [
    "CLOUDFLARE_RANGES",
    "FORWARDING_HEADERS",
    "MAX_HEADER_CHARS",
    "MAX_HOPS",
    "PRESETS",
    "PRIVATE_RANGES",
    "ResolvedIp",
    "TrustedProxies",
    "resolve_client_ip",
]

# RFC 1918, loopback, link-local and unique-local: where a reverse proxy on the same host,
# in the same VPC or in a container network connects from.
PRIVATE_RANGES: tuple[str, ...] = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "::1/128",
    "fe80::/10",
    "fc00::/7",
)

# Cloudflare's published edge ranges, as listed at https://www.cloudflare.com/ips-v4 and
# https://www.cloudflare.com/ips-v6 (unchanged since 2023-06; checked 2025-11). There is no
# network at runtime to refresh them: update this list when Cloudflare announces a change.
CLOUDFLARE_RANGES: tuple[str, ...] = (
    "173.245.48.0/20",
    "103.21.244.0/22",
    "103.22.200.0/22",
    "103.31.4.0/22",
    "141.101.64.0/18",
    "108.162.192.0/18",
    "190.93.240.0/20",
    "188.114.96.0/20",
    "197.234.240.0/22",
    "198.41.128.0/17",
    "162.158.0.0/15",
    "104.16.0.0/13",
    "104.24.0.0/14",
    "172.64.0.0/13",
    "131.0.72.0/22",
    "2400:cb00::/32",
    "2606:4700::/32",
    "2803:f800::/32",
    "2405:b500::/32",
    "2405:8100::/32",
    "2a06:98c0::/29",
    "2c0f:f248::/32",
)

# "unix" has no ranges: it trusts a peer that is not an IP address at all, which is what a
# reverse proxy connecting over a Unix domain socket looks like (uvicorn reports no client,
# WSGI servers an empty REMOTE_ADDR or the socket path).
PRESETS: Mapping[str, tuple[str, ...]] = {
    "private": PRIVATE_RANGES,
    "cloudflare": CLOUDFLARE_RANGES,
    "unix": (),
}

# The (lowercase) header names the request snapshot should copy for resolve_client_ip.
FORWARDING_HEADERS: tuple[str, ...] = (
    "forwarded",
    "x-forwarded-for",
    "x-real-ip",
    "cf-connecting-ip",
)

# More hops than any real proxy chain; beyond this only the rightmost are looked at.
MAX_HOPS = 30
# Headers longer than this are cut to their rightmost part (the part trusted proxies wrote).
MAX_HEADER_CHARS = 4096
_MAX_NODE_CHARS = 100

_PRESET_NAME = re.compile(r"[A-Za-z][A-Za-z_-]*")
_PORT = re.compile(r"[0-9]{1,5}|_[A-Za-z0-9._-]+")
# Tokens of a Forwarded header. Every alternative consumes at least one character and an
# unterminated quoted string runs to the end, so scanning is linear with no backtracking.
_FORWARDED_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"?|[,;=]|[^,;="\s]+|\s+', re.DOTALL)
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
# Parsed peers and hops by their exact text: visitors come back, and ``ipaddress`` costs a few
# µs a parse. Addresses are immutable, so sharing them is safe. Unparseable text is not kept.
_NODE_CACHE_SIZE = 8192
_nodes: LruCache[str, IPAddress] = LruCache(_NODE_CACHE_SIZE)

Source = Literal["peer", "cf-connecting-ip", "forwarded", "x-forwarded-for", "x-real-ip", "error"]


class TrustedProxies:
    """The proxies whose forwarding headers we believe, fixed at configuration time.

    Built from addresses, CIDR ranges (host bits may be set) and preset names:
    ``"private"`` (:data:`PRIVATE_RANGES`), ``"cloudflare"`` (:data:`CLOUDFLARE_RANGES`, and
    honour ``CF-Connecting-IP`` from them) and ``"unix"`` (trust a peer that is not an IP
    address: a local proxy on a Unix socket). A single string is split on commas and
    whitespace, handy for an environment variable. Anything unknown or invalid raises
    ``ValueError`` -- this runs at ``init``, where failing fast is right.

    Example::

        >>> trusted = TrustedProxies(["private", "203.0.113.0/24"])
        >>> trusted.is_trusted(normalize_ip("10.0.0.5")), trusted.is_trusted(None)
        (True, False)
        >>> TrustedProxies("cloudflare, unix").cloudflare
        True
        >>> TrustedProxies(["cloudfare"])
        Traceback (most recent call last):
        ...
        ValueError: unknown trusted proxy preset 'cloudfare' (known: cloudflare, private, unix)
    """

    __slots__ = ("_cloudflare", "_cloudflare_ranges", "_ranges", "_unix", "entries")

    def __init__(self, proxies: str | Iterable[str] = ()) -> None:
        items = re.split(r"[\s,]+", proxies) if isinstance(proxies, str) else list(proxies)
        networks: list[IPNetwork] = []
        presets: set[str] = set()
        entries: list[str] = []
        for item in items:
            if not isinstance(item, str):
                raise ValueError(f"trusted proxy entries must be strings, got {type(item)!r}")
            text = item.strip()
            if not text:
                continue
            if _PRESET_NAME.fullmatch(text):
                name = text.lower()
                if name not in PRESETS:
                    known = ", ".join(sorted(PRESETS))
                    raise ValueError(f"unknown trusted proxy preset {text!r} (known: {known})")
                presets.add(name)
                networks.extend(_parse_all(PRESETS[name]))
                entries.append(name)
                continue
            network = parse_network(text)
            if network is None:
                raise ValueError(
                    f"invalid trusted proxy {text[:64]!r}: expected an IP address, "
                    "a CIDR range or a preset name"
                )
            networks.append(network)
            entries.append(str(network))
        self._ranges = IpRangeSet(networks)
        self._cloudflare = "cloudflare" in presets
        self._cloudflare_ranges = IpRangeSet(
            _parse_all(CLOUDFLARE_RANGES) if self._cloudflare else ()
        )
        self._unix = "unix" in presets
        self.entries: tuple[str, ...] = tuple(entries)

    @property
    def cloudflare(self) -> bool:
        """Whether the "cloudflare" preset is configured."""
        return self._cloudflare

    def is_trusted(self, ip: IPAddress | None) -> bool:
        """Whether a peer or hop is a trusted proxy; None (not an IP) only with "unix"."""
        if ip is None:
            return self._unix
        return ip in self._ranges

    def is_cloudflare_edge(self, ip: IPAddress | None) -> bool:
        """Whether ``ip`` is a Cloudflare edge address and "cloudflare" is configured."""
        return ip is not None and ip in self._cloudflare_ranges

    def __bool__(self) -> bool:
        return bool(self.entries)

    def __repr__(self) -> str:
        return f"TrustedProxies({list(self.entries)!r})"


def _parse_all(cidrs: Iterable[str]) -> list[IPNetwork]:
    parsed = [parse_network(cidr) for cidr in cidrs]
    return [network for network in parsed if network is not None]


@dataclass(frozen=True, slots=True)
class ResolvedIp:
    """The outcome of :func:`resolve_client_ip`.

    ``ip`` is the normalised client address, or None when it cannot be known (no usable
    peer, or a trusted proxy reported ``unknown``/an obfuscated identifier). ``spoof_attempt``
    is True when a peer we do not trust sent forwarding headers, which were ignored; with
    no trusted proxies configured, a steady stream of these usually means the app runs
    behind a proxy that should be configured. ``source`` says where ``ip`` came from.

    Example::

        >>> resolve_client_ip("198.51.100.4", {"x-forwarded-for": "1.2.3.4"}, TrustedProxies())
        ResolvedIp(ip=IPv4Address('198.51.100.4'), spoof_attempt=True, source='peer')
    """

    ip: IPAddress | None
    spoof_attempt: bool = False
    source: Source = "peer"


def resolve_client_ip(
    peer: str | None, headers: Mapping[str, str], trusted: TrustedProxies
) -> ResolvedIp:
    """Decide the client address for one request; never raises.

    ``peer`` is the address the server accepted the connection from (a port, brackets or
    an IPv4-mapped form are fine); ``headers`` maps lowercase names to values, and only
    :data:`FORWARDING_HEADERS` are read (repeated headers joined with ", " as frameworks do).

    Example::

        >>> trusted = TrustedProxies(["private"])
        >>> resolve_client_ip(
        ...     "10.0.0.2", {"x-forwarded-for": "6.6.6.6, 203.0.113.9, 10.0.0.1"}, trusted
        ... ).ip
        IPv4Address('203.0.113.9')
    """
    try:
        return _resolve(peer, headers, trusted)
    except Exception:  # a malformed request must never break the worker
        return ResolvedIp(None, False, "error")


def _resolve(peer: str | None, headers: Mapping[str, str], trusted: TrustedProxies) -> ResolvedIp:
    peer_ip = _parse_node(peer) if isinstance(peer, str) else None
    if not trusted.is_trusted(peer_ip):
        sent_headers = bool(headers) and any(
            _header(headers, name) is not None for name in FORWARDING_HEADERS
        )
        return ResolvedIp(peer_ip, sent_headers, "peer")

    if trusted.is_cloudflare_edge(peer_ip):
        cf_value = _header(headers, "cf-connecting-ip")
        cf_ip = _parse_node(_last_item(cf_value)) if cf_value is not None else None
        if cf_ip is not None:
            return ResolvedIp(cf_ip, False, "cf-connecting-ip")

    forwarded = _header(headers, "forwarded")
    if forwarded is not None:
        hops, truncated = _forwarded_hops(forwarded)
        if hops:
            return ResolvedIp(_walk(hops, truncated, trusted), False, "forwarded")

    x_forwarded_for = _header(headers, "x-forwarded-for")
    if x_forwarded_for is not None:
        hops, truncated = _x_forwarded_for_hops(x_forwarded_for)
        if hops:
            return ResolvedIp(_walk(hops, truncated, trusted), False, "x-forwarded-for")

    real_ip = _header(headers, "x-real-ip")
    if real_ip is not None:
        return ResolvedIp(_parse_node(_last_item(real_ip)), False, "x-real-ip")

    return ResolvedIp(peer_ip, False, "peer")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value: object = headers.get(name)
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("latin-1")
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value:
        return None
    if len(value) > MAX_HEADER_CHARS:
        value = value[-MAX_HEADER_CHARS:]
    return value


def _last_item(value: str) -> str:
    # A header sent twice arrives comma-joined; the last copy is the one our proxy set.
    return value.rpartition(",")[2]


def _walk(
    hops: list[IPAddress | None], truncated: bool, trusted: TrustedProxies
) -> IPAddress | None:
    for hop in reversed(hops):
        # None is a hop we cannot identify ("unknown", obfuscated, garbage): the client
        # is on the far side of it, so it is unknown too. Never skip it: skipping would
        # let whatever stands left of it -- client-controlled text -- become the answer.
        if hop is None or not trusted.is_trusted(hop):
            return hop
    # Every hop is a trusted proxy: the leftmost is as close to the client as we get,
    # unless we cut the list short and never saw the real leftmost.
    return None if truncated else hops[0]


def _x_forwarded_for_hops(value: str) -> tuple[list[IPAddress | None], bool]:
    parts = value.rsplit(",", MAX_HOPS)
    truncated = len(parts) > MAX_HOPS
    if truncated:
        parts = parts[1:]
    hops = [_parse_node(part) for part in parts if part.strip()]
    return hops, truncated


def _forwarded_hops(value: str) -> tuple[list[IPAddress | None], bool]:
    """The ``for=`` node of each element of a Forwarded header, left to right.

    Elements without ``for=`` (e.g. only ``proto=``) are not hops and are left out; an
    element with a malformed or repeated ``for=`` is a hop we cannot identify (None).
    """
    elements: list[list[list[str]]] = [[[]]]  # elements -> pairs -> tokens
    for match in _FORWARDED_TOKEN.finditer(value):
        token = match.group()
        if token == ",":
            elements.append([[]])
        elif token == ";":
            elements[-1].append([])
        elif not token.isspace():
            elements[-1][-1].append(token)
    hops: list[IPAddress | None] = []
    for element in elements:
        for_values: list[str | None] = []
        for pair in element:
            if len(pair) >= 1 and pair[0].lower() == "for":
                for_values.append(pair[2] if len(pair) == 3 and pair[1] == "=" else None)
        if not for_values:
            continue
        node = for_values[0] if len(for_values) == 1 else None
        hops.append(_parse_node(_unquote(node)) if node is not None else None)
    truncated = len(hops) > MAX_HOPS
    return (hops[-MAX_HOPS:] if truncated else hops), truncated


def _unquote(token: str) -> str:
    if len(token) >= 2 and token[0] == '"' and token[-1] == '"':
        return _QUOTED_PAIR.sub(r"\1", token[1:-1])
    return token


def _parse_node(value: str) -> IPAddress | None:
    """An address from a peer or a hop: ``1.2.3.4``, ``1.2.3.4:80``, ``[2001:db8::1]:443``,
    bare ``2001:db8::1``, ``"quoted"``; None for ``unknown``, ``_obfuscated`` and garbage."""
    key = str.__str__(value)  # a str subclass must not bring its own __eq__/__hash__ here
    address = _nodes.get(key)
    if address is None:
        address = _parse_node_text(key)
        if address is not None and len(key) <= 2 * _MAX_NODE_CHARS:
            _nodes.put(key, address)
    return address


def _parse_node_text(value: str) -> IPAddress | None:
    text = value.strip().strip('"').strip()
    if not text or len(text) > _MAX_NODE_CHARS:
        return None
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not (rest.startswith(":") and _PORT.fullmatch(rest[1:]))):
            return None
        return normalize_ip(host)
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        if not _PORT.fullmatch(port):
            return None
        text = host
    return normalize_ip(text)
