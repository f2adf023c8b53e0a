"""Skopos for Starlette and FastAPI: the event endpoint and client script as routes, and a lifespan.

FastAPI (Starlette is the same with ``Starlette(routes=[...], lifespan=skopos)``)::

    from fastapi import FastAPI, Request
    from skopos.integrations.starlette import skopos_lifespan, skopos_routes

    skopos = skopos_lifespan()  # options from SKOPOS_* env; keywords override them
    app = FastAPI(lifespan=skopos, routes=skopos_routes(skopos))  # POST /api/event, GET /skopos.js,
    # POST /collect and GET /collect/health (the official client script's endpoint)

    @app.post("/checkout")
    async def checkout(request: Request) -> dict[str, bool]:
        skopos.sdk.track_server_event(request, "checkout", {"plan": "pro"})
        return {"ok": True}

At startup the lifespan runs ``await SkoposSDK.ainit(**options)``, which returns at once (the SDK
connects to PocketBase in the background: an app whose PocketBase is down or slow starts and
serves, and its events wait in the queue; only a bad option fails the startup), and stores
the SDK on ``app.state.skopos``; at shutdown it runs ``await sdk.ashutdown()``, which flushes
what is queued. In a route the SDK is ``skopos.sdk`` or
``request.app.state.skopos``; track calls only copy a few strings and enqueue, so they are safe
to call from ``async def`` routes. Until the lifespan has started, the event route answers 503.

With a lifespan of your own, enter Skopos inside it::

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with skopos(app):  # or `async with skopos as sdk:` (no app.state)
            app.state.db = await connect_db()
            yield

For an app created elsewhere, ``app.router.routes.extend(skopos_routes(skopos))`` adds the
routes. An SDK you created yourself works too: ``skopos_routes(sdk)``, or ``skopos_routes(get_sdk)``
with a function returning it (``None`` while it is not ready).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Any

from starlette.requests import Request
from starlette.responses import Response as StarletteResponse
from starlette.routing import BaseRoute, Route

from skopos._config import check_options
from skopos._sdk import SkoposSDK
from skopos.integrations.asgi import read_body
from skopos.integrations.endpoint import (
    Accept,
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

__all__ = ["SkoposLifespan", "skopos_lifespan", "skopos_routes"]


class SkoposLifespan:
    """Starts the SDK when the app starts and shuts it down when the app stops.

    Pass it as the app's ``lifespan`` (it then stores the SDK on ``app.state.skopos``), or
    enter it inside your own lifespan. Create it with ``skopos_lifespan``.

    Example::

        skopos = skopos_lifespan(batch=True)
        app = FastAPI(lifespan=skopos, routes=skopos_routes(skopos))
    """

    def __init__(self, **options: Any) -> None:
        # Fail on a misspelt option or a bad value when the app module is imported, not at
        # its first startup.
        check_options(options, where="skopos_lifespan()")
        self._options = options
        self._sdk: SkoposSDK | None = None

    @property
    def sdk(self) -> SkoposSDK:
        """The running SDK; ``RuntimeError`` outside the lifespan.

        Example::

            skopos.sdk.track_server_event(request, "signup", {"plan": "pro"})
        """
        if self._sdk is None:
            raise RuntimeError("Skopos is not running: the app's lifespan has not started it")
        return self._sdk

    def current(self) -> SkoposSDK | None:
        """The running SDK, or None outside the lifespan (an ``SdkSource``).

        Example::

            if (sdk := skopos.current()) is not None:
                sdk.flush()
        """
        return self._sdk

    def __call__(self, app: Any) -> AbstractAsyncContextManager[None]:
        """The lifespan context for ``app``: Starlette and FastAPI call this.

        Example::

            async with skopos(app):  # inside a lifespan of your own
                yield
        """
        return self._lifespan(app)

    @asynccontextmanager
    async def _lifespan(self, app: Any) -> AsyncIterator[None]:
        async with self as sdk:
            state = getattr(app, "state", None)
            if state is not None:
                state.skopos = sdk
            # Yielding None, not {"skopos": sdk}: lifespan state fails on servers without it.
            yield

    async def __aenter__(self) -> SkoposSDK:
        if self._sdk is not None:
            raise RuntimeError("Skopos is already running for this lifespan")
        self._sdk = await SkoposSDK.ainit(**self._options)
        return self._sdk

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        sdk, self._sdk = self._sdk, None
        if sdk is not None:
            await sdk.ashutdown()


def skopos_lifespan(**options: Any) -> SkoposLifespan:
    """A lifespan that runs ``await SkoposSDK.ainit(**options)`` at startup and
    ``await sdk.ashutdown()`` at shutdown; options not given come from ``SKOPOS_*``.

    Example::

        skopos = skopos_lifespan(session_timeout=900)
        app = FastAPI(lifespan=skopos, routes=skopos_routes(skopos))
    """
    return SkoposLifespan(**options)


def _starlette_response(response: Response, *, head: bool = False) -> StarletteResponse:
    answer = StarletteResponse(b"" if head else response.body, status_code=response.status)
    for name, value in response.headers:
        if name.lower() == "content-length":
            answer.headers[name] = value  # HEAD keeps the length of the body it omits
        else:
            answer.headers.append(name, value)
    return answer


def skopos_routes(
    sdk: SdkSource | SkoposLifespan, config: EndpointConfig | None = None
) -> list[BaseRoute]:
    """Routes for the event endpoint (POST, OPTIONS), the client script (GET, HEAD) and
    the official client script's ``/collect`` (POST, OPTIONS) with its health (GET, HEAD).

    They are ``starlette.routing.Route`` objects, typed as ``BaseRoute`` because FastAPI's
    ``routes`` parameter is a ``list[BaseRoute]``.

    ``sdk`` is an SDK, a ``SkoposLifespan``, or a function returning the SDK (None while it
    is not started: the endpoint then answers 503). ``config`` (default ``EndpointConfig()``)
    sets the paths, the body limit and CORS; ``script_path=None`` leaves the script out,
    ``collect_path=None`` leaves ``/collect`` out.

    Example::

        app = Starlette(routes=[*skopos_routes(skopos), Route("/", home)], lifespan=skopos)
    """
    config = config or EndpointConfig()
    source: SdkSource = sdk.current if isinstance(sdk, SkoposLifespan) else sdk

    async def queued(request: Request, current: SkoposSDK | None, queue: Accept) -> Response:
        """The body read (at most the limit) and handed to ``queue``: 503 without an SDK."""
        if current is None:
            return Response(503)
        body = await read_body(request.receive, config.max_body_bytes)
        if body is None:
            return Response(413)
        return queue(config, current, request.scope, request.headers, body)

    async def skopos_event(request: Request) -> StarletteResponse:
        response = precheck(config, request.method, request.headers)
        if response is None:
            response = await queued(request, resolve_sdk(source), accept)
        return _starlette_response(response)

    async def skopos_script(request: Request) -> StarletteResponse:
        return _starlette_response(script_response(request.headers), head=request.method == "HEAD")

    async def skopos_collect(request: Request) -> StarletteResponse:
        headers = request.headers
        current = resolve_sdk(source)
        hosts = site_hosts(current)
        response = collect_precheck(config, request.method, headers, hosts)
        if response is None:
            response = await queued(request, current, accept_collect)
        return _starlette_response(response)

    async def skopos_collect_health(request: Request) -> StarletteResponse:
        current = resolve_sdk(source)
        hosts = site_hosts(current)
        response = collect_health(config, request.headers, hosts)
        return _starlette_response(response, head=request.method == "HEAD")

    routes: list[BaseRoute] = [
        Route(
            config.event_path,
            skopos_event,
            methods=["POST", "OPTIONS"],
            name="skopos_event",
            include_in_schema=False,
        )
    ]
    if config.script_path:
        routes.append(
            Route(
                config.script_path,
                skopos_script,
                methods=["GET", "HEAD"],
                name="skopos_script",
                include_in_schema=False,
            )
        )
    if config.collect_path is not None and config.health_path is not None:
        routes += [
            Route(
                config.collect_path,
                skopos_collect,
                methods=["POST", "OPTIONS"],
                name="skopos_collect",
                include_in_schema=False,
            ),
            Route(
                config.health_path,
                skopos_collect_health,
                methods=["GET", "HEAD"],
                name="skopos_collect_health",
                include_in_schema=False,
            ),
        ]
    return routes
