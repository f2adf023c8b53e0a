"""``skopos.integrations.starlette`` in Starlette and FastAPI apps, into a real PocketBase.

The apps run in Starlette's ``TestClient`` (httpx underneath); ``with TestClient(app)`` runs
the lifespan, so the SDK starts and stops the way it does under uvicorn.
"""

from __future__ import annotations

import json
import threading
import time
import warnings
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from starlette.applications import Starlette
from starlette.exceptions import StarletteDeprecationWarning
from starlette.requests import Request as StarletteRequest

from skopos import ConfigurationError, SkoposSDK
from skopos._admin.embedded import free_port
from skopos._admin.setup import Website
from skopos._pocketbase.client import PocketBaseClient
from skopos._tracking.snapshot import take_snapshot
from skopos.integrations.endpoint import EndpointConfig, client_script
from skopos.integrations.starlette import SkoposLifespan, skopos_lifespan, skopos_routes
from tests._support.collect_client import batch, encode_message
from tests._support.collect_client import page_view as collect_page_view
from tests._support.collect_scenario import (
    Send,
    assert_collect_http,
    assert_landed,
    post_visit,
    visit,
)
from tests._support.pocketbase_server import PocketBaseServer
from tests._support.tracking_helpers import (
    CHROME,
    custom,
    page_view,
    records,
    site_events,
    site_sessions,
)

with warnings.catch_warnings():
    # Starlette 1.x asks for the httpx2 fork under its TestClient; httpx, our dependency, works.
    warnings.filterwarnings(
        "ignore",
        message="Using `httpx` with `starlette.testclient` is deprecated",
        category=StarletteDeprecationWarning,
    )
    from starlette.testclient import TestClient

pytestmark = pytest.mark.pocketbase

CLIENT = ("203.0.113.5", 1234)
BROWSER_HEADERS = {"User-Agent": CHROME, "Accept-Language": "en-US,en;q=0.9"}


@pytest.fixture
def options(pocketbase: PocketBaseServer, website: Website) -> dict[str, Any]:
    return {
        "pocketbase_url": pocketbase.url,
        "site_id": website.tracking_id,
        "admin_email": pocketbase.email,
        "admin_password": pocketbase.password,
        "strict": True,
        "realtime": False,
    }


@pytest.fixture
def skopos(options: dict[str, Any]) -> SkoposLifespan:
    return skopos_lifespan(**options)


def fastapi_app(skopos: SkoposLifespan, config: EndpointConfig | None = None) -> FastAPI:
    """The documented pattern, plus a route that tracks a server-side event."""
    app = FastAPI(lifespan=skopos, routes=skopos_routes(skopos, config))

    @app.post("/signup", status_code=204)
    async def signup(request: Request) -> None:
        skopos.sdk.track_server_event(request, "signup", {"plan": "pro"})

    return app


def client(app: Any) -> TestClient:
    return TestClient(app, client=CLIENT, headers=BROWSER_HEADERS)


@pytest.fixture
def running(skopos: SkoposLifespan) -> Iterator[tuple[TestClient, SkoposSDK]]:
    """A FastAPI app with the default endpoint, its lifespan running."""
    with client(fastapi_app(skopos)) as test_client:
        yield test_client, skopos.sdk


def body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


def nothing_written(pb: PocketBaseClient, website: Website) -> bool:
    return records(pb, "visitors", website=website.id) == [] and not site_sessions(pb, website.id)


# --------------------------------------------------------------------------------------------
# The event endpoint


