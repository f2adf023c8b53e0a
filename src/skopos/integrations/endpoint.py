"""The event endpoints and the client script, independent of any framework.

The endpoint ``skopos.js`` posts to (and ``/collect``, where the official client script
posts: the same rules, see below):

- accepts ``POST`` with ``application/json`` or ``text/plain`` (sendBeacon) bodies,
  at most ``max_body_bytes`` (16 KiB; larger: 413, judged from Content-Length
  before anything is read; a Content-Length that is not ASCII digits: 400);
- answers ``204`` at once: the body is queued unparsed, validation happens in the
  SDK's background worker;
- answers CORS preflights and adds CORS headers for ``cors_origins`` (none by
  default: same-origin only; ``"*"`` allows any);
- ``405`` for other methods, ``415`` for other content types.

The client script is served with a strong ETag, ``304`` on a match, and
``Cache-Control: public, max-age=604800`` (a week; revalidation after an upgrade
is cheap).

Adapters call ``precheck`` with the method and headers, read the body (at most
``limit + 1`` bytes) only if it returns None, then call ``accept``.

``/collect`` (``collect_path``; None: not served) is where the official Skopos client
script (``skopos.min.js`` 1.3, ``data-host`` pointing at this app) posts its messages. It
follows the same rules through the same ``precheck`` (``application/json`` is what that
script sends, beacons included), and ``accept_collect`` queues the raw body for
``SkoposSDK.track_collect``. Its CORS origins are ``cors_origins`` and, as the dashboard's
own collector allows them, the pages of the sites it accepts (``site_hosts``: their domain,
with and without ``www.``, any scheme or port), so that changing ``data-host`` is all a site
has to do. ``GET <collect_path>/health`` answers ``{"status": "ok", "timestamp": ms}``.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from importlib import resources
from urllib.parse import urlsplit

from skopos._exceptions import ConfigurationError
from skopos._sdk import SkoposSDK

__all__ = [
    "DEFAULT_COLLECT_PATH",
    "DEFAULT_EVENT_PATH",
    "DEFAULT_SCRIPT_PATH",
    "Accept",
    "EndpointConfig",
    "Response",
    "accept",
    "accept_collect",
    "client_script",
    "collect_health",
    "collect_precheck",
    "content_length",
    "precheck",
    "script_response",
    "site_hosts",
]

DEFAULT_EVENT_PATH = "/api/event"
DEFAULT_SCRIPT_PATH = "/skopos.js"
DEFAULT_COLLECT_PATH = "/collect"
HEALTH_SUFFIX = "/health"
NO_HOSTS: frozenset[str] = frozenset()
_ACCEPTED_TYPES = frozenset({"application/json", "text/plain"})
_SCRIPT_CACHE_CONTROL = "public, max-age=604800"
# ASCII digits only: str.isdigit() also accepts "²" (int() refuses it) and other scripts'
# digits (int() reads them).
_LENGTH = re.compile(r"[0-9]{1,19}")


@dataclass(frozen=True)
class Response:
    """A framework-neutral HTTP answer."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


