"""Skopos for any ASGI app: serve the event endpoints and the client script.

Example (Starlette, FastAPI, Quart, Django's ASGI handler... any ASGI callable)::

    from skopos.integrations.asgi import SkoposMiddleware

    app = SkoposMiddleware(app, skopos)  # POST /api/event, GET /skopos.js,
    # POST /collect and GET /collect/health (the official client script's endpoint)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from skopos.integrations.endpoint import (
    EndpointConfig,
    Response,
    accept,
    accept_collect,
    collect_health,
    collect_precheck,
    precheck,
    script_response,
    site_hosts,
)
from skopos.integrations.wsgi import SdkSource, resolve_sdk

__all__ = ["SkoposMiddleware", "read_body"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _headers(scope: Scope) -> dict[str, str]:
    wanted = {b"content-type", b"content-length", b"origin", b"if-none-match"}
    found: dict[str, str] = {}
    for name, value in scope.get("headers") or ():
        lowered = bytes(name).lower()
        if lowered in wanted:
            found[lowered.decode()] = bytes(value).decode("latin-1")
    return found


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None as soon as it exceeds ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message.get("type") == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def send_response(send: Send, response: Response) -> None:
    """Send a framework-neutral response over ASGI."""
    await send(
        {
            "type": "http.response.start",
            "status": response.status,
            "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in response.headers],
        }
    )
    await send({"type": "http.response.body", "body": response.body})


class SkoposMiddleware:
    """Answers ``config.event_path``, ``config.script_path`` and ``config.collect_path``
    (with its ``/health``); passes the rest to ``app``.

    With ``app=None`` it is a standalone ASGI app that answers 404 elsewhere.
    """

    def __init__(
        self, app: ASGIApp | None, sdk: SdkSource, config: EndpointConfig | None = None
    ) -> None:
        self.app = app
        self.sdk = sdk
        self.config = config or EndpointConfig()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") == "http":
            path = scope.get("path", "")
            method = scope.get("method", "GET")
            if path == self.config.event_path:
                await send_response(send, await self.event(scope, receive))
                return
            if self.config.collect_path is not None:
                if path == self.config.collect_path:
                    await send_response(send, await self.collect(scope, receive))
                    return
                if path == self.config.health_path:
                    await send_response(send, self.health(scope))
                    return
            if (
                self.config.script_path
                and path == self.config.script_path
                and method in ("GET", "HEAD")
            ):
                response = script_response(_headers(scope))
                if method == "HEAD":
                    response = Response(response.status, response.headers)
                await send_response(send, response)
                return
        if self.app is None:
            if scope.get("type") == "http":
                await send_response(send, Response(404))
            return
        await self.app(scope, receive, send)

    async def event(self, scope: Scope, receive: Receive) -> Response:
        """Handle one request to the event endpoint."""
        headers = _headers(scope)
        early = precheck(self.config, scope.get("method", "GET"), headers)
        if early is not None:
            return early
        sdk = resolve_sdk(self.sdk)
        if sdk is None:
            return Response(503)
        body = await read_body(receive, self.config.max_body_bytes)
        if body is None:
            return Response(413)
        return accept(self.config, sdk, scope, headers, body)

    async def collect(self, scope: Scope, receive: Receive) -> Response:
        """Handle one request to ``/collect`` (the official client script's endpoint)."""
        headers = _headers(scope)
        sdk = resolve_sdk(self.sdk)
        hosts = site_hosts(sdk)
        early = collect_precheck(self.config, scope.get("method", "GET"), headers, hosts)
        if early is not None:
            return early
        if sdk is None:
            return Response(503)
        body = await read_body(receive, self.config.max_body_bytes)
        if body is None:
            return Response(413)
        return accept_collect(self.config, sdk, scope, headers, body)

    def health(self, scope: Scope) -> Response:
        """Answer ``/collect/health``."""
        method = scope.get("method", "GET")
        if method not in ("GET", "HEAD"):
            return Response(405, [("Allow", "GET, HEAD")])
        sdk = resolve_sdk(self.sdk)
        hosts = site_hosts(sdk)
        response = collect_health(self.config, _headers(scope), hosts)
        return Response(response.status, response.headers) if method == "HEAD" else response
