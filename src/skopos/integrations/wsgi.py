"""Skopos for any WSGI app: serve the event endpoints and the client script.

Example (Flask, Django, Bottle, Pyramid... any WSGI callable)::

    from skopos import SkoposSDK
    from skopos.integrations.wsgi import SkoposMiddleware

    skopos = SkoposSDK.init()  # options from SKOPOS_* environment variables
    application = SkoposMiddleware(application, skopos)  # POST /api/event, GET /skopos.js,
    # POST /collect and GET /collect/health (the official client script's endpoint)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from skopos._sdk import SkoposSDK
from skopos.integrations.endpoint import (
    EndpointConfig,
    Response,
    accept,
    accept_collect,
    collect_health,
    collect_precheck,
    content_length,
    precheck,
    script_response,
    site_hosts,
)

__all__ = ["SdkSource", "SkoposMiddleware", "resolve_sdk"]

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
# An SDK, or a function returning the current one (None while it is not started).
SdkSource = SkoposSDK | Callable[[], SkoposSDK | None]

_REASONS = {
    200: "OK",
    204: "No Content",
    304: "Not Modified",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    503: "Service Unavailable",
}


def resolve_sdk(source: SdkSource) -> SkoposSDK | None:
    """The SDK behind ``source``."""
    return source if isinstance(source, SkoposSDK) else source()


def _headers(environ: Mapping[str, Any]) -> dict[str, str]:
    wanted = {
        "CONTENT_TYPE": "content-type",
        "CONTENT_LENGTH": "content-length",
        "HTTP_ORIGIN": "origin",
        "HTTP_IF_NONE_MATCH": "if-none-match",
    }
    return {name: str(environ[key]) for key, name in wanted.items() if environ.get(key)}


class SkoposMiddleware:
    """Answers ``config.event_path``, ``config.script_path`` and ``config.collect_path``
    (with its ``/health``); passes the rest to ``app``.

    With ``app=None`` it is a standalone WSGI app that answers 404 elsewhere.
    """

    def __init__(
        self, app: WSGIApp | None, sdk: SdkSource, config: EndpointConfig | None = None
    ) -> None:
        self.app = app
        self.sdk = sdk
        self.config = config or EndpointConfig()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == self.config.event_path:
            return self._send(self._event(environ, method), start_response)
        if self.config.collect_path is not None:
            if path == self.config.collect_path:
                return self._send(self._collect(environ, method), start_response)
            if path == self.config.health_path:
                return self._send(self._health(environ, method), start_response)
        if (
            self.config.script_path
            and path == self.config.script_path
            and method in ("GET", "HEAD")
        ):
            response = script_response(_headers(environ))
            if method == "HEAD":
                response = Response(response.status, response.headers)
            return self._send(response, start_response)
        if self.app is None:
            return self._send(Response(404), start_response)
        return self.app(environ, start_response)

    def _event(self, environ: dict[str, Any], method: str) -> Response:
        headers = _headers(environ)
        early = precheck(self.config, method, headers)
        if early is not None:
            return early
        sdk = resolve_sdk(self.sdk)
        if sdk is None:
            return Response(503)
        body = self._body(environ, headers)
        if isinstance(body, Response):
            return body
        return accept(self.config, sdk, environ, headers, body)

    def _collect(self, environ: dict[str, Any], method: str) -> Response:
        headers = _headers(environ)
        sdk = resolve_sdk(self.sdk)
        early = collect_precheck(self.config, method, headers, site_hosts(sdk))
        if early is not None:
            return early
        if sdk is None:
            return Response(503)
        body = self._body(environ, headers)
        if isinstance(body, Response):
            return body
        return accept_collect(self.config, sdk, environ, headers, body)

    def _health(self, environ: dict[str, Any], method: str) -> Response:
        if method not in ("GET", "HEAD"):
            return Response(405, [("Allow", "GET, HEAD")])
        sdk = resolve_sdk(self.sdk)
        hosts = site_hosts(sdk)
        response = collect_health(self.config, _headers(environ), hosts)
        return Response(response.status, response.headers) if method == "HEAD" else response

    def _body(self, environ: dict[str, Any], headers: dict[str, str]) -> bytes | Response:
        """The request body (at most what Content-Length says), or 411 without a length."""
        length = content_length(headers)  # valid, or precheck answered 400
        stream = environ.get("wsgi.input")
        if stream is None:
            return b""
        if length is not None:
            body: bytes = stream.read(length)
            return body
        if environ.get("wsgi.input_terminated"):
            capped: bytes = stream.read(self.config.max_body_bytes + 1)
            return capped
        return Response(411)

    @staticmethod
    def _send(response: Response, start_response: StartResponse) -> Iterable[bytes]:
        status = f"{response.status} {_REASONS.get(response.status, '')}".strip()
        start_response(status, response.headers)
        return [response.body] if response.body else []