@pytest.mark.parametrize("framework", ["fastapi", "starlette"])
def test_events_land_exactly(
    framework: str, skopos: SkoposLifespan, pb: PocketBaseClient, website: Website
) -> None:
    if framework == "fastapi":
        app: Any = fastapi_app(skopos)
    else:
        app = Starlette(routes=skopos_routes(skopos), lifespan=skopos)
    domain = website.domain
    with client(app) as test_client:
        sdk = skopos.sdk
        assert app.state.skopos is sdk
        home = page_view(
            domain, "/", referrer="https://news.example.org/a?b=c", screenWidth=1440, language="de"
        )
        answer = test_client.post(
            "/api/event", content=body(home), headers={"Content-Type": "text/plain;charset=UTF-8"}
        )
        assert (answer.status_code, answer.content) == (204, b"")
        answer = test_client.post("/api/event", json=page_view(domain, "/pricing"))
        assert answer.status_code == 204
        cta = custom(domain, "/pricing", "cta-click", {"plan": "pro"})
        assert test_client.post("/api/event", json=cta).status_code == 204
        if framework == "fastapi":
            assert test_client.post("/signup").status_code == 204
        assert sdk.flush(timeout=10)

        [visitor] = records(pb, "visitors", website=website.id)
        [session] = site_sessions(pb, website.id)
        assert session["visitor"] == visitor["id"]
        assert (session["entryPath"], session["exitPath"]) == ("/", "/pricing")
        assert session["referrer"] == "https://news.example.org/a"
        assert (session["browser"], session["os"], session["device"]) == (
            "Chrome",
            "Windows",
            "desktop",
        )
        assert (session["screenWidth"], session["language"], session["isNewVisitor"]) == (
            "1440",
            "de",
            True,
        )
        events = site_events(pb, website.id)
        assert {e["session"] for e in events} == {session["id"]}
        expected = [
            ("pageView", "/", "", None),
            ("pageView", "/pricing", "", None),
            ("custom", "/pricing", "cta-click", {"plan": "pro"}),
        ]
        if framework == "fastapi":
            # The server event shares the visitor's session: same address, same user agent.
            expected.append(("custom", "/signup", "signup", {"plan": "pro"}))
        assert Counter(
            (e["type"], e["path"], e["eventName"], json.dumps(e["eventData"])) for e in events
        ) == Counter((*row[:3], json.dumps(row[3])) for row in expected)
        stats = sdk.stats()
        assert (stats.accepted, stats.written, stats.dropped) == (len(expected), len(expected), {})


def test_too_large_bodies_are_refused_unread(
    running: tuple[TestClient, SkoposSDK], pb: PocketBaseClient, website: Website
) -> None:
    test_client, sdk = running
    padded = page_view(website.domain, "/", padding="x" * 16 * 1024)
    assert len(body(padded)) > 16 * 1024
    answer = test_client.post("/api/event", content=body(padded))
    assert answer.status_code == 413  # judged from Content-Length

    def chunks() -> Iterator[bytes]:  # no Content-Length: cut off while reading
        data = body(padded)
        for start in range(0, len(data), 4096):
            yield data[start : start + 4096]

    answer = test_client.post(
        "/api/event", content=chunks(), headers={"Content-Type": "text/plain"}
    )
    assert answer.status_code == 413
    limit = page_view(website.domain, "/")
    limit["padding"] = "x" * (16 * 1024 - len(body(limit)) - len(', "padding": ""'))
    assert len(body(limit)) == 16 * 1024
    assert test_client.post("/api/event", content=body(limit)).status_code == 204

    assert sdk.flush(timeout=10)
    assert sdk.stats().accepted == 1  # only the body at the limit reached the SDK
    assert [e["path"] for e in site_events(pb, website.id)] == ["/"]


def test_a_malformed_content_length_is_a_400(running: tuple[TestClient, SkoposSDK]) -> None:
    test_client, sdk = running
    for value in ("²", "١٢", "-1"):
        headers = {b"content-type": b"text/plain", b"content-length": value.encode("utf-8")}
        answer = test_client.post("/api/event", content=b"{}", headers=headers)
        assert answer.status_code == 400, value
    assert sdk.stats().accepted == 0