@dataclass(frozen=True)
class EndpointConfig:
    """How the endpoint behaves; the defaults suit a same-origin ``skopos.js``.

    Validated when built (``ConfigurationError``): paths start with ``/`` (``script_path``
    and ``collect_path`` may be None: no such route), ``max_body_bytes`` is a positive int,
    ``cors_origins`` a list of origins or one comma-separated string (a bare string is never
    matched as a substring).

    Example::

        EndpointConfig(cors_origins=["https://www.example.com"], max_body_bytes=8192)
    """

    event_path: str = DEFAULT_EVENT_PATH
    script_path: str | None = DEFAULT_SCRIPT_PATH
    max_body_bytes: int = 16 * 1024
    cors_origins: Sequence[str] = ()
    collect_path: str | None = DEFAULT_COLLECT_PATH

    def __post_init__(self) -> None:
        for name in ("event_path", "script_path", "collect_path"):
            path = getattr(self, name)
            if not (isinstance(path, str) and path.startswith("/")) and not (
                name != "event_path" and path is None
            ):
                raise ConfigurationError(f"{name} must be a path starting with '/', got {path!r}")
        if self.collect_path is not None and self.collect_path in (
            self.event_path,
            self.script_path,
        ):
            raise ConfigurationError(
                f"collect_path {self.collect_path!r} is the path of another endpoint"
            )
        size = self.max_body_bytes
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigurationError(f"max_body_bytes must be a positive int, got {size!r}")
        origins: object = self.cors_origins or ()
        items = origins.split(",") if isinstance(origins, str) else origins
        if not isinstance(items, Iterable):
            raise ConfigurationError(f"cors_origins must be a list of origins, got {origins!r}")
        cleaned = tuple(str(item).strip() for item in items if str(item).strip())
        object.__setattr__(self, "cors_origins", cleaned)

    def allowed_origin(self, origin: str | None) -> str | None:
        """The value for Access-Control-Allow-Origin, or None when not allowed."""
        if not origin or not self.cors_origins:
            return None
        if "*" in self.cors_origins:
            return "*"
        return origin if origin in self.cors_origins else None

    @cached_property  # read on every request the middlewares see; a frozen dataclass has a dict
    def health_path(self) -> str | None:
        """``collect_path`` + ``/health`` (None when ``/collect`` is not served)."""
        return None if self.collect_path is None else self.collect_path + HEALTH_SUFFIX


def origin_host(origin: str) -> str | None:
    """The host of an ``Origin`` header (``https://www.example.com:8443`` →
    ``www.example.com``), lower case; None for anything but an http(s) origin.

    >>> origin_host("https://WWW.Example.com:8443"), origin_host("null")
    ('www.example.com', None)
    """
    try:
        parts = urlsplit(origin)
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or parts.path or parts.query or not host:
        return None
    return host


def _cors_headers(
    config: EndpointConfig, headers: Mapping[str, str], site_hosts: frozenset[str] = NO_HOSTS
) -> list[tuple[str, str]]:
    origin = headers.get("origin")
    if not origin or not (config.cors_origins or site_hosts):
        return []
    return list(_cors_answer(origin, config.cors_origins, site_hosts))


@lru_cache(maxsize=512)
def _cors_answer(
    origin: str, cors_origins: Sequence[str], site_hosts: frozenset[str]
) -> tuple[tuple[str, str], ...]:
    """The CORS headers for ``origin``. Memoised (bounded: origins come from anyone): a
    site's pages send a handful of origins, and deciding costs about as much as the rest of
    a request's checks."""
    if "*" in cors_origins:
        return (("Access-Control-Allow-Origin", "*"),)
    if origin in cors_origins or (
        site_hosts and ("*" in site_hosts or origin_host(origin) in site_hosts)
    ):
        return (("Access-Control-Allow-Origin", origin), ("Vary", "Origin"))
    return ()


def content_length(headers: Mapping[str, str]) -> int | None:
    """The request's Content-Length: None when absent, -1 when malformed.

    >>> content_length({"content-length": " 42 "}), content_length({})
    (42, None)
    >>> content_length({"content-length": "\u00b2"}), content_length({"content-length": "-1"})
    (-1, -1)
    """
    value = headers.get("content-length")
    if value is None or value == "":
        return None
    text = value.strip() if isinstance(value, str) else ""
    return int(text) if _LENGTH.fullmatch(text) else -1


def precheck(
    config: EndpointConfig,
    method: str,
    headers: Mapping[str, str],
    site_hosts: frozenset[str] = NO_HOSTS,
) -> Response | None:
    """Answer without reading the body (preflight, wrong method/type, a bad or too large
    Content-Length), or None. Never raises, whatever the headers hold.

    ``headers`` maps lower-case names to values. ``site_hosts``: for ``/collect``, the
    hosts whose pages CORS allows besides ``cors_origins`` (``SkoposSDK.collect_origin_hosts``).
    """
    cors = _cors_headers(config, headers, site_hosts)
    if method == "OPTIONS":
        if not cors:
            return Response(204, [("Allow", "POST, OPTIONS")])
        return Response(
            204,
            [
                *cors,
                ("Access-Control-Allow-Methods", "POST, OPTIONS"),
                ("Access-Control-Allow-Headers", "Content-Type"),
                ("Access-Control-Max-Age", "86400"),
            ],
        )
    if method != "POST":
        return Response(405, [("Allow", "POST, OPTIONS"), *cors])
    media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type and media_type not in _ACCEPTED_TYPES:
        return Response(415, cors)
    length = content_length(headers)
    if length is not None and length < 0:
        return Response(400, cors)
    if length is not None and length > config.max_body_bytes:
        return Response(413, cors)
    return None


