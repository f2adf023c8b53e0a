"""The Flask extension through Flask's test client, against a real PocketBase."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, request
from flask.testing import FlaskClient
from werkzeug.middleware.proxy_fix import ProxyFix

from skopos import ConfigurationError, SkoposSDK
from skopos._admin.setup import Website
from skopos._pocketbase.client import PocketBaseClient
from skopos._tracking.snapshot import take_snapshot
from skopos.integrations.endpoint import EndpointConfig, client_script
from skopos.integrations.flask import Skopos
from tests._support.collect_scenario import (
    Send,
    assert_collect_http,
    assert_landed,
    post_visit,
    visit,
)
from tests._support.pocketbase_server import PocketBaseServer
from tests._support.tracking_helpers import CHROME, page_view, site_events, site_sessions

ALLOWED = "https://shop.example.test"
BROWSER = {"User-Agent": CHROME, "Accept-Language": "en-US,en;q=0.9"}


def options(pocketbase: PocketBaseServer, website: Website, **extra: Any) -> dict[str, Any]:
    return {
        "pocketbase_url": pocketbase.url,
        "site_id": website.tracking_id,
        "admin_email": pocketbase.email,
        "admin_password": pocketbase.password,
        "strict": True,
        "realtime": False,
        **extra,
    }


def post(
    client: FlaskClient, payload: object, content_type: str, ip: str = "203.0.113.10", **kw: Any
) -> Any:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return client.post(
        "/api/event",
        data=data,
        content_type=content_type,
        headers={**BROWSER, **kw.pop("headers", {})},
        environ_base={"REMOTE_ADDR": ip},
        **kw,
    )


@pytest.fixture
def sdk(pocketbase: PocketBaseServer, website: Website) -> Iterator[SkoposSDK]:
    sdk = SkoposSDK.init(**options(pocketbase, website))
    yield sdk
    sdk.shutdown(timeout=5)


@pytest.fixture
def client(sdk: SkoposSDK) -> FlaskClient:
    app = Flask(__name__)
    Skopos(app, sdk=sdk, config=EndpointConfig(cors_origins=[ALLOWED]))
    return app.test_client()


@pytest.mark.pocketbase
def test_beacon_and_fetch_bodies_land_in_pocketbase(
    client: FlaskClient, sdk: SkoposSDK, pb: PocketBaseClient, website: Website
) -> None:
    beacon = post(
        client,
        page_view(website.domain, "/pricing", referrer="https://news.example.org/a?b=c"),
        "text/plain;charset=UTF-8",  # what sendBeacon sends
        ip="203.0.113.10",
    )
    fetched = post(
        client, page_view(website.domain, "/docs"), "application/json", ip="198.51.100.20"
    )
    assert (beacon.status_code, beacon.data) == (204, b"")
    assert (fetched.status_code, fetched.data) == (204, b"")
    assert "Content-Type" not in beacon.headers
    assert sdk.flush(timeout=10)

    sessions = {s["entryPath"]: s for s in site_sessions(pb, website.id)}
    assert sorted(sessions) == ["/docs", "/pricing"]
    pricing = sessions["/pricing"]
    assert (pricing["browser"], pricing["os"]) == ("Chrome", "Windows")
    assert pricing["referrer"] == "https://news.example.org/a"
    assert sessions["/pricing"]["visitor"] != sessions["/docs"]["visitor"]
    events = site_events(pb, website.id)
    assert sorted((e["type"], e["path"], e["session"]) for e in events) == [
        ("pageView", "/docs", sessions["/docs"]["id"]),
        ("pageView", "/pricing", pricing["id"]),
    ]
    stats = sdk.stats()
    assert (stats.accepted, stats.written, stats.dropped) == (2, 2, {})


@pytest.mark.pocketbase
def test_refusals_write_nothing(
    client: FlaskClient, sdk: SkoposSDK, pb: PocketBaseClient, website: Website
) -> None:
    too_big = page_view(website.domain, "/big", padding="x" * 16_384)
    assert post(client, too_big, "text/plain").status_code == 413
    assert post(client, page_view(website.domain, "/x"), "application/xml").status_code == 415
    wrong_method = client.get("/api/event", headers=BROWSER)
    assert wrong_method.status_code == 405
    assert "POST" in wrong_method.headers["Allow"]
    assert sdk.flush(timeout=10)
    assert sdk.stats().accepted == 0
    assert site_sessions(pb, website.id) == []


@pytest.mark.pocketbase
def test_a_malformed_content_length_is_a_400(client: FlaskClient, sdk: SkoposSDK) -> None:
    for value in ("²", "١٢", "-1"):
        answer = client.post(
            "/api/event",
            data=b"{}",
            content_type="text/plain",
            headers=BROWSER,
            environ_overrides={"CONTENT_LENGTH": value},
        )
        assert answer.status_code == 400, value
    assert sdk.stats().accepted == 0


@pytest.mark.pocketbase
def test_behind_proxy_fix_resolved_clients_are_no_spoofing(
    pocketbase: PocketBaseServer, pb: PocketBaseClient, website: Website
) -> None:
    # ProxyFix rewrites REMOTE_ADDR from X-Forwarded-For and keeps the header: the SDK saw an
    # untrusted peer with a forwarding header on every request and counted them all.
    pb.update_record("websites", website.id, {"storeRawIp": True})
    app = Flask(__name__)
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)  # type: ignore[method-assign]
    app.config["SKOPOS"] = options(pocketbase, website, trusted_proxies=["127.0.0.1/32"])
    skopos = Skopos(app)
    client = app.test_client()
    try:
        for n in range(3):
            forwarded = {"X-Forwarded-For": f"198.51.100.{n + 1}"}
            post(
                client,
                page_view(website.domain, f"/{n}"),
                "text/plain",
                "127.0.0.1",
                headers=forwarded,
            )
        # Without ProxyFix, a direct peer forging the header is counted.
        direct = Flask(__name__)
        Skopos(direct, sdk=skopos.sdk)
        forged = {"X-Forwarded-For": "192.0.2.1"}
        post(direct.test_client(), page_view(website.domain, "/x"), "text/plain", headers=forged)
        assert skopos.sdk.flush(timeout=10)
        assert skopos.sdk.stats().spoofed_forwarding_headers == 1
    finally:
        skopos.shutdown(timeout=5)
    ips = {s["entryPath"]: s["ipAddress"] for s in site_sessions(pb, website.id)}
    assert ips == {
        "/0": "198.51.100.1",
        "/1": "198.51.100.2",
        "/2": "198.51.100.3",
        "/x": "203.0.113.10",
    }


@pytest.mark.pocketbase
def test_cors(client: FlaskClient) -> None:
    preflight = {"Access-Control-Request-Method": "POST", "Origin": ALLOWED}
    allowed = client.options("/api/event", headers=preflight)
    assert allowed.status_code == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert "POST" in allowed.headers["Access-Control-Allow-Methods"]
    assert allowed.headers["Access-Control-Allow-Headers"] == "Content-Type"
    assert allowed.headers["Vary"] == "Origin"

    refused = client.options(
        "/api/event", headers={**preflight, "Origin": "https://evil.example.test"}
    )
    assert refused.status_code == 204
    assert not any(name.startswith("Access-Control") for name, _ in refused.headers)

    answer = post(client, {"type": "pageView"}, "text/plain", headers={"Origin": ALLOWED})
    assert answer.status_code == 204
    assert answer.headers["Access-Control-Allow-Origin"] == ALLOWED


@pytest.mark.pocketbase
def test_client_script_with_etag(client: FlaskClient) -> None:
    script, etag = client_script()
    answer = client.get("/skopos.js")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert answer.headers["ETag"] == etag
    assert answer.headers["Cache-Control"] == "public, max-age=604800"
    assert answer.data == script
    head = client.head("/skopos.js")
    assert (head.status_code, head.data, head.headers["Content-Length"]) == (
        200,
        b"",
        str(len(script)),
    )
    cached = client.get("/skopos.js", headers={"If-None-Match": etag})
    assert (cached.status_code, cached.data, cached.headers["ETag"]) == (304, b"", etag)


@pytest.mark.pocketbase
def test_factory_pattern_starts_the_sdk_from_app_config(
    pocketbase: PocketBaseServer, pb: PocketBaseClient, website: Website
) -> None:
    skopos = Skopos()
    app = Flask(__name__)
    app.config["SKOPOS"] = options(pocketbase, website, event_path="/stats/hit")

    @app.post("/signup")
    def signup() -> tuple[str, int]:
        skopos.sdk.track_server_event(request, "signup", {"plan": "pro"})
        return "", 201

    skopos.init_app(app)
    assert app.extensions["skopos"] is skopos
    assert skopos._lazy is not None
    assert skopos._lazy.peek() is None  # init_app starts nothing
    try:
        client = app.test_client()
        browser = {"headers": BROWSER, "environ_base": {"REMOTE_ADDR": "192.0.2.44"}}
        hit = client.post(
            "/stats/hit",
            data=json.dumps(page_view(website.domain, "/welcome")),
            content_type="text/plain",
            **browser,
        )
        assert hit.status_code == 204
        assert client.post("/signup", **browser).status_code == 201
        assert client.post("/api/event", **browser).status_code == 404  # the path moved
        assert skopos.sdk.flush(timeout=10)

        [session] = site_sessions(pb, website.id)
        events = site_events(pb, website.id)
        assert sorted((e["type"], e["eventName"], e["session"]) for e in events) == [
            ("custom", "signup", session["id"]),
            ("pageView", "", session["id"]),
        ]
    finally:
        skopos.shutdown(timeout=5)
    assert skopos._lazy.peek() is None


@pytest.mark.pocketbase
def test_pocketbase_misconfigured_is_the_sdks_business_never_the_hosts(
    pocketbase: PocketBaseServer, website: Website
) -> None:
    # An unknown tracking id (or PocketBase down, wrong credentials...): the SDK starts,
    # the endpoint answers 204, the calls wait in the queue and stats() says why.
    app = Flask(__name__)
    app.config["SKOPOS"] = options(pocketbase, website, site_id="no-such-site", strict=False)
    skopos = Skopos(app)
    client = app.test_client()
    try:
        for _ in range(3):
            assert post(client, page_view(website.domain, "/"), "text/plain").status_code == 204
        stats = skopos.sdk.stats()
        assert (stats.accepted, stats.written, stats.connected) == (3, 0, False)
        deadline = time.monotonic() + 10
        while skopos.sdk.stats().last_error is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "no-such-site" in str(skopos.sdk.stats().last_error)
    finally:
        skopos.shutdown(timeout=1)


def test_a_bad_option_means_503_and_one_log_line(
    pocketbase: PocketBaseServer,
    website: Website,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SKOPOS_ADMIN_PASSWORD", raising=False)
    app = Flask(__name__)
    app.config["SKOPOS"] = {
        k: v for k, v in options(pocketbase, website).items() if k != "admin_password"
    }
    skopos = Skopos(app)
    client = app.test_client()
    with caplog.at_level(logging.ERROR, logger="skopos"):
        for _ in range(3):
            assert post(client, page_view(website.domain, "/"), "text/plain").status_code == 503
    [logged] = caplog.records  # one attempt, not three
    assert "admin_password" in logged.getMessage()
    with pytest.raises(ConfigurationError, match="admin_password"):
        skopos.sdk  # noqa: B018
    skopos.shutdown()  # nothing started: nothing to do


def test_settings_are_checked_when_the_extension_is_registered() -> None:
    app = Flask(__name__)
    app.config["SKOPOS"] = {"site": "abc"}
    with pytest.raises(ConfigurationError, match=r"unknown key.*site"):
        Skopos(app)
    for bad in ({"event_path": "api/event"}, {"max_body_bytes": "16k"}, {"batch_interval": 0}):
        app.config["SKOPOS"] = bad
        with pytest.raises(ConfigurationError, match=next(iter(bad))):
            Skopos(app)
    app.config["SKOPOS"] = {"site_id": "abc"}
    with pytest.raises(ConfigurationError, match="site_id"):
        Skopos(app, sdk=object())  # type: ignore[arg-type]
    shared = Skopos(app)  # starts nothing yet
    other = Flask("other")
    other.config["SKOPOS"] = {"site_id": "xyz"}
    with pytest.raises(ConfigurationError, match="one extension per app"):
        shared.init_app(other)


def test_snapshot_of_a_flask_request() -> None:
    app = Flask(__name__)
    context = app.test_request_context(
        "/api/event?x=1",
        method="POST",
        headers={**BROWSER, "X-Forwarded-For": "10.0.0.1"},
        environ_base={"REMOTE_ADDR": "203.0.113.77"},
    )
    with context:
        for candidate in (request, request._get_current_object()):  # type: ignore[attr-defined]  # the proxy and the object
            snap = take_snapshot(candidate)
            assert snap is not None
            assert (snap.peer, snap.user_agent, snap.path) == ("203.0.113.77", CHROME, "/api/event")
            assert (snap.accept_language, snap.x_forwarded_for) == ("en-US,en;q=0.9", "10.0.0.1")


# -- /collect: the official client script's endpoint -------------------------------------------


def flask_send(client: FlaskClient, ip: str = "203.0.113.10") -> Send:
    def send(
        method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        answer = client.open(
            path,
            method=method,
            data=body,
            headers={**BROWSER, **headers},
            environ_base={"REMOTE_ADDR": ip},
        )
        return answer.status_code, {k.lower(): v for k, v in answer.headers.items()}, answer.data

    return send


@pytest.mark.pocketbase
def test_collect_lands_as_the_dashboard_collector_writes_it(
    client: FlaskClient, sdk: SkoposSDK, pb: PocketBaseClient, website: Website
) -> None:
    sent = visit(website.tracking_id, website.domain)
    post_visit(flask_send(client), sent)
    assert sdk.flush(timeout=10)
    assert_landed(pb, website.id, sent)
    assert_collect_http(flask_send(client), website.domain, ALLOWED)
    stats = sdk.stats()
    assert (stats.accepted, stats.written, stats.dropped) == (5, 5, {})


@pytest.mark.pocketbase
def test_a_collect_preflight_starts_the_sdk_to_know_its_sites(
    pocketbase: PocketBaseServer, website: Website
) -> None:
    app = Flask(__name__)
    app.config["SKOPOS"] = options(pocketbase, website, collect_path="/t/collect")
    skopos = Skopos(app)
    assert skopos._lazy is not None
    try:
        client = app.test_client()
        origin = f"https://www.{website.domain}"
        answer = client.options("/t/collect", headers={"Origin": origin})
        assert (answer.status_code, answer.headers["Access-Control-Allow-Origin"]) == (204, origin)
        assert skopos._lazy.peek() is not None
        assert client.get("/t/collect/health").status_code == 200
        assert client.get("/collect/health").status_code == 404  # the path moved
    finally:
        skopos.shutdown(timeout=5)
