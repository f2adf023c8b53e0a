"""The raw WSGI endpoint (``skopos.integrations.wsgi``), and trusted proxies behind it, end to
end into PocketBase."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

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
from tests._support.pocketbase_server import PocketBaseServer, start_sdk
from tests._support.tracking_helpers import CHROME, page_view, records, site_events

pytestmark = pytest.mark.pocketbase


@pytest.fixture
def sdk(pocketbase: PocketBaseServer, website: Website) -> Iterator[SkoposSDK]:
    instance = start_sdk(pocketbase, website, trusted_proxies=["10.0.0.0/8"])
    yield instance
    instance.shutdown(timeout=5)


def call_wsgi(
    app: WsgiMiddleware, method: str, path: str, body: bytes = b"", **extra: str
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
