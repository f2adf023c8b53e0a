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
from skopos.integrations.endpoint import client_script
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


async def _post(
    app: AsgiMiddleware,
    client: tuple[str, int],
    headers: list[tuple[bytes, bytes]],
    body: bytes = b"{}",
) -> int:
    sent: list[MutableMapping[str, Any]] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/event",
        "client": client,
        "headers": [(b"user-agent", CHROME.encode()), (b"content-type", b"text/plain"), *headers],
    }
    await app(scope, receive, send)
    status: int = sent[0]["status"]
    return status


def test_a_malformed_content_length_is_a_400(sdk: SkoposSDK) -> None:
    app = AsgiMiddleware(None, sdk)
    for value in ("²", "١٢", "-1"):
        header = (b"content-length", value.encode("utf-8"))
        assert asyncio.run(_post(app, ("203.0.113.9", 1), [header])) == 400, value
    assert sdk.stats().accepted == 0


def test_forwarding_headers_count_only_from_untrusted_peers(
    sdk: SkoposSDK, website: Website
) -> None:
    app = AsgiMiddleware(None, sdk)
    body = json.dumps(page_view(website.domain, "/")).encode()
    forwarded = [(b"x-forwarded-for", b"198.51.100.1")]
    for peer in ("10.1.2.3", "198.51.100.1", "203.0.113.9"):  # trusted, resolved, forged
        assert asyncio.run(_post(app, (peer, 1), forwarded, body)) == 204
    assert sdk.flush(timeout=10)
    assert sdk.stats().spoofed_forwarding_headers == 1
