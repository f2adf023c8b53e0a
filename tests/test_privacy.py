"""Privacy that can be proven: what is stored, what can be recomputed, whom the SDK talks to."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path
from typing import Any

import pytest

from skopos._admin.setup import Website
from skopos._pocketbase.client import PocketBaseClient
from tests._support.pocketbase_server import MakeSdk, PocketBaseServer
from tests._support.tracking_helpers import (
    CHROME,
    FIREFOX,
    custom,
    environ,
    js_error,
    page_view,
    records,
    site_events,
    site_sessions,
)

pytestmark = pytest.mark.pocketbase

CLIENT_IP = "81.2.69.142"


def everything_stored(pb: PocketBaseClient, website: Website) -> str:
    """Every record the site's traffic wrote, as one JSON text."""
    return json.dumps(
        {
            "visitors": records(pb, "visitors", website=website.id),
            "sessions": site_sessions(pb, website.id),
            "events": site_events(pb, website.id),
            "js_errors": records(pb, "js_errors", website=website.id),
        }
    )


def send_a_visit(sdk: Any, domain: str) -> None:
    request = environ(CLIENT_IP)
    sdk.track_api_event(request, page_view(domain, "/"))
    sdk.track_api_event(request, custom(domain, "/", "signup", {"plan": "pro"}))
    sdk.track_api_event(request, js_error(domain, "boom"))
    sdk.track_server_event(request, "paid", {"amount": 3})


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every address a socket of this process connects to while the test runs."""
    seen: list[tuple[str, int]] = []
    original = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            seen.append((str(address[0]), int(address[1])))
        return original(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return seen


def test_the_sdk_connects_to_nothing_but_pocketbase(
    pocketbase: PocketBaseServer,
    website: Website,
    make_sdk: MakeSdk,
    connections: list[tuple[str, int]],
) -> None:
    sdk = make_sdk(realtime=True, trusted_proxies="cloudflare")
    send_a_visit(sdk, website.domain)
    assert sdk.flush(timeout=10)
    sdk.shutdown(timeout=10)
    port = int(pocketbase.url.rsplit(":", 1)[1])
    assert connections, "the guard saw no connection at all"
    assert set(connections) == {("127.0.0.1", port)}


def test_no_record_and_no_spool_line_holds_the_client_ip_unless_the_site_asks(
    pb: PocketBaseClient, website: Website, make_sdk: MakeSdk, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    sdk = make_sdk(spool_dir=str(spool))
    send_a_visit(sdk, website.domain)
    assert sdk.flush(timeout=10)
    journaled = b"".join(path.read_bytes() for path in spool.glob("*") if path.is_file())
    sdk.shutdown(timeout=10)
    assert CLIENT_IP not in everything_stored(pb, website)
    assert CLIENT_IP.encode() not in journaled

    pb.update_record("websites", website.id, {"storeRawIp": True})
    sdk = make_sdk()
    sdk.track_api_event(environ(CLIENT_IP, FIREFOX), page_view(website.domain, "/again"))
    assert sdk.flush(timeout=10)
    sessions = {s["entryPath"]: s for s in site_sessions(pb, website.id)}
    assert sessions["/again"]["ipAddress"] == CLIENT_IP  # stored because the site asks


def test_the_visitor_id_is_no_unkeyed_hash_of_what_the_request_shows(
    pb: PocketBaseClient, website: Website, make_sdk: MakeSdk
) -> None:
    sdk = make_sdk()
    sdk.track_api_event(environ(CLIENT_IP), page_view(website.domain, "/"))
    assert sdk.flush(timeout=10)
    [visitor] = records(pb, "visitors", website=website.id)
    stored = visitor["visitorId"]
    guesses = set()
    for site in (website.id, website.tracking_id, website.domain):
        for separator in ("", "|", ":", "\x1f", "-"):
            text = separator.join((site, CLIENT_IP, CHROME))
            for digest in (hashlib.sha256, hashlib.md5, hashlib.sha1):
                full = digest(text.encode()).hexdigest()
                guesses.update({full, full[:32], full[:16]})
    assert stored not in guesses
