"""The raw WSGI endpoint (``skopos.integrations.wsgi``), and trusted proxies behind it, end to
end into PocketBase."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from werkzeug.middleware.proxy_fix import ProxyFix

from skopos import SkoposSDK
from skopos._admin.setup import Website
from skopos._pocketbase.client import PocketBaseClient
from skopos.integrations.endpoint import EndpointConfig, client_script
from skopos.integrations.wsgi import SkoposMiddleware as WsgiMiddleware
from tests._support.collect_scenario import (
    Send,
    assert_collect_http,
    assert_landed,
    post_visit,
    visit,
)
from tests._support.pocketbase_server import MakeSdk, PocketBaseServer, start_sdk
from tests._support.tracking_helpers import CHROME, page_view, records, site_events

pytestmark = pytest.mark.pocketbase


@pytest.fixture
def sdk(pocketbase: PocketBaseServer, website: Website) -> Iterator[SkoposSDK]:
    instance = start_sdk(pocketbase, website, trusted_proxies=["10.0.0.0/8"])
    yield instance
    instance.shutdown(timeout=5)


def call_wsgi(
    app: Any, method: str, path: str, body: bytes = b"", **extra: str
) -> tuple[str, dict[str, str], bytes]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "REMOTE_ADDR": "203.0.113.9",
        "HTTP_USER_AGENT": CHROME,
        "HTTP_ACCEPT_LANGUAGE": "en",
        "CONTENT_TYPE": "text/plain;charset=UTF-8",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        **extra,
    }
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        captured["status"], captured["headers"] = status, dict(headers)

    chunks = app(environ, start_response)
    return captured["status"], captured["headers"], b"".join(chunks)


def test_wsgi_endpoint_queues_and_answers(
    sdk: SkoposSDK, pb: PocketBaseClient, website: Website
) -> None:
    def host_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"host"]

    app = WsgiMiddleware(host_app, sdk, EndpointConfig(cors_origins=["https://shop.example"]))
    body = json.dumps(page_view(website.domain, "/wsgi")).encode()
    status, headers, _ = call_wsgi(
        app, "POST", "/api/event", body, HTTP_ORIGIN="https://shop.example"
    )
    assert status == "204 No Content"
    assert headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert call_wsgi(app, "GET", "/elsewhere")[2] == b"host"
    assert call_wsgi(app, "GET", "/api/event")[0].startswith("405")
    assert call_wsgi(app, "POST", "/api/event", b"x" * 20000)[0].startswith("413")
    assert call_wsgi(app, "POST", "/api/event", b"{}", CONTENT_TYPE="application/xml")[
        0
    ].startswith("415")
    status, headers, script = call_wsgi(app, "GET", "/skopos.js")
    assert (status, script) == ("200 OK", client_script()[0])
    assert headers["Content-Type"].startswith("text/javascript")
    assert call_wsgi(app, "GET", "/skopos.js", HTTP_IF_NONE_MATCH=headers["ETag"])[0].startswith(
        "304"
    )
    assert sdk.flush(timeout=10)
    assert [e["path"] for e in site_events(pb, website.id)] == ["/wsgi"]


def test_forwarded_headers_count_only_from_trusted_proxies(
    sdk: SkoposSDK, pb: PocketBaseClient, website: Website
) -> None:
    app = WsgiMiddleware(None, sdk)
    body = json.dumps(page_view(website.domain, "/p")).encode()
    # Behind the trusted proxy 10.1.2.3, two different clients are two visitors.
    for client in ("198.51.100.1", "198.51.100.2"):
        call_wsgi(
            app, "POST", "/api/event", body, REMOTE_ADDR="10.1.2.3", HTTP_X_FORWARDED_FOR=client
        )
    # A direct peer forging the header stays one visitor (its own address) and is counted.
    for forged in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
        call_wsgi(app, "POST", "/api/event", body, HTTP_X_FORWARDED_FOR=forged)
    assert sdk.flush(timeout=10)
    assert len(records(pb, "visitors", website=website.id)) == 3
    assert sdk.stats().spoofed_forwarding_headers == 3


@pytest.mark.parametrize("value", ["²", "١٢", "-1", "1e3"])
def test_a_malformed_content_length_is_a_400_not_an_exception(sdk: SkoposSDK, value: str) -> None:
    # "²".isdigit() is True and int("²") raises: it went out of the middleware as a 500.
    app = WsgiMiddleware(None, sdk)
    status, _, _ = call_wsgi(app, "POST", "/api/event", b"{}", CONTENT_LENGTH=value)
    assert status == "400 Bad Request"
    assert sdk.stats().accepted == 0


def _sessions_by_path(pb: PocketBaseClient, website: Website) -> dict[str, str]:
    return {s["entryPath"]: s["ipAddress"] for s in records(pb, "sessions", website=website.id)}


def test_a_forged_long_x_forwarded_for_never_names_the_client(
    make_sdk: MakeSdk, pb: PocketBaseClient, website: Website
) -> None:
    # The client sends a long X-Forwarded-For; our proxy (10.0.0.1) appends the client's real
    # address. Cut to its first 1,024 characters, the proxy's part was lost: the address was
    # empty, or (carefully sized) the one the client chose.
    pb.update_record("websites", website.id, {"storeRawIp": True})
    sdk = make_sdk(trusted_proxies="private")
    app = WsgiMiddleware(None, sdk)
    padding = ", ".join(["6.6.6.6"] * 290)  # ~2.6 KB
    sized = "x" * (1024 - len("1.2.3.4")) + "1.2.3.4"  # its first 1,024 characters end in it
    cases = [("/long", padding, 23), ("/sized", sized, 24), ("/huge", padding * 20, 25)]
    for path, forged, client in cases:
        body = json.dumps(page_view(website.domain, path)).encode()
        call_wsgi(
            app,
            "POST",
            "/api/event",
            body,
            REMOTE_ADDR="10.0.0.1",
            HTTP_X_FORWARDED_FOR=f"{forged}, 198.51.100.{client}",
        )
    assert sdk.flush(timeout=10)
    assert _sessions_by_path(pb, website) == {
        "/long": "198.51.100.23",
        "/sized": "198.51.100.24",
        "/huge": "198.51.100.25",
    }


def test_only_the_header_our_proxy_sets_names_the_client(
    make_sdk: MakeSdk, pb: PocketBaseClient, website: Website
) -> None:
    # Behind an nginx that sets X-Real-IP, a client-sent Forwarded or X-Forwarded-For was
    # read first: the client chose its address, or with for=unknown had none, and the IP
    # blacklist was skipped.
    pb.update_record("websites", website.id, {"storeRawIp": True, "ipBlacklist": ["198.51.100.66"]})
    sdk = make_sdk(trusted_proxies="private", client_ip_header="nginx")
    app = WsgiMiddleware(None, sdk)

    def send(path: str, real_ip: str | None, **forged: str) -> None:
        body = json.dumps(page_view(website.domain, path)).encode()
        extra = {"HTTP_X_REAL_IP": real_ip} if real_ip else {}
        call_wsgi(app, "POST", "/api/event", body, REMOTE_ADDR="10.0.0.1", **extra, **forged)

    send("/forwarded", "198.51.100.23", HTTP_FORWARDED="for=203.0.113.99")
    send("/xff", "198.51.100.24", HTTP_X_FORWARDED_FOR="203.0.113.99")
    send("/blacklisted", "198.51.100.66", HTTP_FORWARDED="for=unknown")
    send("/no-header", None, HTTP_X_FORWARDED_FOR="203.0.113.99")  # no usable address
    assert sdk.flush(timeout=10)
    assert _sessions_by_path(pb, website) == {
        "/forwarded": "198.51.100.23",
        "/xff": "198.51.100.24",
    }
    stats = sdk.stats()
    assert stats.dropped == {"ip_blacklisted": 1, "no_client_ip": 1}
    assert stats.spoofed_forwarding_headers == 0


def test_a_peer_a_proxy_fix_resolved_is_no_spoofing(
    make_sdk: MakeSdk, pb: PocketBaseClient, website: Website
) -> None:
    # Werkzeug's ProxyFix (like uvicorn's proxy headers) puts the client's address in
    # REMOTE_ADDR and leaves X-Forwarded-For as it came: that names the peer, no attempt.
    pb.update_record("websites", website.id, {"storeRawIp": True})
    sdk = make_sdk(trusted_proxies=["127.0.0.1/32"])
    app = ProxyFix(WsgiMiddleware(None, sdk), x_for=1)
    for n in range(3):
        body = json.dumps(page_view(website.domain, f"/fixed/{n}")).encode()
        call_wsgi(
            app,
            "POST",
            "/api/event",
            body,
            REMOTE_ADDR="127.0.0.1",
            HTTP_X_FORWARDED_FOR=f"198.51.100.{n + 1}",
        )
    assert sdk.flush(timeout=10)
    assert sdk.stats().spoofed_forwarding_headers == 0
    ips = _sessions_by_path(pb, website)
    assert [ips[f"/fixed/{n}"] for n in range(3)] == [f"198.51.100.{n + 1}" for n in range(3)]


def wsgi_send(app: WsgiMiddleware) -> Send:
    def send(
        method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        environ = {
            (
                "CONTENT_TYPE"
                if name == "Content-Type"
                else "HTTP_" + name.upper().replace("-", "_")
            ): value
            for name, value in headers.items()
        }
        status, answered, content = call_wsgi(app, method, path, body, **environ)
        return int(status.split()[0]), {k.lower(): v for k, v in answered.items()}, content

    return send


def test_collect_lands_as_the_dashboard_collector_writes_it(
    sdk: SkoposSDK, pb: PocketBaseClient, website: Website
) -> None:
    app = WsgiMiddleware(None, sdk, EndpointConfig(cors_origins=["https://shop.example"]))
    sent = visit(website.tracking_id, website.domain)
    post_visit(wsgi_send(app), sent)
    assert sdk.flush(timeout=10)
    assert_landed(pb, website.id, sent)
    assert_collect_http(wsgi_send(app), website.domain, "https://shop.example")
    stats = sdk.stats()
    assert (stats.accepted, stats.written, stats.dropped) == (5, 5, {})
    assert call_wsgi(app, "POST", "/collect/health")[0].startswith("405")
    without = WsgiMiddleware(None, sdk, EndpointConfig(collect_path=None))
    assert call_wsgi(without, "POST", "/collect", sent.bodies[0])[0].startswith("404")
