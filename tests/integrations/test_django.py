"""The Django app through Django's test clients (sync and async views), against a real PocketBase.

This module is also the URLconf of its tests: the app's own ``urls`` (sync views, as settings
choose by default) at the root, and the async views under ``/async/``.
"""

from __future__ import annotations

import asyncio
import importlib
import io
import json
import logging
import subprocess
import sys
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import django  # type: ignore[import-untyped]
import pytest
from django.apps import apps  # type: ignore[import-untyped]
from django.conf import settings  # type: ignore[import-untyped]
from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped]
from django.core.handlers.asgi import ASGIRequest  # type: ignore[import-untyped]
from django.http import HttpResponse  # type: ignore[import-untyped]
from django.test import AsyncClient, Client, RequestFactory, override_settings  # type: ignore[import-untyped]
from django.test.client import FakePayload  # type: ignore[import-untyped]
from django.urls import include, path  # type: ignore[import-untyped]

from skopos import ConfigurationError, SkoposSDK
from skopos._admin.setup import Website
from skopos._pocketbase.client import PocketBaseClient
from skopos._tracking.snapshot import take_snapshot
from skopos.integrations import django as skopos_django
from skopos.integrations.django import views
from skopos.integrations.endpoint import client_script
from tests._support.collect_scenario import Send as CollectSend
from tests._support.collect_scenario import (
    assert_collect_http,
    assert_landed,
    post_visit,
    visit,
)
from tests._support.pocketbase_server import PocketBaseServer
from tests._support.tracking_helpers import CHROME, page_view, site_events, site_sessions

if not settings.configured:
    settings.configure(
        SECRET_KEY="skopos-tests",
        DATABASES={},
        INSTALLED_APPS=["skopos.integrations.django"],
        USE_TZ=True,
    )
if not apps.ready:
    django.setup()

urlpatterns = [
    path("", include("skopos.integrations.django.urls")),
    path("async/api/event", views.aevent),
    path("async/skopos.js", views.ascript),
    path("async/collect", views.acollect),
    path("async/collect/health", views.collect_health),
]

ALLOWED = "https://shop.example.test"
BROWSER = {"User-Agent": CHROME, "Accept-Language": "en-US,en;q=0.9"}
# The endpoint must work behind CSRF protection, the clients enforce it like a browser would.
DJANGO_SETTINGS = {
    "ROOT_URLCONF": __name__,
    "ALLOWED_HOSTS": ["testserver"],
    "MIDDLEWARE": [
        "django.middleware.security.SecurityMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
    ],
}

Send = Callable[..., HttpResponse]
T = TypeVar("T")


def skopos_options(pocketbase: PocketBaseServer, website: Website, **extra: Any) -> dict[str, Any]:
    return {
        "pocketbase_url": pocketbase.url,
        "site_id": website.tracking_id,
        "admin_email": pocketbase.email,
        "admin_password": pocketbase.password,
        "strict": True,
        "realtime": False,
        "cors_origins": [ALLOWED],
        **extra,
    }


@pytest.fixture
def sdk(pocketbase: PocketBaseServer, website: Website) -> Iterator[SkoposSDK]:
    """The integration's SDK for this test's website (started eagerly, shut down after)."""
    with override_settings(SKOPOS=skopos_options(pocketbase, website), **DJANGO_SETTINGS):
        sdk = skopos_django.get_sdk()
        try:
            yield sdk
        finally:
            skopos_django.shutdown(timeout=5)


@pytest.fixture(params=["sync", "async"])
def send(request: pytest.FixtureRequest) -> Send:
    """``send(method, path, body=..., content_type=..., headers=..., ip=...)`` through the
    sync views with ``Client`` or the async views with ``AsyncClient`` (an ASGI request)."""
    is_async = request.param == "async"
    client = AsyncClient(enforce_csrf_checks=True) if is_async else Client(enforce_csrf_checks=True)

    def send(
        method: str,
        url: str,
        body: bytes = b"",
        content_type: str = "text/plain",
        headers: dict[str, str] | None = None,
        ip: str = "203.0.113.10",
    ) -> HttpResponse:
        headers = {**BROWSER, **(headers or {})}
        if not is_async:
            return client.generic(method, url, body, content_type, headers=headers, REMOTE_ADDR=ip)
        if body:
            headers.update({"Content-Type": content_type, "Content-Length": str(len(body))})
        # The scope by hand: AsyncClient.generic has no way to set the peer address.
        scope = {
            "method": method,
            "path": "/async" + url,
            "query_string": "",
            "client": (ip, 50000),
            "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in headers.items()],
            "_body_file": FakePayload(body),
        }
        return run_async(client.request(**scope))

    return send


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    # In a thread of its own: another test module's Playwright may run a loop in this one.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def payload(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()


