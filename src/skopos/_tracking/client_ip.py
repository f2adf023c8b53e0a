"""Which client IP address to believe, given the peer address and forwarding headers.

By default the peer address the server saw (``REMOTE_ADDR`` / the ASGI ``client``) is the
client, and forwarding headers are ignored: anyone can send ``X-Forwarded-For``. Only when
the peer is one of the configured :class:`TrustedProxies` is a header read, and only one:
the header those proxies set (``client_ip_header``, default ``X-Forwarded-For``; see
:data:`HEADER_PRESETS` for what nginx, Caddy, Traefik, Cloudflare and AWS ALB set). Every
other forwarding header is whatever the client sent, passed on by the proxy: reading it
would let the client choose its address. The exception is ``CF-Connecting-IP`` from a
Cloudflare edge address when "cloudflare" is trusted: Cloudflare overwrites it.

``X-Forwarded-For`` and ``Forwarded`` (RFC 7239, its ``for=`` nodes) are walked from the
right: each proxy appends the address it received the request from, so everything right of
the first untrusted hop was written by proxies we trust, and that first untrusted hop is
the client. Anything left of it is whatever the client claimed. A header cut to its last
:data:`MAX_HEADER_CHARS` (``keep_tail``) says so with an unknown hop where the cut was.

Behind a trusted proxy, a named header that is missing, empty or names no usable address
gives no client IP at all (never the proxy's own address): ``ResolvedIp.unresolved``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from skopos._lru import LruCache
from skopos._tracking.ip_rules import IPAddress, IPNetwork, IpRangeSet, normalize_ip, parse_network

__all__ = [
    "CLIENT_IP_HEADERS",
    "CLOUDFLARE_RANGES",
    "FORWARDING_HEADERS",
    "HEADER_PRESETS",
    "MAX_HEADER_CHARS",
    "MAX_HOPS",
    "PRESETS",
    "PRIVATE_RANGES",
    "ResolvedIp",
    "TrustedProxies",
    "client_ip_header",
    "keep_tail",
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

# The (lowercase) header names the request snapshot should copy for resolve_client_ip: the
# one list of forwarding header names.
FORWARDING_HEADERS: tuple[str, ...] = (
    "forwarded",
    "x-forwarded-for",
    "x-real-ip",
    "cf-connecting-ip",
)
# What ``client_ip_header`` may name: each of them, or a preset.
CLIENT_IP_HEADERS = FORWARDING_HEADERS
# The header each reverse proxy sets, as it is usually configured: nginx sets nothing on its
# own (``proxy_set_header X-Real-IP $remote_addr;`` is its documented way; with
# ``X-Forwarded-For $proxy_add_x_forwarded_for`` use the default instead); Caddy, Traefik and
# AWS's Application Load Balancer append to X-Forwarded-For; Cloudflare sets
# CF-Connecting-IP.
HEADER_PRESETS: Mapping[str, str] = {
    "nginx": "x-real-ip",
    "caddy": "x-forwarded-for",
    "traefik": "x-forwarded-for",
    "aws-alb": "x-forwarded-for",
    "cloudflare": "cf-connecting-ip",
}

# More hops than any real proxy chain; beyond this only the rightmost are looked at.
MAX_HOPS = 30
# Headers longer than this are cut to their rightmost part (the part trusted proxies wrote).
MAX_HEADER_CHARS = 4096
# Stands for what ``keep_tail`` cut off: an unknown hop in both header syntaxes.
_CUT_MARK = "for=unknown,"
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


def client_ip_header(name: str) -> str:
    """The header name ``client_ip_header`` means: one of :data:`CLIENT_IP_HEADERS` or a
    preset of :data:`HEADER_PRESETS`, any case; ``ValueError`` otherwise.

    >>> client_ip_header("X-Real-IP"), client_ip_header("caddy")
    ('x-real-ip', 'x-forwarded-for')
    >>> client_ip_header("x-client-ip")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: unknown client_ip_header 'x-client-ip' (headers: forwarded, ...)
    """
    key = name.strip().lower()
    if key in CLIENT_IP_HEADERS:
        return key
    if key in HEADER_PRESETS:
        return HEADER_PRESETS[key]
    raise ValueError(
        f"unknown client_ip_header {name[:64]!r} (headers: {', '.join(CLIENT_IP_HEADERS)};"
        f" presets: {', '.join(HEADER_PRESETS)})"
    )


def keep_tail(value: str, limit: int = MAX_HEADER_CHARS) -> str:
    """A forwarding header cut to about its last ``limit`` characters, the part our own
    proxies appended, with an unknown hop standing for what was cut (never a partial
    address: the cut goes on to the next comma).

    >>> keep_tail("6.6.6.6, 6.6.6.6, 203.0.113.9, 10.0.0.2", 25)
    'for=unknown, 203.0.113.9, 10.0.0.2'
    """
    if len(value) <= limit:
        return value
    _, comma, rest = value[len(value) - limit :].partition(",")
    return _CUT_MARK + rest if comma else _CUT_MARK[:-1]


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
    peer, or a trusted proxy's header missing or naming ``unknown``, an obfuscated
    identifier or garbage). ``spoof_attempt`` is True when a peer we do not trust sent
    forwarding headers that were ignored (not when they name that peer: a server that
    applies proxy headers itself, as uvicorn does, leaves them in place); a steady stream of
    these usually means the app runs behind a proxy that should be configured. ``source``
    says where ``ip`` came from: ``peer``, or the header read.

    Example::

        >>> resolve_client_ip("198.51.100.4", {"x-forwarded-for": "1.2.3.4"}, TrustedProxies())
        ResolvedIp(ip=IPv4Address('198.51.100.4'), spoof_attempt=True, source='peer')
    """

    ip: IPAddress | None
    spoof_attempt: bool = False
    source: Source = "peer"

    @property
    def unresolved(self) -> bool:
        """Behind a trusted proxy, but no usable client address (a blacklist cannot apply).

        >>> resolve_client_ip("10.0.0.1", {}, TrustedProxies("private")).unresolved
        True
        """
        return self.ip is None and self.source != "peer"


