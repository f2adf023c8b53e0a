"""Request → snapshot: the only code that runs on the host's request thread.

``capture_request`` copies what the worker may know about a request (peer
address, a few headers, the path) out of whatever the host passed as
``request`` and keeps nothing else: no framework object, no body, no parsing.
Framework requests are recognised by duck typing and reduced to one of two
shapes:

- WSGI environ (raw WSGI, Flask/Werkzeug ``request.environ``, Django
  ``request.META``, an environ even under Django's ASGI handler): the request
  thread reads the eleven wanted keys into an ``EnvironCapture`` (references to
  the environ's own strings, ~0.4 µs);
- ASGI scope (raw ASGI, Starlette/FastAPI ``request.scope``): the request
  thread copies the header list (a tuple of references, ~0.1 µs) into a
  ``ScopeCapture``. The list holds every header, cookies included, in memory
  only, until the worker has reduced it.

Each capture knows the bytes it holds (``size``, counted against the queue's byte budget).
Measuring is one C-level join over what was captured: ~0.2 µs for an environ's few
strings, but ~0.7 µs for a scope's whole header list in a tight loop and ~2 µs a call
under load (every header's bytes are read, out of the CPU's caches). So the caller asks
for it (``measure``) only when the queue holds a backlog, where the byte budget matters;
otherwise a capture is charged ``NOMINAL_CAPTURE_BYTES``. A measured capture holding more
than ``_CUT_ABOVE`` bytes (hostile or broken clients only) is cut on the request thread: an
ASGI capture keeps only the headers the worker reads, and every value is cut to the length
the worker would keep (``MAX_HEADER_LENGTH``, forwarding headers to their last
``MAX_FORWARDING_LENGTH`` characters: the end is what our own proxies wrote).

The worker reduces a capture to a ``RequestSnapshot`` with ``.snapshot()``:
type checks, length caps, header decoding (with ``worker_process``, the worker
process: the host's feeder thread only drops the headers it does not read).
Decoding ASGI headers on the request thread cost 3-4 µs a call under load,
most of the call: the strings it allocates outlive the call in the queue.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from operator import itemgetter
from typing import Any

from skopos._tracking.client_ip import FORWARDING_HEADERS, MAX_HEADER_CHARS, keep_tail

__all__ = [
    "NOMINAL_CAPTURE_BYTES",
    "CapturedRequest",
    "EnvironCapture",
    "RequestSnapshot",
    "ScopeCapture",
    "capture_request",
    "take_snapshot",
]

# Headers bigger than this are cut (their start kept): they only feed hashing and heuristics.
MAX_HEADER_LENGTH = 1024
# Forwarding headers are cut to their end, where the proxies we trust wrote.
MAX_FORWARDING_LENGTH = MAX_HEADER_CHARS
MAX_PATH_LENGTH = 2048
# A capture holding more than this many bytes is cut on the request thread. Real browsers'
# wanted headers total well under 1 KiB; an ASGI scope's whole header list (cookies
# included) a few KiB.
_CUT_ABOVE = 8 * 1024
# What an unmeasured capture is charged: a browser's wanted headers are ~0.5 KiB, an ASGI
# scope's whole header list ~1 KiB.
NOMINAL_CAPTURE_BYTES = 1024
_FORWARDING_PRECUT = MAX_FORWARDING_LENGTH + 64
_value_of = itemgetter(1)

# The forwarding headers client_ip reads, as (name, RequestSnapshot attribute).
_FORWARDING = tuple((name, name.replace("-", "_")) for name in FORWARDING_HEADERS)
_FORWARDING_ATTRIBUTES = frozenset(attribute for _, attribute in _FORWARDING)
# header name (lower case) → RequestSnapshot attribute
_HEADERS = {
    b"user-agent": "user_agent",
    b"accept-language": "accept_language",
    b"sec-fetch-mode": "sec_fetch_mode",
    b"sec-ch-ua": "sec_ch_ua",
    b"sec-ch-ua-mobile": "sec_ch_ua_mobile",
    b"sec-ch-ua-platform": "sec_ch_ua_platform",
    b"sec-ch-ua-model": "sec_ch_ua_model",
    b"sec-gpc": "sec_gpc",
    b"dnt": "dnt",
    b"cf-ipcountry": "cf_ipcountry",
    **{name.encode(): attribute for name, attribute in _FORWARDING},
}
_ENVIRON_KEYS = {
    "HTTP_" + name.decode().upper().replace("-", "_"): attr for name, attr in _HEADERS.items()
}


class RequestSnapshot:
    """What the worker may know about a request; plain strings only."""

    __slots__ = (
        "accept_language",
        "cf_connecting_ip",
        "cf_ipcountry",
        "dnt",
        "forwarded",
        "path",
        "peer",
        "sec_ch_ua",
        "sec_ch_ua_mobile",
        "sec_ch_ua_model",
        "sec_ch_ua_platform",
        "sec_fetch_mode",
        "sec_gpc",
        "user_agent",
        "x_forwarded_for",
        "x_real_ip",
    )

    def __init__(self, peer: str | None = None, path: str = "") -> None:
        self.peer = peer
        self.path = path
        self.user_agent: str | None = None
        self.accept_language: str | None = None
        self.sec_fetch_mode: str | None = None
        self.sec_ch_ua: str | None = None
        self.sec_ch_ua_mobile: str | None = None
        self.sec_ch_ua_platform: str | None = None
        self.sec_ch_ua_model: str | None = None
        self.sec_gpc: str | None = None  # "1": the Global Privacy Control is on
        self.dnt: str | None = None
        self.x_forwarded_for: str | None = None
        self.forwarded: str | None = None
        self.x_real_ip: str | None = None
        self.cf_connecting_ip: str | None = None
        self.cf_ipcountry: str | None = None

    def forwarding_headers(self) -> dict[str, str]:
        """The proxy headers present, by lower-case name."""
        found: dict[str, str] = {}
        for name, attribute in _FORWARDING:
            value = getattr(self, attribute)
            if value:
                found[name] = value
        return found

    def __repr__(self) -> str:
        # Deliberately omits the peer address and headers (privacy in logs).
        return f"RequestSnapshot(path={self.path!r})"


def _cut(attribute: str, value: str) -> str:
    """``value`` cut as the worker keeps it: forwarding headers keep their end."""
    if attribute in _FORWARDING_ATTRIBUTES:
        return keep_tail(value, MAX_FORWARDING_LENGTH)
    limit = MAX_PATH_LENGTH if attribute == "path" else MAX_HEADER_LENGTH
    return value[:limit]


class EnvironCapture:
    """A WSGI environ's peer, path and wanted headers, picked by reference, not yet checked.

    ``size``: the bytes its strings hold (what the queue's byte budget counts).
    """

    __slots__ = ("size", "values")

    def __init__(self, values: list[object], size: int = 0) -> None:
        self.values = values  # in _ENVIRON_CAPTURE order; "" for a missing key
        self.size = size

    @classmethod
    def of_snapshot(cls, snapshot: RequestSnapshot) -> EnvironCapture:
        """A capture of plain strings that reduces to ``snapshot`` again."""
        return cls(
            [snapshot.peer, snapshot.path, *(getattr(snapshot, a) for a in _ENVIRON_KEYS.values())]
        )

    def snapshot(self) -> RequestSnapshot:
        """The ``RequestSnapshot`` of the captured environ (on the worker)."""
        peer, path, *headers = self.values
        snap = RequestSnapshot(
            peer if isinstance(peer, str) and peer else None,
            path[:MAX_PATH_LENGTH] if isinstance(path, str) else "",
        )
        for attr, value in zip(_ENVIRON_KEYS.values(), headers, strict=True):
            if isinstance(value, str) and value:
                setattr(snap, attr, _cut(attr, value))
        return snap

    def __repr__(self) -> str:
        # Deliberately omits the peer address and headers (privacy in logs).
        return f"EnvironCapture(path={self.values[1]!r})"


# What the request thread reads from an environ: one C-level get per key, no checks.
_ENVIRON_CAPTURE = ("REMOTE_ADDR", "PATH_INFO", *_ENVIRON_KEYS)
_ENVIRON_ATTRIBUTES = ("peer", "path", *_ENVIRON_KEYS.values())


def _capture_environ(environ: Mapping[str, Any], measure: bool) -> EnvironCapture:
    get = environ.get
    values: list[object] = [get(key, "") for key in _ENVIRON_CAPTURE]
    if not measure:
        return EnvironCapture(values, NOMINAL_CAPTURE_BYTES)
    try:
        size = len("".join(values))  # type: ignore[arg-type]  # a TypeError is handled
    except TypeError:  # not all strings: a hostile or odd environ
        return _cut_environ(values)
    if size > _CUT_ABOVE:
        return _cut_environ(values)
    return EnvironCapture(values, size)


def _cut_environ(values: list[object]) -> EnvironCapture:
    """The slow path: values cut to what the worker keeps, odd types left to it to refuse."""
    kept: list[object] = []
    size = 0
    for attribute, value in zip(_ENVIRON_ATTRIBUTES, values, strict=True):
        if isinstance(value, str):
            value = _cut(attribute, value) if attribute != "peer" else value[:MAX_HEADER_LENGTH]
            size += len(value) * (1 if value.isascii() else 4)
        else:
            value = None  # the worker would refuse it; never keep an unknown object alive
        kept.append(value)
    return EnvironCapture(kept, size)


class ScopeCapture:
    """An ASGI scope's client, path and headers, copied by reference, not yet decoded.

    ``size``: the bytes its header values hold (what the queue's byte budget counts).
    """

    __slots__ = ("client", "headers", "path", "size")

    def __init__(
        self, client: object, path: object, headers: tuple[Any, ...], size: int = 0
    ) -> None:
        self.client = client
        self.path = path
        # A tuple: middleware may edit the scope's own list (Starlette's MutableHeaders).
        self.headers = headers
        self.size = size

    def snapshot(self) -> RequestSnapshot:
        """The ``RequestSnapshot`` of the captured scope (on the worker)."""
        client, path = self.client, self.path
        peer = client[0] if isinstance(client, (tuple, list)) and client else None
        snap = RequestSnapshot(
            peer if isinstance(peer, str) else None,
            path[:MAX_PATH_LENGTH] if isinstance(path, str) else "",
        )
        for item in self.headers:
            try:
                name, value = item
            except (TypeError, ValueError):
                continue
            attr = _attribute_of_header(name)
            if attr is None or not isinstance(value, (bytes, bytearray)):
                continue
            previous = getattr(snap, attr)
            # Repeated headers combine with a comma, as HTTP says they may. A forwarding
            # header is cut after joining, to its end (the last copy is our proxy's); a
            # value is pre-cut to a little over its limit, so decoding stays bounded and
            # the final cut still marks what was lost.
            if attr in _FORWARDING_ATTRIBUTES:
                if len(value) > _FORWARDING_PRECUT:
                    value = value[-_FORWARDING_PRECUT:]
                text = value.decode("latin-1")
                if previous is not None:
                    text = f"{previous}, {text}"
                if len(text) > MAX_FORWARDING_LENGTH:
                    text = keep_tail(text, MAX_FORWARDING_LENGTH)
            else:
                if len(value) > MAX_HEADER_LENGTH:
                    value = value[:MAX_HEADER_LENGTH]
                text = value.decode("latin-1")
                if previous is not None:
                    text = f"{previous}, {text}"[:MAX_HEADER_LENGTH]
            setattr(snap, attr, text)
        return snap

    def wanted_headers(self) -> list[Any]:
        """The headers ``snapshot`` reads, undecoded (what crosses a pipe: no cookies)."""
        kept = []
        for item in self.headers:
            try:
                name = item[0]
            except (TypeError, IndexError, KeyError):
                continue
            if _attribute_of_header(name) is not None:
                kept.append(item)
        return kept

    def __repr__(self) -> str:
        # Deliberately omits the peer address and headers (privacy in logs).
        return f"ScopeCapture(path={self.path!r})"


CapturedRequest = EnvironCapture | ScopeCapture


def _attribute_of_header(name: Any) -> str | None:
    """The ``RequestSnapshot`` attribute header ``name`` feeds, if any (never raises: any
    object may come in). ASGI servers send lower-case names: lowercased only on a miss."""
    try:
        attr = _HEADERS.get(name)  # an unhashable name raises TypeError
        if attr is None and not name.islower():
            attr = _HEADERS.get(bytes(name).lower())
    except (TypeError, ValueError, AttributeError):
        return None
    return attr


def _is_scope(value: Mapping[str, Any]) -> bool:
    return value.get("type") in ("http", "websocket") and "headers" in value


def _capture_scope(scope: Mapping[str, Any], measure: bool) -> ScopeCapture:
    headers: Any = scope.get("headers")
    # The ASGI spec allows any iterable; lists (every server we know) take the cheap check.
    iterable = isinstance(headers, (list, tuple)) or (
        isinstance(headers, Iterable) and not isinstance(headers, (str, bytes, bytearray))
    )
    copied = tuple(headers) if iterable else ()
    client, path = scope.get("client"), scope.get("path")
    if not measure:
        return ScopeCapture(client, path, copied, NOMINAL_CAPTURE_BYTES)
    try:
        size = len(b"".join(map(_value_of, copied)))
    except (TypeError, IndexError, KeyError):  # odd items: a hostile or broken scope
        return _cut_scope(client, path, copied)
    if size > _CUT_ABOVE:
        return _cut_scope(client, path, copied)
    return ScopeCapture(client, path, copied, size)


def _cut_scope(client: object, path: object, headers: tuple[Any, ...]) -> ScopeCapture:
    """The slow path: only the headers the worker reads, cut to what it keeps."""
    kept: list[Any] = []
    size = 0
    for item in headers:
        try:
            name, value = item
        except (TypeError, ValueError):
            continue
        attr = _attribute_of_header(name)
        if attr is None or not isinstance(value, (bytes, bytearray)):
            continue
        if attr in _FORWARDING_ATTRIBUTES:
            value = bytes(value[-_FORWARDING_PRECUT:])
        else:
            value = bytes(value[:MAX_HEADER_LENGTH])
        kept.append((bytes(name), value))
        size += len(value)
    if isinstance(path, str) and len(path) > MAX_PATH_LENGTH:
        path = path[:MAX_PATH_LENGTH]
    return ScopeCapture(client, path, tuple(kept), size)


# Where a request type keeps its environ or scope, learned the first time the type is seen
# (framework request classes all have the same shape; an instance without the learned
# attribute is searched): the failed getattr calls of the search cost a Flask proxy ~2 µs a
# call, a Starlette Request 0.3 µs.
_ATTRIBUTE_OF_TYPE: dict[type, str] = {}
_MAX_REMEMBERED_TYPES = 64
_SEARCHED = ("META", "environ", "scope")  # Django's ASGIRequest has META and scope: META wins


def capture_request(request: object, *, measure: bool = True) -> CapturedRequest | None:
    """Capture any supported request (on the request thread); None for ``None`` or an
    unknown object. ``measure=False`` charges the capture ``NOMINAL_CAPTURE_BYTES`` instead
    of measuring (and, if need be, cutting) what it holds.

    Recognised: a WSGI environ or ASGI scope dict; objects with ``.META``
    (Django, also under ASGI), ``.environ`` (Werkzeug/Flask) or ``.scope``
    (Starlette/FastAPI).
    """
    if type(request) is dict:
        return _capture_mapping(request, measure)
    if request is None:
        return None
    attribute = _ATTRIBUTE_OF_TYPE.get(type(request))
    if attribute is not None:
        inner = getattr(request, attribute, None)
        if isinstance(inner, Mapping):
            if attribute == "scope":
                return _capture_scope(inner, measure)
            return _capture_environ(inner, measure)
    for attribute in _SEARCHED:
        inner = getattr(request, attribute, None)
        if isinstance(inner, Mapping):
            if len(_ATTRIBUTE_OF_TYPE) < _MAX_REMEMBERED_TYPES:
                _ATTRIBUTE_OF_TYPE.setdefault(type(request), attribute)
            if attribute == "scope":
                return _capture_scope(inner, measure)
            return _capture_environ(inner, measure)
    return _capture_mapping(request, measure) if isinstance(request, Mapping) else None


def _capture_mapping(request: Mapping[str, Any], measure: bool) -> CapturedRequest:
    if _is_scope(request):
        return _capture_scope(request, measure)
    return _capture_environ(request, measure)


def take_snapshot(request: object) -> RequestSnapshot | None:
    """``capture_request`` reduced to a ``RequestSnapshot`` at once."""
    captured = capture_request(request)
    return None if captured is None else captured.snapshot()