def test_under_uvicorn_proxy_headers_resolved_clients_are_no_spoofing(
    options: dict[str, Any], pb: PocketBaseClient, website: Website
) -> None:
    # uvicorn applies X-Forwarded-For from 127.0.0.1 itself (proxy_headers, on by default):
    # the scope's client is the visitor and the header stays. Every request counted as
    # spoofed (15,593 of 15,593 measured), with every address right.
    pb.update_record("websites", website.id, {"storeRawIp": True})
    skopos = skopos_lifespan(**{**options, "trusted_proxies": ["127.0.0.1/32"]})
    app = FastAPI(lifespan=skopos, routes=skopos_routes(skopos))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive(), "uvicorn exited"
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            for n in range(5):
                answer = http.post(
                    "/api/event",
                    content=body(page_view(website.domain, f"/{n}")),
                    headers={
                        **BROWSER_HEADERS,
                        "Content-Type": "text/plain",
                        "X-Forwarded-For": f"198.51.100.{n + 1}",
                    },
                )
                assert answer.status_code == 204
        sdk = skopos.sdk
        assert sdk.flush(timeout=10)
        assert sdk.stats().spoofed_forwarding_headers == 0
    finally:
        server.should_exit = True
        thread.join(15)
    ips = {s["entryPath"]: s["ipAddress"] for s in site_sessions(pb, website.id)}
    assert ips == {f"/{n}": f"198.51.100.{n + 1}" for n in range(5)}


def test_wrong_method_and_type_write_nothing(
    running: tuple[TestClient, SkoposSDK], pb: PocketBaseClient, website: Website
) -> None:
    test_client, sdk = running
    for method in ("GET", "PUT", "DELETE"):
        answer = test_client.request(method, "/api/event")
        assert answer.status_code == 405, method
        assert set(answer.headers["allow"].split(", ")) == {"POST", "OPTIONS"}
    payload = body(page_view(website.domain, "/"))
    for media_type in ("application/xml", "multipart/form-data; boundary=x", "text/html"):
        answer = test_client.post(
            "/api/event", content=payload, headers={"Content-Type": media_type}
        )
        assert answer.status_code == 415, media_type
    assert sdk.flush(timeout=10)
    assert sdk.stats().accepted == 0
    assert nothing_written(pb, website)


