"""Request → snapshot: the only code that runs on the host's request thread.

It copies a handful of primitives (peer address, a few headers, the path) out
of whatever the host passed as ``request`` and keeps nothing else: no framework
object, no body, no parsing. Two extractors do the work, one over
a WSGI environ and one over an ASGI scope; framework requests are recognised by
duck typing and reduced to one of the two:

- WSGI environ: raw WSGI, Flask/Werkzeug ``request.environ``, Django
  ``request.META`` (an environ even under Django's ASGI handler);
- ASGI scope: raw ASGI, Starlette/FastAPI ``request.scope``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["RequestSnapshot", "snapshot_from_environ", "snapshot_from_scope", "take_snapshot"]

# Headers bigger than this are cut: they only feed hashing and heuristics.
MAX_HEADER_LENGTH = 1024
MAX_PATH_LENGTH = 2048

# header name (lower case) → RequestSnapshot attribute
_HEADERS = {
    b"user-agent": "user_agent",
    b"accept-language": "accept_language",
    b"sec-fetch-mode": "sec_fetch_mode",
    b"sec-ch-ua": "sec_ch_ua",
    b"x-forwarded-for": "x_forwarded_for",
    b"forwarded": "forwarded",
    b"x-real-ip": "x_real_ip",
    b"cf-connecting-ip": "cf_connecting_ip",
    b"cf-ipcountry": "cf_ipcountry",
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
        "forwarded",
        "path",
        "peer",
        "sec_ch_ua",
        "sec_fetch_mode",
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
        self.x_forwarded_for: str | None = None
        self.forwarded: str | None = None
        self.x_real_ip: str | None = None
        self.cf_connecting_ip: str | None = None
        self.cf_ipcountry: str | None = None

    def forwarding_headers(self) -> dict[str, str]:
        """The proxy headers present, by lower-case name."""
        found: dict[str, str] = {}
        if self.x_forwarded_for is not None:
            found["x-forwarded-for"] = self.x_forwarded_for
        if self.forwarded is not None:
            found["forwarded"] = self.forwarded
        if self.x_real_ip is not None:
            found["x-real-ip"] = self.x_real_ip
        if self.cf_connecting_ip is not None:
            found["cf-connecting-ip"] = self.cf_connecting_ip
        return found

    def __repr__(self) -> str:
        # Deliberately omits the peer address and headers (privacy in logs).
        return f"RequestSnapshot(path={self.path!r})"


def snapshot_from_environ(environ: Mapping[str, Any]) -> RequestSnapshot:
    """Snapshot a WSGI environ (Flask ``request.environ``, Django ``request.META``)."""
    peer = environ.get("REMOTE_ADDR")
    path = environ.get("PATH_INFO")
    snap = RequestSnapshot(
        peer if isinstance(peer, str) else None,
        path[:MAX_PATH_LENGTH] if isinstance(path, str) else "",
    )
    for key, attr in _ENVIRON_KEYS.items():
        value = environ.get(key)
        if isinstance(value, str):
            setattr(snap, attr, value[:MAX_HEADER_LENGTH])
    return snap


def snapshot_from_scope(scope: Mapping[str, Any]) -> RequestSnapshot:
    """Snapshot an ASGI scope (Starlette/FastAPI ``request.scope``)."""
    client = scope.get("client")
    peer = client[0] if isinstance(client, (tuple, list)) and client else None
    path = scope.get("path")
    snap = RequestSnapshot(
        peer if isinstance(peer, str) else None,
        path[:MAX_PATH_LENGTH] if isinstance(path, str) else "",
    )
    headers: Iterable[Any] = scope.get("headers") or ()
    lookup = _HEADERS.get
    for item in headers:
        try:
            name, value = item
            # ASGI servers send lower-case names: lowercase only on a miss (58% of the call).
            attr = lookup(name)
            if attr is None:
                if name.islower():
                    continue
                attr = lookup(bytes(name).lower())
                if attr is None:
                    continue
        except (TypeError, ValueError, AttributeError):
            continue
        if isinstance(value, (bytes, bytearray)):
            previous = getattr(snap, attr)
            # Slicing only when needed: most values are short, and decode copies anyway.
            if len(value) > MAX_HEADER_LENGTH:
                value = value[:MAX_HEADER_LENGTH]
            text = value.decode("latin-1")
            # Repeated headers combine with a comma, as HTTP says they may.
            setattr(
                snap, attr, text if previous is None else f"{previous}, {text}"[:MAX_HEADER_LENGTH]
            )
    return snap


def _is_scope(value: Mapping[str, Any]) -> bool:
    return value.get("type") in ("http", "websocket") and "headers" in value


def take_snapshot(request: object) -> RequestSnapshot | None:
    """Snapshot any supported request; None for ``None`` or an unknown object.

    Recognised: a WSGI environ or ASGI scope dict; objects with ``.META``
    (Django, also under ASGI), ``.environ`` (Werkzeug/Flask) or ``.scope``
    (Starlette/FastAPI).
    """
    if request is None:
        return None
    if not isinstance(request, dict):
        for attribute in ("META", "environ"):
            environ = getattr(request, attribute, None)
            if isinstance(environ, Mapping):
                return snapshot_from_environ(environ)
        scope = getattr(request, "scope", None)
        if isinstance(scope, Mapping):
            return snapshot_from_scope(scope)
        if not isinstance(request, Mapping):
            return None
    return snapshot_from_scope(request) if _is_scope(request) else snapshot_from_environ(request)