@pytest.mark.pocketbase
def test_beacon_and_fetch_bodies_land_in_pocketbase(
    send: Send, sdk: SkoposSDK, pb: PocketBaseClient, website: Website
) -> None:
    pricing = page_view(website.domain, "/pricing", referrer="https://news.example.org/a?b=c")
    beacon = send("POST", "/api/event", payload(pricing), "text/plain;charset=UTF-8")
    docs = payload(page_view(website.domain, "/docs"))
    fetched = send("POST", "/api/event", docs, "application/json", ip="2001:db8::20")
    assert (beacon.status_code, beacon.content) == (204, b"")
    assert (fetched.status_code, fetched.content) == (204, b"")
    assert not beacon.has_header("Content-Type")
    assert sdk.flush(timeout=10)

    sessions = {s["entryPath"]: s for s in site_sessions(pb, website.id)}
    assert sorted(sessions) == ["/docs", "/pricing"]
    first = sessions["/pricing"]
    assert (first["browser"], first["os"], first["device"]) == ("Chrome", "Windows", "desktop")
    assert first["referrer"] == "https://news.example.org/a"
    assert first["visitor"] != sessions["/docs"]["visitor"]
    events = site_events(pb, website.id)
    assert sorted((e["type"], e["path"], e["session"]) for e in events) == [
        ("pageView", "/docs", sessions["/docs"]["id"]),
        ("pageView", "/pricing", first["id"]),
    ]
    stats = sdk.stats()
    assert (stats.accepted, stats.written, stats.dropped) == (2, 2, {})


@pytest.mark.pocketbase
def test_refusals_write_nothing(
    send: Send, sdk: SkoposSDK, pb: PocketBaseClient, website: Website
) -> None:
    too_big = payload(page_view(website.domain, "/big", padding="x" * 16_384))
    assert send("POST", "/api/event", too_big).status_code == 413
    xml = payload(page_view(website.domain, "/x"))
    assert send("POST", "/api/event", xml, "application/xml").status_code == 415
    wrong_method = send("GET", "/api/event")
    assert wrong_method.status_code == 405
    assert "POST" in wrong_method["Allow"]
    assert sdk.flush(timeout=10)
    assert sdk.stats().accepted == 0
    assert site_sessions(pb, website.id) == []


@pytest.mark.pocketbase
def test_a_malformed_content_length_is_a_400(sdk: SkoposSDK) -> None:
    with override_settings(**DJANGO_SETTINGS):
        client = Client(enforce_csrf_checks=True, headers=BROWSER)
        for value in ("²", "١٢", "-1"):
            answer = client.generic("POST", "/api/event", b"{}", "text/plain", CONTENT_LENGTH=value)
            assert answer.status_code == 400, value
    assert sdk.stats().accepted == 0


@pytest.mark.pocketbase
def test_trusted_proxies_name_the_client_and_forgers_are_counted(
    pocketbase: PocketBaseServer, pb: PocketBaseClient, website: Website, send: Send
) -> None:
    pb.update_record("websites", website.id, {"storeRawIp": True})
    proxied = skopos_options(pocketbase, website, trusted_proxies=["127.0.0.1/32"])
    with override_settings(SKOPOS=proxied, **DJANGO_SETTINGS):
        try:
            for n in range(3):
                forwarded = {"X-Forwarded-For": f"198.51.100.{n + 1}"}
                body = payload(page_view(website.domain, f"/{n}"))
                assert (
                    send("POST", "/api/event", body, headers=forwarded, ip="127.0.0.1").status_code
                    == 204
                )
            forged = {"X-Forwarded-For": "192.0.2.1"}
            send("POST", "/api/event", payload(page_view(website.domain, "/x")), headers=forged)
            sdk = skopos_django.get_sdk()
            assert sdk.flush(timeout=10)
            assert sdk.stats().spoofed_forwarding_headers == 1
        finally:
            skopos_django.shutdown(timeout=5)
    ips = {s["entryPath"]: s["ipAddress"] for s in site_sessions(pb, website.id)}
    assert ips == {
        "/0": "198.51.100.1",
        "/1": "198.51.100.2",
        "/2": "198.51.100.3",
        "/x": "203.0.113.10",
    }


@pytest.mark.pocketbase
@pytest.mark.usefixtures("sdk")
def test_cors(send: Send) -> None:
    preflight = {"Access-Control-Request-Method": "POST", "Origin": ALLOWED}
    allowed = send("OPTIONS", "/api/event", headers=preflight)
    assert allowed.status_code == 204
    assert allowed["Access-Control-Allow-Origin"] == ALLOWED
    assert "POST" in allowed["Access-Control-Allow-Methods"]
    assert allowed["Access-Control-Allow-Headers"] == "Content-Type"
    assert "Origin" in allowed["Vary"]

    refused = send("OPTIONS", "/api/event", headers={**preflight, "Origin": "https://evil.test"})
    assert refused.status_code == 204
    assert not any(name.startswith("access-control") for name in refused.headers)

    answer = send("POST", "/api/event", b'{"type": "pageView"}', headers={"Origin": ALLOWED})
    assert answer.status_code == 204
    assert answer["Access-Control-Allow-Origin"] == ALLOWED


