"""The raw ASGI endpoint (``skopos.integrations.asgi``), end to end into PocketBase."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest

from skopos import SkoposSDK
from skopos._admin.setup import Website
from skopos._pocketbase.client import PocketBaseClient
from skopos.integrations.asgi import SkoposMiddleware as AsgiMiddleware
from skopos.integrations.endpoint import EndpointConfig, client_script
from tests._support.collect_scenario import (
    Send,
    assert_collect_http,
    assert_landed,
    post_visit,
    visit,
)
from tests._support.pocketbase_server import PocketBaseServer, start_sdk
from tests._support.tracking_helpers import CHROME, page_view, site_sessions

pytestmark = pytest.mark.pocketbase


@pytest.fixture
def sdk(pocketbase: PocketBaseServer, website: Website) -> Iterator[SkoposSDK]:
    instance = start_sdk(pocketbase, website, trusted_proxies=["10.0.0.0/8"])
    yield instance
    instance.shutdown(timeout=5)


def test_asgi_endpoint_queues_and_answers(
    sdk: SkoposSDK, pb: PocketBaseClient, website: Website
) -> None:
    app = AsgiMiddleware(None, sdk)

    async def call(method: str, path: str, body: bytes = b"", chunks: int = 1) -> tuple[int, bytes]:
        size = max(1, len(body) // chunks + 1)
        parts = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
        messages = [
            {"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
            for i, part in enumerate(parts)
        ]
        sent: list[MutableMapping[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": method,
            "path": path,
            "client": ("2001:db8::5", 1),
            "headers": [
                (b"user-agent", CHROME.encode()),
                (b"accept-language", b"en"),
                (b"content-type", b"text/plain"),
            ],
        }
        await app(scope, receive, send)
        return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])

    body = json.dumps(page_view(website.domain, "/asgi")).encode()

    async def scenario() -> None:
        assert (await call("POST", "/api/event", body, chunks=3))[0] == 204
        assert (await call("POST", "/api/event", b"x" * 20000, chunks=4))[0] == 413  # no length
        assert (await call("GET", "/api/event"))[0] == 405
        assert (await call("GET", "/skopos.js"))[1] == client_script()[0]
        assert (await call("GET", "/other"))[0] == 404

    asyncio.run(scenario())
    assert sdk.flush(timeout=10)
    [session] = site_sessions(pb, website.id)
    assert session["entryPath"] == "/asgi"


def test_a_malformed_content_length_is_a_400(sdk: SkoposSDK) -> None:
    app = AsgiMiddleware(None, sdk)
    for value in ("²", "١٢", "-1"):
        headers = {"content-type": "text/plain", "content-length": value}
        assert asgi_send(app)("POST", "/api/event", b"{}", headers)[0] == 400, value
    assert sdk.stats().accepted == 0


def test_forwarding_headers_count_only_from_untrusted_peers(
    sdk: SkoposSDK, website: Website
) -> None:
    app = AsgiMiddleware(None, sdk)
    body = json.dumps(page_view(website.domain, "/")).encode()
    forwarded = {"content-type": "text/plain", "x-forwarded-for": "198.51.100.1"}
    for peer in ("10.1.2.3", "198.51.100.1", "203.0.113.9"):  # trusted, resolved, forged
        assert asgi_send(app, peer)("POST", "/api/event", body, forwarded)[0] == 204
    assert sdk.flush(timeout=10)
    assert sdk.stats().spoofed_forwarding_headers == 1


def asgi_send(app: AsgiMiddleware, peer: str = "2001:db8::5") -> Send:
    """The middleware called with one ASGI request from ``peer``, body in one message."""

    def send(
        method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        sent: list[MutableMapping[str, Any]] = []
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def respond(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": method,
            "path": path,
            "client": (peer, 1),
            "headers": [
                (b"user-agent", CHROME.encode()),
                (b"accept-language", b"en-US,en;q=0.9"),
                *((name.lower().encode(), value.encode()) for name, value in headers.items()),
            ],
        }
        asyncio.run(app(scope, receive, respond))
        answered = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
        return sent[0]["status"], answered, b"".join(m.get("body", b"") for m in sent[1:])

    return send


def test_collect_lands_as_the_dashboard_collector_writes_it(
    sdk: SkoposSDK, pb: PocketBaseClient, website: Website
) -> None:
    app = AsgiMiddleware(None, sdk, EndpointConfig(cors_origins=["https://shop.example"]))
    sent = visit(website.tracking_id, website.domain)
    post_visit(asgi_send(app), sent)
    assert sdk.flush(timeout=10)
    assert_landed(pb, website.id, sent)
    assert_collect_http(asgi_send(app), website.domain, "https://shop.example")
    head = asgi_send(app)("HEAD", "/collect/health", b"", {})
    assert (head[0], head[2]) == (200, b"")
    stats = sdk.stats()
    assert (stats.accepted, stats.written, stats.dropped) == (5, 5, {})