# ``accept`` or ``accept_collect``: what an adapter hands a body it read.
Accept = Callable[[EndpointConfig, SkoposSDK, object, Mapping[str, str], bytes], Response]


def accept(
    config: EndpointConfig,
    sdk: SkoposSDK,
    request: object,
    headers: Mapping[str, str],
    body: bytes,
) -> Response:
    """Queue ``body`` for tracking and answer 204 (413 if it turned out too large).

    ``request`` is what the SDK snapshots: an environ, a scope or a framework request.
    """
    cors = _cors_headers(config, headers)
    if len(body) > config.max_body_bytes:
        return Response(413, cors)
    sdk.track_api_event(request, body)
    return Response(204, cors)


def collect_precheck(
    config: EndpointConfig,
    method: str,
    headers: Mapping[str, str],
    site_hosts: frozenset[str] = NO_HOSTS,
) -> Response | None:
    """``precheck`` for ``/collect``: its rules, with CORS for ``site_hosts`` too.

    A POST that passes (nearly every request) is decided without looking at its origin:
    ``accept_collect`` gives its answer the CORS headers, once per request. An early answer
    to a POST (415, 413) gets the sites' CORS headers here.
    """
    if method != "POST":
        return precheck(config, method, headers, site_hosts)
    early = precheck(config, method, headers)
    if early is None or not site_hosts:
        return early
    if any(name == "Access-Control-Allow-Origin" for name, _ in early.headers):
        return early
    return Response(early.status, [*early.headers, *_cors_headers(config, headers, site_hosts)])


def site_hosts(sdk: SkoposSDK | None) -> frozenset[str]:
    """The hosts whose pages may post to ``/collect`` cross-origin (none without an SDK;
    ``{"*"}``, any, while the SDK does not know its sites yet)."""
    return NO_HOSTS if sdk is None else sdk.collect_origin_hosts


def accept_collect(
    config: EndpointConfig,
    sdk: SkoposSDK,
    request: object,
    headers: Mapping[str, str],
    body: bytes,
) -> Response:
    """Queue a ``/collect`` body for ``sdk.track_collect`` and answer 204 (413 if too large).

    The answer carries CORS headers for the SDK's sites and ``cors_origins``: the official
    script reads the answer of its ``fetch``, and would send the message again without them.
    """
    cors = _cors_headers(config, headers, sdk.collect_origin_hosts)
    if len(body) > config.max_body_bytes:
        return Response(413, cors)
    sdk.track_collect(request, body)
    return Response(204, cors)


def collect_health(
    config: EndpointConfig, headers: Mapping[str, str], site_hosts: frozenset[str] = NO_HOSTS
) -> Response:
    """``GET <collect_path>/health``: ``{"status": "ok", "timestamp": <ms>}``, never cached.

    >>> json.loads(collect_health(EndpointConfig(), {}).body)["status"]
    'ok'
    """
    body = json.dumps({"status": "ok", "timestamp": int(time.time() * 1000)}).encode()
    return Response(
        200,
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            *_cors_headers(config, headers, site_hosts),
        ],
        body,
    )


@lru_cache(maxsize=1)
def client_script() -> tuple[bytes, str]:
    """The shipped ``skopos.min.js`` and its strong ETag."""
    script = resources.files("skopos").joinpath("static/skopos.min.js").read_bytes()
    return script, '"' + hashlib.sha256(script).hexdigest()[:32] + '"'


def script_response(headers: Mapping[str, str]) -> Response:
    """The client script, or 304 when the browser's copy is current."""
    script, etag = client_script()
    cache = [("ETag", etag), ("Cache-Control", _SCRIPT_CACHE_CONTROL)]
    if etag in headers.get("if-none-match", ""):
        return Response(304, cache)
    return Response(
        200,
        [
            ("Content-Type", "text/javascript; charset=utf-8"),
            ("Content-Length", str(len(script))),
            *cache,
        ],
        script,
    )
