"""The host app of ``host_overhead.py`` and ``e2e_http.py``: endpoints alike but for one call.

- ``POST /api/event``: reads the body and calls ``skopos.track_api_event(request, body)``,
  answers 204 (what README.md shows for each framework);
- ``POST /api/plain``: the same without the call, the reference;
- ``POST /api/control``: identical to ``/api/plain``; plain vs control is the noise floor;
- ``POST /api/call-only``: builds what ``track_api_event`` queues (the request's capture and
  the call) and drops it: the call's own cost inside a server, without the queue, the
  background threads or the objects a queued call keeps alive until it is shipped;
- ``GET /__bench/flush``: flushes the SDK and returns its ``stats()`` as JSON;
- ``GET /__bench/health``.

``asgi_app`` is Starlette (what FastAPI runs on), served by uvicorn; ``wsgi_app`` is Flask,
served by gunicorn. The four endpoints share one route (``/api/{endpoint}``) so that routing
costs them the same. The SDK takes every option from ``SKOPOS_*`` environment variables.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from skopos import SkoposSDK
from skopos._tracking.activity import TrackCall
from skopos._tracking.snapshot import capture_request

# requests each endpoint served in this process
CALLS = {"event": 0, "plain": 0, "control": 0, "call-only": 0}


def _call_only(sdk: SkoposSDK, request: object, body: bytes) -> None:
    """What ``track_api_event`` does on the request thread, minus the put (private API:
    this measures it, nothing else should do it)."""
    TrackCall("api", sdk.options.site_id, capture_request(request), body)


def _stats_json(sdk: SkoposSDK, flushed: bool) -> bytes:
    stats = dataclasses.asdict(sdk.stats())
    stats["flushed"] = flushed
    stats["endpoint_calls"] = CALLS
    stats["pid"] = os.getpid()
    return json.dumps(stats).encode()


# -- ASGI: Starlette under uvicorn -------------------------------------------------------------


def _starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    state: dict[str, SkoposSDK] = {}

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        state["sdk"] = await SkoposSDK.ainit()
        yield
        await state["sdk"].ashutdown()

    async def api(request: Request) -> Response:
        # One route for every endpoint: each pays the same routing, only the work differs.
        body = await request.body()
        endpoint = request.path_params["endpoint"]
        if endpoint not in CALLS:
            return Response(status_code=404)
        if endpoint == "event":
            state["sdk"].track_api_event(request, body)
        elif endpoint == "call-only":
            _call_only(state["sdk"], request, body)
        CALLS[endpoint] += 1
        return Response(status_code=204)

    async def flush(request: Request) -> Response:
        flushed = await state["sdk"].aflush(120)
        return Response(_stats_json(state["sdk"], flushed), media_type="application/json")

    async def health(request: Request) -> Response:
        return Response(b"ok")

    return Starlette(
        routes=[
            Route("/api/{endpoint}", api, methods=["POST"]),
            Route("/__bench/flush", flush),
            Route("/__bench/health", health),
        ],
        lifespan=lifespan,
    )


# -- WSGI: Flask under gunicorn ----------------------------------------------------------------


def _flask_app() -> Any:
    from flask import Flask, request

    app = Flask(__name__)
    sdks: list[SkoposSDK] = []

    def sdk() -> SkoposSDK:
        if not sdks:  # in the gunicorn worker, after the fork
            sdks.append(SkoposSDK.init())
        return sdks[0]

    @app.post("/api/<endpoint>")
    def api(endpoint: str) -> tuple[str, int]:
        # One route for every endpoint: each pays the same routing, only the work differs.
        body = request.get_data()
        if endpoint not in CALLS:
            return "", 404
        if endpoint == "event":
            sdk().track_api_event(request, body)
        elif endpoint == "call-only":
            _call_only(sdk(), request, body)
        CALLS[endpoint] += 1  # approximate under threads; only for the benchmark's notes
        return "", 204

    @app.get("/__bench/flush")
    def flush() -> tuple[bytes, int, dict[str, str]]:
        flushed = sdk().flush(120)
        return _stats_json(sdk(), flushed), 200, {"Content-Type": "application/json"}

    @app.get("/__bench/health")
    def health() -> str:
        sdk()
        return "ok"

    return app


def __getattr__(name: str) -> Any:
    # Build only the app the server asks for: uvicorn imports asgi_app, gunicorn wsgi_app.
    if name == "asgi_app":
        return _starlette_app()
    if name == "wsgi_app":
        return _flask_app()
    raise AttributeError(name)