def test_cors(skopos: SkoposLifespan, pb: PocketBaseClient, website: Website) -> None:
    config = EndpointConfig(cors_origins=["https://shop.example"])
    with client(fastapi_app(skopos, config)) as test_client:
        preflight = test_client.options(
            "/api/event",
            headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == "https://shop.example"
        assert preflight.headers["access-control-allow-methods"] == "POST, OPTIONS"
        assert preflight.headers["access-control-allow-headers"] == "Content-Type"
        assert preflight.headers["vary"] == "Origin"

        payload = body(page_view(website.domain, "/cors"))
        allowed = test_client.post(
            "/api/event", content=payload, headers={"Origin": "https://shop.example"}
        )
        assert allowed.status_code == 204
        assert allowed.headers["access-control-allow-origin"] == "https://shop.example"
        other = test_client.post(
            "/api/event", content=payload, headers={"Origin": "https://evil.example"}
        )
        # Answered and queued like any request; only the browser withholds the answer.
        assert other.status_code == 204
        assert "access-control-allow-origin" not in other.headers
        refused = test_client.options("/api/event", headers={"Origin": "https://evil.example"})
        assert refused.status_code == 204
        assert "access-control-allow-origin" not in refused.headers
        assert skopos.sdk.flush(timeout=10)
        assert [e["path"] for e in site_events(pb, website.id)] == ["/cors", "/cors"]


def test_same_origin_by_default(running: tuple[TestClient, SkoposSDK]) -> None:
    test_client, _ = running
    preflight = test_client.options("/api/event", headers={"Origin": "https://shop.example"})
    assert preflight.status_code == 204
    assert preflight.headers["allow"] == "POST, OPTIONS"
    assert "access-control-allow-origin" not in preflight.headers


# --------------------------------------------------------------------------------------------
# The client script


def test_script_is_served_with_validation(running: tuple[TestClient, SkoposSDK]) -> None:
    test_client, _ = running
    script, etag = client_script()
    answer = test_client.get("/skopos.js")
    assert (answer.status_code, answer.content) == (200, script)
    assert answer.headers["content-type"] == "text/javascript; charset=utf-8"
    assert answer.headers["content-length"] == str(len(script))
    assert answer.headers["etag"] == etag
    assert answer.headers["cache-control"] == "public, max-age=604800"

    cached = test_client.get("/skopos.js", headers={"If-None-Match": etag})
    assert (cached.status_code, cached.content) == (304, b"")
    assert cached.headers["etag"] == etag
    stale = test_client.get("/skopos.js", headers={"If-None-Match": '"older"'})
    assert stale.status_code == 200

    head = test_client.head("/skopos.js")
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-length"] == str(len(script))
    assert test_client.post("/skopos.js").status_code == 405


def test_custom_paths_and_no_script(
    skopos: SkoposLifespan, pb: PocketBaseClient, website: Website
) -> None:
    config = EndpointConfig(event_path="/t/collect", script_path=None, collect_path="/c")
    app = Starlette(routes=skopos_routes(skopos, config), lifespan=skopos)
    paths = [route.path for route in app.routes]  # type: ignore[attr-defined]
    assert paths == ["/t/collect", "/c", "/c/health"]
    with client(app) as test_client:
        assert test_client.get("/skopos.js").status_code == 404
        assert test_client.post("/api/event", json={}).status_code == 404
        payload = page_view(website.domain, "/custom-path")
        assert test_client.post("/t/collect", json=payload).status_code == 204
        assert skopos.sdk.flush(timeout=10)
    assert [e["path"] for e in site_events(pb, website.id)] == ["/custom-path"]


# --------------------------------------------------------------------------------------------
# The lifespan


def test_lifespan_starts_and_shuts_down_the_sdk(
    skopos: SkoposLifespan, pb: PocketBaseClient, website: Website
) -> None:
    app = fastapi_app(skopos)
    # Outside the lifespan (a server without lifespan support): nothing to track into.
    assert skopos.current() is None
    with pytest.raises(RuntimeError, match="not running"):
        _ = skopos.sdk
    assert client(app).post("/api/event", json={}).status_code == 503

    with client(app) as test_client:
        sdk = skopos.sdk
        assert skopos.current() is sdk
        assert app.state.skopos is sdk
        payload = page_view(website.domain, "/last")
        assert test_client.post("/api/event", json=payload).status_code == 204
        # No flush here: shutting down writes what is queued.

    assert skopos.current() is None
    assert [e["path"] for e in site_events(pb, website.id)] == ["/last"]
    sdk.track_api_event(None, payload)  # ignored and counted: the SDK is closed
    assert sdk.stats().dropped == {"after_shutdown": 1}

    # The same app starts again, with a new SDK.
    with client(app) as test_client:
        assert skopos.sdk is not sdk
        assert test_client.post("/api/event", json=payload).status_code == 204


def test_lifespan_inside_an_own_lifespan(skopos: SkoposLifespan) -> None:
    seen: list[object] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with skopos(app):
            seen.append(app.state.skopos)
            yield
        seen.append(skopos.current())

    app = FastAPI(lifespan=lifespan, routes=skopos_routes(skopos))
    with client(app):
        assert seen == [skopos.sdk]
    assert seen[1:] == [None]


def test_lifespan_as_a_plain_context_manager(skopos: SkoposLifespan) -> None:
    seen: list[object] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with skopos as sdk:  # no app.state: the SDK is the target of `as`
            seen.append(sdk)
            with pytest.raises(RuntimeError, match="already running"):
                await skopos.__aenter__()
            yield

    app = Starlette(lifespan=lifespan, routes=skopos_routes(skopos))
    with client(app) as test_client:
        [sdk] = seen
        assert isinstance(sdk, SkoposSDK)
        assert skopos.sdk is sdk
        assert not hasattr(app.state, "skopos")
        assert test_client.get("/skopos.js").status_code == 200
    assert skopos.current() is None
    sdk.track_server_event(None, "late")
    assert sdk.stats().dropped == {"after_shutdown": 1}


def test_unknown_options_fail_when_the_app_is_built() -> None:
    with pytest.raises(ConfigurationError, match="site_idd"):
        skopos_lifespan(site_idd="abc")
    with pytest.raises(ConfigurationError, match="batch_interval"):
        skopos_lifespan(batch_interval=-1)


def test_a_bad_option_fails_the_startup_pocketbase_trouble_does_not(
    options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SKOPOS_ADMIN_PASSWORD", raising=False)
    missing = {k: v for k, v in options.items() if k != "admin_password"}
    skopos = skopos_lifespan(**missing)
    app = FastAPI(lifespan=skopos, routes=skopos_routes(skopos))
    with pytest.raises(ConfigurationError, match="admin_password"), client(app):
        pass
    assert skopos.current() is None

    # An unknown tracking id is no reason not to serve: events wait, stats() says why.
    skopos = skopos_lifespan(**{**options, "site_id": "no-such-site", "strict": False})
    app = FastAPI(lifespan=skopos, routes=skopos_routes(skopos))
    with client(app) as test_client:
        answer = test_client.post(
            "/api/event", content=b"{}", headers={"Content-Type": "text/plain"}
        )
        assert answer.status_code == 204
        stats = skopos.sdk.stats()
        assert (stats.accepted, stats.connected) == (1, False)


# --------------------------------------------------------------------------------------------
# Snapshots of Starlette requests (what track_server_event(request, ...) reads)


def test_snapshot_of_a_starlette_request() -> None:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/checkout",
        "raw_path": b"/checkout",
        "query_string": b"step=2",
        "client": ("2001:db8::7", 50123),
        "server": ("shop.example", 443),
        "scheme": "https",
        "headers": [
            (b"host", b"shop.example"),
            (b"user-agent", CHROME.encode()),
            (b"accept-language", b"fr-CH, fr;q=0.9"),
            (b"sec-fetch-mode", b"cors"),
            (b"x-forwarded-for", b"198.51.100.1"),
            (b"cookie", b"session=secret"),
        ],
    }
    request = StarletteRequest(scope)
    snapshot = take_snapshot(request)
    assert snapshot is not None
    assert (snapshot.peer, snapshot.path) == ("2001:db8::7", "/checkout")
    assert (snapshot.user_agent, snapshot.accept_language) == (CHROME, "fr-CH, fr;q=0.9")
    assert snapshot.sec_fetch_mode == "cors"
    assert snapshot.forwarding_headers() == {"x-forwarded-for": "198.51.100.1"}
    assert "secret" not in repr(snapshot)


# --------------------------------------------------------------------------------------------
# /collect: the official client script's endpoint


def starlette_send(test_client: TestClient) -> Send:
    def send(
        method: str, path: str, content: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        answer = test_client.request(method, path, content=content, headers=headers)
        return answer.status_code, {k.lower(): v for k, v in answer.headers.items()}, answer.content

    return send


@pytest.mark.parametrize("framework", ["fastapi", "starlette"])
def test_collect_lands_as_the_dashboard_collector_writes_it(
    framework: str, skopos: SkoposLifespan, pb: PocketBaseClient, website: Website
) -> None:
    config = EndpointConfig(cors_origins=["https://shop.example"])
    if framework == "fastapi":
        app: Any = fastapi_app(skopos, config)
    else:
        app = Starlette(routes=skopos_routes(skopos, config), lifespan=skopos)
    sent = visit(website.tracking_id, website.domain)
    with client(app) as test_client:
        post_visit(starlette_send(test_client), sent)
        assert skopos.sdk.flush(timeout=10)
        assert_landed(pb, website.id, sent)
        assert_collect_http(starlette_send(test_client), website.domain, "https://shop.example")
        head = test_client.head("/collect/health")
        assert (head.status_code, head.content) == (200, b"")
        stats = skopos.sdk.stats()
    assert (stats.accepted, stats.written, stats.dropped) == (5, 5, {})


def test_collect_answers_503_until_the_lifespan_runs(skopos: SkoposLifespan) -> None:
    test_client = client(Starlette(routes=skopos_routes(skopos)))  # no lifespan: never started
    body = encode_message(batch(collect_page_view()))
    answer = test_client.post(
        "/collect", content=body, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 503
    assert test_client.get("/collect/health").json()["status"] == "ok"
    routes = skopos_routes(skopos, EndpointConfig(collect_path=None))
    assert [getattr(route, "path", None) for route in routes] == ["/api/event", "/skopos.js"]
