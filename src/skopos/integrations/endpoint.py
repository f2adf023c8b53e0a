"""The event endpoint and the client script, independent of any framework.

The endpoint ``skopos.js`` posts to:

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
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

from skopos._exceptions import ConfigurationError
from skopos._sdk import SkoposSDK

__all__ = [
    "DEFAULT_EVENT_PATH",
    "DEFAULT_SCRIPT_PATH",
    "EndpointConfig",
    "Response",
    "accept",
    "client_script",
    "content_length",
    "precheck",
    "script_response",
]

DEFAULT_EVENT_PATH = "/api/event"
DEFAULT_SCRIPT_PATH = "/skopos.js"
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
    may be None: no script route), ``max_body_bytes`` is a positive int, ``cors_origins`` a
    list of origins or one comma-separated string (a bare string is never matched as a
    substring).

    Example::

        EndpointConfig(cors_origins=["https://www.example.com"], max_body_bytes=8192)
    """

    event_path: str = DEFAULT_EVENT_PATH
    script_path: str | None = DEFAULT_SCRIPT_PATH
    max_body_bytes: int = 16 * 1024
    cors_origins: Sequence[str] = ()

    def __post_init__(self) -> None:
        for name in ("event_path", "script_path"):
            path = getattr(self, name)
            if not (isinstance(path, str) and path.startswith("/")) and not (
                name == "script_path" and path is None
            ):
                raise ConfigurationError(f"{name} must be a path starting with '/', got {path!r}")
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


def _cors_headers(config: EndpointConfig, headers: Mapping[str, str]) -> list[tuple[str, str]]:
    allowed = config.allowed_origin(headers.get("origin"))
    if allowed is None:
        return []
    cors = [("Access-Control-Allow-Origin", allowed)]
    if allowed != "*":
        cors.append(("Vary", "Origin"))
    return cors


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


def precheck(config: EndpointConfig, method: str, headers: Mapping[str, str]) -> Response | None:
    """Answer without reading the body (preflight, wrong method/type, a bad or too large
    Content-Length), or None. Never raises, whatever the headers hold.

    ``headers`` maps lower-case names to values.
    """
    cors = _cors_headers(config, headers)
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