def resolve_client_ip(
    peer: str | None,
    headers: Mapping[str, str],
    trusted: TrustedProxies,
    header: str = "x-forwarded-for",
) -> ResolvedIp:
    """Decide the client address for one request; never raises.

    ``peer`` is the address the server accepted the connection from (a port, brackets or
    an IPv4-mapped form are fine); ``headers`` maps lowercase names to values (repeated
    headers joined with ", " as frameworks do); ``header`` is the one a trusted peer's
    address is read from (a name of :data:`CLIENT_IP_HEADERS`).

    Example::

        >>> trusted = TrustedProxies(["private"])
        >>> resolve_client_ip(
        ...     "10.0.0.2", {"x-forwarded-for": "6.6.6.6, 203.0.113.9, 10.0.0.1"}, trusted
        ... ).ip
        IPv4Address('203.0.113.9')
        >>> resolve_client_ip("10.0.0.2", {"forwarded": "for=6.6.6.6"}, trusted)
        ResolvedIp(ip=None, spoof_attempt=False, source='x-forwarded-for')
    """
    try:
        return _resolve(peer, headers, trusted, header)
    except Exception:  # a malformed request must never break the worker
        return ResolvedIp(None, False, "error")


def _resolve(
    peer: str | None, headers: Mapping[str, str], trusted: TrustedProxies, header: str
) -> ResolvedIp:
    peer_ip = _parse_node(peer) if isinstance(peer, str) else None
    if not trusted.is_trusted(peer_ip):
        return ResolvedIp(peer_ip, bool(headers) and _spoofed(headers, peer_ip), "peer")

    if trusted.is_cloudflare_edge(peer_ip):
        cf_value = _header(headers, "cf-connecting-ip")
        cf_ip = _parse_node(_last_item(cf_value)) if cf_value is not None else None
        if cf_ip is not None:
            return ResolvedIp(cf_ip, False, "cf-connecting-ip")

    source: Source
    if header == "forwarded":
        source = "forwarded"
        value = _header(headers, "forwarded")
        if value is None:
            return ResolvedIp(None, False, source)
        hops, truncated = _forwarded_hops(value)
        return ResolvedIp(_walk(hops, truncated, trusted) if hops else None, False, source)
    if header in ("x-real-ip", "cf-connecting-ip"):
        source = "x-real-ip" if header == "x-real-ip" else "cf-connecting-ip"
        value = _header(headers, header)
        return ResolvedIp(_parse_node(_last_item(value)) if value else None, False, source)
    source = "x-forwarded-for"
    value = _header(headers, "x-forwarded-for")
    if value is None:
        return ResolvedIp(None, False, source)
    hops, truncated = _x_forwarded_for_hops(value)
    return ResolvedIp(_walk(hops, truncated, trusted) if hops else None, False, source)


def _spoofed(headers: Mapping[str, str], peer_ip: IPAddress | None) -> bool:
    """Whether an untrusted peer sent forwarding headers that do not name it.

    A server that resolved them itself (uvicorn's ``--proxy-headers``, on by default for
    127.0.0.1; Werkzeug's ``ProxyFix``) passes the client's address as the peer and leaves
    the headers as they came, naming it: that is no attempt, and the peer is the client.
    """
    sent = False
    for name in FORWARDING_HEADERS:
        value = _header(headers, name)
        if value is None:
            continue
        sent = True
        if peer_ip is None:
            continue
        if name == "forwarded":
            named = _forwarded_hops(value)[0]
        elif name == "x-forwarded-for":
            named = _x_forwarded_for_hops(value)[0]
        else:
            named = [_parse_node(_last_item(value))]
        if peer_ip in named:
            return False
    return sent


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value: object = headers.get(name)
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("latin-1")
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value:
        return None
    return keep_tail(value)


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
