"""Never lose an accepted event, never write one twice: faults injected for real."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Callable

import pytest

from skopos._admin.setup import Website, ensure_website
from skopos._pocketbase.client import PocketBaseClient
from tests._support.fault_proxy import FaultProxy
from tests._support.pocketbase_server import PocketBaseServer, start_sdk
from tests._support.tracking_helpers import (
    environ,
    js_error,
    page_view,
    records,
    site_events,
    site_sessions,
)

pytestmark = pytest.mark.pocketbase


def test_lost_answers_and_server_errors_neither_lose_nor_duplicate(
    pocketbase: PocketBaseServer, pb: PocketBaseClient, website: Website
) -> None:
    batches = itertools.count(1)
    sent_batches = 0

    def plan(method: str, path: str, number: int) -> str:
        nonlocal sent_batches
        if path != "/api/batch":
            return "pass"
        sent_batches = next(batches)
        return {0: "drop", 1: "error"}.get(sent_batches % 3, "pass")  # 2 of 3 batches fail

    with FaultProxy(pocketbase.url, plan) as proxy:
        sdk = start_sdk(pocketbase, website, url=proxy.url, js_error_batch_interval=0.2)
        visitors, views = 8, 0
        # At least 5 rounds, and until a dozen batches were sent: a loaded machine merges
        # more calls into each batch, and fewer batches would meet fewer faults.
        while views < 5 or (sent_batches < 12 and views < 40):
            for visitor in range(visitors):
                request = environ(f"203.0.113.{visitor + 1}")
                sdk.track_api_event(request, page_view(website.domain, f"/v{visitor}/{views}"))
                if visitor % 2 == 0:
                    sdk.track_api_event(request, js_error(website.domain, f"Error {visitor % 4}"))
            views += 1
            time.sleep(0.25)  # several batches, several error intervals
        assert sdk.flush(timeout=60)
        stats = sdk.stats()
        sdk.shutdown(timeout=10)

    assert proxy.actions["drop"] >= 3
    assert proxy.actions["error"] >= 3
    assert stats.dropped == {}
    assert stats.written == stats.accepted == visitors * views + (visitors // 2) * views
    assert len(records(pb, "visitors", website=website.id)) == visitors
    assert len(site_sessions(pb, website.id)) == visitors
    events = Counter(e["path"] for e in site_events(pb, website.id))
    assert events == Counter({f"/v{v}/{n}": 1 for v in range(visitors) for n in range(views)})
    errors = {e["errorMessage"]: e["count"] for e in records(pb, "js_errors", website=website.id)}
    assert errors == {"Error 0": 2 * views, "Error 2": 2 * views}


def test_pocketbase_down_then_restarted_loses_nothing(
    pocketbase_factory: Callable[..., PocketBaseServer],
) -> None:
    server = pocketbase_factory()
    with server.client() as admin:
        site = ensure_website(admin, "outage", "outage.example.test")
    sdk = start_sdk(server, site)
    sent = 0

    def send(count: int) -> None:
        nonlocal sent
        for _ in range(count):
            request = environ(f"198.51.100.{sent % 20 + 1}")
            sdk.track_api_event(request, page_view(site.domain, f"/o/{sent}"))
            sent += 1

    send(50)
    assert sdk.flush(timeout=10)
    server.process.stop()
    started = time.monotonic()
    while time.monotonic() - started < 10:  # PocketBase is down for 10 s
        send(20)
        time.sleep(0.5)
    assert sdk.stats().pending + sdk.stats().queue_depth > 0
    server.process.start()
    send(50)
    assert sdk.flush(timeout=60)
    stats = sdk.stats()
    sdk.shutdown(timeout=10)
    assert stats.dropped == {}
    assert stats.written == sent
    assert stats.retries > 0
    with server.client() as admin:
        paths = Counter(e["path"] for e in site_events(admin, site.id))
    assert paths == Counter({f"/o/{n}": 1 for n in range(sent)})