@pytest.mark.pocketbase
@pytest.mark.usefixtures("sdk")
def test_client_script_with_etag(send: Send) -> None:
    script, etag = client_script()
    answer = send("GET", "/skopos.js")
    assert answer.status_code == 200
    assert answer["Content-Type"] == "text/javascript; charset=utf-8"
    assert (answer["ETag"], answer["Cache-Control"]) == (etag, "public, max-age=604800")
    assert answer.content == script
    cached = send("GET", "/skopos.js", headers={"If-None-Match": etag})
    assert (cached.status_code, cached.content, cached["ETag"]) == (304, b"", etag)


@pytest.mark.pocketbase
def test_lazy_start_server_events_and_503_when_the_sdk_cannot_start(
    pocketbase: PocketBaseServer,
    pb: PocketBaseClient,
    website: Website,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Only a bad option stops the SDK (PocketBase is its own business): 503, logged once.
    monkeypatch.delenv("SKOPOS_ADMIN_PASSWORD", raising=False)
    broken = skopos_options(pocketbase, website)
    del broken["admin_password"]
    with override_settings(SKOPOS=broken, **DJANGO_SETTINGS), caplog.at_level(logging.ERROR):
        client = Client(enforce_csrf_checks=True, headers=BROWSER)
        for _ in range(3):
            assert client.post("/api/event", b"{}", "text/plain").status_code == 503
        with pytest.raises(ConfigurationError, match="admin_password"):
            skopos_django.get_sdk()
    [logged] = [r for r in caplog.records if r.name == "skopos"]  # one attempt, not four
    assert "admin_password" in logged.getMessage()

    # An unknown tracking id: the SDK starts, the views answer 204, stats() says why.
    unknown = skopos_options(pocketbase, website, site_id="no-such-site", strict=False)
    with override_settings(SKOPOS=unknown, **DJANGO_SETTINGS):
        try:
            client = Client(enforce_csrf_checks=True, headers=BROWSER)
            assert client.post("/api/event", b"{}", "text/plain").status_code == 204
            stats = skopos_django.get_sdk().stats()
            assert (stats.accepted, stats.connected) == (1, False)
        finally:
            skopos_django.shutdown(timeout=1)

    with override_settings(SKOPOS=skopos_options(pocketbase, website), **DJANGO_SETTINGS):
        try:
            assert skopos_django._sdk.peek() is None  # settings changed: nothing started yet
            hit = Client(headers=BROWSER, REMOTE_ADDR="192.0.2.44").post(
                "/api/event", payload(page_view(website.domain, "/welcome")), "text/plain"
            )
            assert hit.status_code == 204
            request = RequestFactory(headers=BROWSER, REMOTE_ADDR="192.0.2.44").post("/signup")
            sdk = run_async(skopos_django.aget_sdk())
            assert sdk is skopos_django.get_sdk()
            sdk.track_server_event(request, "signup", {"plan": "pro"})
            assert sdk.flush(timeout=10)
        finally:
            skopos_django.shutdown(timeout=5)
    [session] = site_sessions(pb, website.id)
    events = site_events(pb, website.id)
    assert sorted((e["type"], e["eventName"], e["session"]) for e in events) == [
        ("custom", "signup", session["id"]),
        ("pageView", "", session["id"]),
    ]


@pytest.mark.pocketbase
def test_init_on_ready_starts_the_sdk(pocketbase: PocketBaseServer, website: Website) -> None:
    eager = skopos_options(pocketbase, website, init_on_ready=True)
    with override_settings(SKOPOS=eager):
        try:
            apps.get_app_config("skopos").ready()
            assert isinstance(skopos_django._sdk.peek(), SkoposSDK)
        finally:
            skopos_django.shutdown(timeout=5)


def test_settings_are_checked() -> None:
    with (
        override_settings(SKOPOS={"site": "abc"}),
        pytest.raises(ImproperlyConfigured, match="site"),
    ):
        apps.get_app_config("skopos").ready()
    for bad in (
        {"event_path": "api/event"},
        {"max_body_bytes": "16k"},
        {"async_views": "yes"},
        {"batch_interval": 0},
    ):
        with override_settings(SKOPOS=bad), pytest.raises(ImproperlyConfigured):
            skopos_django.skopos_settings()
    with override_settings(SKOPOS={"cors_origins": "https://a.test, https://b.test"}):
        assert skopos_django.skopos_settings().endpoint.cors_origins == (
            "https://a.test",
            "https://b.test",
        )


def test_urls_route_to_async_views_when_asked() -> None:
    from skopos.integrations.django import urls

    try:
        settings = {"async_views": True, "script_path": None, "collect_path": None}
        with override_settings(SKOPOS=settings):
            [event] = importlib.reload(urls).urlpatterns
            assert (event.callback, str(event.pattern)) == (views.aevent, "api/event")
        with override_settings(SKOPOS={"async_views": True, "collect_path": "/t/c"}):
            _, _, collect, health = importlib.reload(urls).urlpatterns
            assert (collect.callback, str(collect.pattern)) == (views.acollect, "t/c")
            assert (health.callback, str(health.pattern)) == (views.collect_health, "t/c/health")
        with override_settings(SKOPOS={"event_path": "/t/e"}):
            event, script, collect, health = importlib.reload(urls).urlpatterns
            assert (event.callback, str(event.pattern)) == (views.event, "t/e")
            assert (script.callback, str(script.pattern)) == (views.script, "skopos.js")
            assert (collect.callback, str(collect.pattern)) == (views.collect, "collect")
            assert str(health.pattern) == "collect/health"
    finally:
        importlib.reload(urls)
    assert asyncio.iscoroutinefunction(views.aevent)
    assert asyncio.iscoroutinefunction(views.acollect)
    assert not asyncio.iscoroutinefunction(views.event)
    assert not asyncio.iscoroutinefunction(views.collect)
    for view in (views.aevent, views.event, views.acollect, views.collect):
        assert getattr(view, "csrf_exempt", False), view


def test_snapshot_of_django_requests() -> None:
    wsgi_request = RequestFactory(headers=BROWSER, REMOTE_ADDR="203.0.113.77").post(
        "/api/event?x=1", b"{}", content_type="text/plain"
    )
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/event",
        "query_string": b"x=1",
        "client": ("2001:db8::77", 50000),
        "headers": [(b"user-agent", CHROME.encode()), (b"accept-language", b"de-CH")],
    }
    asgi_request = ASGIRequest(scope, io.BytesIO(b"{}"))
    for request, peer, language in (
        (wsgi_request, "203.0.113.77", "en-US,en;q=0.9"),
        (asgi_request, "2001:db8::77", "de-CH"),
    ):
        snap = take_snapshot(request)
        assert snap is not None
        assert (snap.peer, snap.user_agent, snap.path) == (peer, CHROME, "/api/event")
        assert snap.accept_language == language


