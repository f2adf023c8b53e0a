"""The Django views: the event endpoints and the client script, sync and async.

``skopos.integrations.django.urls`` routes to them (to the async ones with
``SKOPOS["async_views"]``); to route them yourself::

    from skopos.integrations.django import views

    urlpatterns = [
        path("api/event", views.aevent),  # or views.event under WSGI
        path("skopos.js", views.ascript),
        path("collect", views.acollect),  # the official client script's endpoint
        path("collect/health", views.collect_health),
    ]

Under ASGI, Django has read the whole body before a view runs; under WSGI the
event view reads at most ``max_body_bytes + 1`` bytes of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar, cast

from django.http import HttpResponse  # type: ignore[import-untyped]
from django.views.decorators.csrf import csrf_exempt  # type: ignore[import-untyped]

from skopos._sdk import SkoposSDK
from skopos.integrations.django import _sdk, skopos_settings
from skopos.integrations.endpoint import (
    EndpointConfig,
    Response,
    accept,
    accept_collect,
    collect_precheck,
    precheck,
    script_response,
    site_hosts,
)
from skopos.integrations.endpoint import collect_health as collect_health_response

__all__ = ["acollect", "aevent", "ascript", "collect", "collect_health", "event", "script"]

_META_HEADERS = {
    "CONTENT_TYPE": "content-type",
    "CONTENT_LENGTH": "content-length",
    "HTTP_ORIGIN": "origin",
    "HTTP_IF_NONE_MATCH": "if-none-match",
}


_View = TypeVar("_View", bound=Callable[..., Any])


def _csrf_exempt(view: _View) -> _View:
    # sendBeacon cannot send a CSRF token. Django's decorator keeps an async view async.
    return cast(_View, csrf_exempt(view))


def _headers(request: Any) -> dict[str, str]:
    meta = request.META
    return {name: str(meta[key]) for key, name in _META_HEADERS.items() if meta.get(key)}


def _django_response(response: Response) -> Any:
    answer = HttpResponse(response.body, status=response.status)
    if not response.body:
        del answer["Content-Type"]  # Django's default text/html, on an empty answer
    for name, value in response.headers:
        answer[name] = value
    return answer


def _body(request: Any, limit: int) -> bytes | None:
    try:
        # Django's stream stops at Content-Length; the cap covers a body without one.
        body: bytes = request.read(limit + 1)
    except OSError:  # UnreadablePostError: the client went away mid-body
        return None
    return body


def _tracker(
    config: EndpointConfig, request: Any, headers: dict[str, str], body: bytes
) -> Callable[[SkoposSDK | None], Response]:
    def track(sdk: SkoposSDK | None) -> Response:
        return Response(503) if sdk is None else accept(config, sdk, request.META, headers, body)

    return track


def _collector(
    config: EndpointConfig, request: Any, headers: dict[str, str], body: bytes
) -> Callable[[SkoposSDK | None], Response]:
    def track(sdk: SkoposSDK | None) -> Response:
        if sdk is None:
            return Response(503)
        return accept_collect(config, sdk, request.META, headers, body)

    return track


def _preflight(
    config: EndpointConfig, method: str, headers: dict[str, str]
) -> Callable[[SkoposSDK | None], Response | None]:
    def check(sdk: SkoposSDK | None) -> Response | None:
        return collect_precheck(config, method, headers, site_hosts(sdk))

    return check


def _script(request: Any) -> Response:
    if request.method not in ("GET", "HEAD"):
        return Response(405, [("Allow", "GET, HEAD")])
    return script_response(_headers(request))


@_csrf_exempt
def event(request: Any) -> Any:
    """``POST`` what ``skopos.js`` sends (also ``OPTIONS`` for CORS): 204 once queued.

    Example::

        path("api/event", views.event)
    """
    config = skopos_settings().endpoint
    headers = _headers(request)
    response = precheck(config, request.method, headers)
    if response is None:
        body = _body(request, config.max_body_bytes)
        if body is None:
            response = Response(400)
        else:
            response = _sdk.run(_tracker(config, request, headers, body))
    return _django_response(response)


@_csrf_exempt
async def aevent(request: Any) -> Any:
    """``event`` for ASGI servers: a first SDK start runs in a thread, off the event loop.

    Example::

        path("api/event", views.aevent)
    """
    config = skopos_settings().endpoint
    headers = _headers(request)
    response = precheck(config, request.method, headers)
    if response is None:
        # Under ASGI, Django has read the body already: this read does not block.
        body = _body(request, config.max_body_bytes)
        if body is None:
            response = Response(400)
        else:
            track = _tracker(config, request, headers, body)
            sdk = _sdk.peek()
            response = track(sdk) if sdk is not None else await asyncio.to_thread(_sdk.run, track)
    return _django_response(response)


def script(request: Any) -> Any:
    """``GET`` the client script: 200 with an ETag, 304 when the browser's copy is current.

    Example::

        path("skopos.js", views.script)
    """
    return _django_response(_script(request))


async def ascript(request: Any) -> Any:
    """``script`` as an ``async def`` view (no thread hop under ASGI).

    Example::

        path("skopos.js", views.ascript)
    """
    return _django_response(_script(request))


@_csrf_exempt
def collect(request: Any) -> Any:
    """``POST`` what the official client script sends to ``/collect`` (also ``OPTIONS``
    for CORS): 204 once queued.

    Example::

        path("collect", views.collect)
    """
    config = skopos_settings().endpoint
    headers = _headers(request)
    sdk = _sdk.peek()
    check = _preflight(config, request.method, headers)
    # A preflight's answer depends on the sites the SDK serves: it starts the SDK.
    response = _sdk.run(check) if sdk is None and request.method == "OPTIONS" else check(sdk)
    if response is None:
        body = _body(request, config.max_body_bytes)
        if body is None:
            response = Response(400)
        else:
            response = _sdk.run(_collector(config, request, headers, body))
    return _django_response(response)


@_csrf_exempt
async def acollect(request: Any) -> Any:
    """``collect`` for ASGI servers: a first SDK start runs in a thread, off the event loop.

    Example::

        path("collect", views.acollect)
    """
    config = skopos_settings().endpoint
    headers = _headers(request)
    sdk = _sdk.peek()
    check = _preflight(config, request.method, headers)
    if sdk is None and request.method == "OPTIONS":
        response = await asyncio.to_thread(_sdk.run, check)
    else:
        response = check(sdk)
    if response is None:
        body = _body(request, config.max_body_bytes)  # read already under ASGI: no blocking
        if body is None:
            response = Response(400)
        else:
            track = _collector(config, request, headers, body)
            sdk = _sdk.peek()
            response = track(sdk) if sdk is not None else await asyncio.to_thread(_sdk.run, track)
    return _django_response(response)


def collect_health(request: Any) -> Any:
    """``GET /collect/health``: ``{"status": "ok", "timestamp": ms}`` (sync or async: it
    does no I/O).

    Example::

        path("collect/health", views.collect_health)
    """
    if request.method not in ("GET", "HEAD"):
        return _django_response(Response(405, [("Allow", "GET, HEAD")]))
    config = skopos_settings().endpoint
    response = collect_health_response(config, _headers(request), site_hosts(_sdk.peek()))
    if request.method == "HEAD":
        response = Response(response.status, response.headers)
    return _django_response(response)