def test_importing_skopos_never_imports_django() -> None:
    code = (
        "import sys, skopos, skopos.integrations.endpoint\n"
        "assert 'django' not in sys.modules, 'skopos imported django'\n"
        "import skopos.integrations.django.views\n"  # no settings needed just to import
        "assert 'django' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-W", "error", "-c", code], check=True)


# -- /collect: the official client script's endpoint -------------------------------------------


def collect_send(send: Send) -> CollectSend:
    def adapter(
        method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        headers = dict(headers)
        content_type = headers.pop("Content-Type", "text/plain")
        answer = send(method, path, body, content_type, headers)
        return answer.status_code, {k.lower(): v for k, v in answer.headers.items()}, answer.content

    return adapter


@pytest.mark.pocketbase
def test_collect_lands_as_the_dashboard_collector_writes_it(
    send: Send, sdk: SkoposSDK, pb: PocketBaseClient, website: Website
) -> None:
    sent = visit(website.tracking_id, website.domain)
    post_visit(collect_send(send), sent)
    assert sdk.flush(timeout=10)
    assert_landed(pb, website.id, sent)
    assert_collect_http(collect_send(send), website.domain, ALLOWED)
    head = send("HEAD", "/collect/health")
    assert (head.status_code, head.content) == (200, b"")
    stats = sdk.stats()
    assert (stats.accepted, stats.written, stats.dropped) == (5, 5, {})


@pytest.mark.pocketbase
def test_a_collect_preflight_starts_the_sdk_to_know_its_sites(
    send: Send, pocketbase: PocketBaseServer, website: Website
) -> None:
    with override_settings(SKOPOS=skopos_options(pocketbase, website), **DJANGO_SETTINGS):
        try:
            assert skopos_django._sdk.peek() is None
            origin = f"https://{website.domain}"
            answer = send("OPTIONS", "/collect", headers={"Origin": origin})
            assert (answer.status_code, answer["Access-Control-Allow-Origin"]) == (204, origin)
            assert skopos_django._sdk.peek() is not None
        finally:
            skopos_django.shutdown(timeout=5)
