"""The public ``SkoposSDK`` end to end against a real PocketBase: what lands is what we expect.

What one station decides is tested beside its module (filters: ``tracking/test_pipeline.py``,
sessions across processes: ``delivery/test_sessions.py``, ...); here, the public calls.
"""

from __future__ import annotations

import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from skopos import ConfigurationError, PocketBaseAuthError, PocketBaseUnreachable, SkoposSDK
from skopos._admin.embedded import free_port
from skopos._admin.setup import Website, ensure_website, new_tracking_id
from skopos._delivery import connecting
from skopos._pocketbase.client import PocketBaseClient
from tests._support import collect_client as collect
from tests._support.fault_proxy import FaultProxy
from tests._support.memory_probe import probe
from tests._support.pocketbase_server import MakeSdk, PocketBaseServer
from tests._support.tracking_helpers import (
    CHROME,
    IPHONE,
    custom,
    environ,
    js_error,
    page_view,
    records,
    scope,
    site_events,
    site_sessions,
)

pytestmark = pytest.mark.pocketbase


def test_page_views_custom_events_and_sessions(
    make_sdk: MakeSdk, pb: PocketBaseClient, website: Website
) -> None:
    sdk = make_sdk(session_timeout=1.5)
    domain = website.domain
    ada, bob = environ("203.0.113.10", CHROME), scope("2001:db8::20", IPHONE)
    sdk.track_api_event(
        ada,
        page_view(
            domain,
            "/",
            referrer="https://news.example.org/x?id=1",
            screenWidth=1920,
            screenHeight=1080,
            language="en-US",
        ),
    )
    sdk.track_api_event(ada, page_view(f"www.{domain}", "/pricing?plan=pro"))
    sdk.track_api_event(ada, custom(domain, "/pricing", "signup", {"plan": "pro", "seats": 3}))
    sdk.track_api_event(bob, page_view(domain, "/blog/post-1#comments"))
    assert sdk.flush(timeout=10)

    visitors = records(pb, "visitors", website=website.id)
    assert len(visitors) == 2
    sessions = {s["visitor"]: s for s in site_sessions(pb, website.id)}
    assert len(sessions) == 2
    by_entry = {s["entryPath"]: s for s in sessions.values()}
    first = by_entry["/"]
    assert (first["exitPath"], first["isNewVisitor"]) == ("/pricing", True)
    assert first["referrer"] == "https://news.example.org/x"
    assert (first["browser"], first["os"], first["device"]) == ("Chrome", "Windows", "desktop")
    assert (first["screenWidth"], first["screenHeight"], first["language"]) == (
        "1920",
        "1080",
        "en-US",
    )
    assert first["ipAddress"] == ""  # storeRawIp is off
    mobile = by_entry["/blog/post-1"]
    assert (mobile["device"], mobile["exitPath"]) == ("mobile", "/blog/post-1")

    events = site_events(pb, website.id)
    assert Counter((e["type"], e["path"], e["eventName"]) for e in events) == Counter(
        {
            ("pageView", "/", ""): 1,
            ("pageView", "/pricing", ""): 1,
            ("custom", "/pricing", "signup"): 1,
            ("pageView", "/blog/post-1", ""): 1,
        }
    )
    signup = next(e for e in events if e["eventName"] == "signup")
    assert signup["eventData"] == {"plan": "pro", "seats": 3}
    assert signup["session"] == first["id"]

    # After the session timeout, the same visitor opens a second session.
    time.sleep(2.0)
    sdk.track_api_event(ada, page_view(domain, "/again"))
    assert sdk.flush(timeout=10)
    ada_sessions = [s for s in site_sessions(pb, website.id) if s["visitor"] == first["visitor"]]
    assert [(s["entryPath"], s["isNewVisitor"]) for s in ada_sessions] == [
        ("/", True),
        ("/again", False),
    ]
    assert len(records(pb, "visitors", website=website.id)) == 2

    stats = sdk.stats()
    assert (stats.accepted, stats.written, stats.dropped, stats.pending) == (5, 5, {}, 0)


MALFORMED: list[object] = [
    None,
    42,
    "not json",
    b"\xff\xfe\x00 not utf-8",
    b'{"type": "pageView"',
    [],
    {},
    {"type": "pageView"},
    {"type": "teleport", "url": "https://{domain}/"},
    {"type": "pageView", "url": "javascript:alert(1)"},
    {"type": "pageView", "url": "https://{domain}/" + "a" * 3000},
    {"type": "custom", "url": "https://{domain}/", "name": ""},
    {"type": "custom", "url": "https://{domain}/", "name": "x", "customData": "not an object"},
    {"type": "custom", "url": "https://{domain}/", "name": "x", "customData": {"a": "b" * 20000}},
    {"type": "jsError", "url": "https://{domain}/"},
    b"[" * 100_000,
    b'{"type": "pageView", "url": "https://{domain}/", "screenWidth": NaN}',
]


def with_domain(payload: object, domain: str) -> object:
    if isinstance(payload, dict):
        return {
            k: v.replace("{domain}", domain) if isinstance(v, str) else v
            for k, v in payload.items()
        }
    if isinstance(payload, bytes):
        return payload.replace(b"{domain}", domain.encode())
    return payload


def test_malformed_payloads_never_raise_and_never_leave_a_record(
    make_sdk: MakeSdk, pb: PocketBaseClient, website: Website
) -> None:
    sdk = make_sdk()
    for payload in MALFORMED:
        sdk.track_api_event(environ("198.51.100.9"), with_domain(payload, website.domain))
    sdk.track_api_event(object(), page_view(website.domain, "/"))  # unknown request type
    sdk.track_api_event(None, page_view(website.domain, "/"))  # no request: no user agent
    assert sdk.flush(timeout=10)
    stats = sdk.stats()
    assert stats.written == 0
    invalid = {reason: n for reason, n in stats.dropped.items() if reason.startswith("invalid:")}
    # b"[" * 100_000 is over 16 KiB: refused at the call, never queued.
    assert (sum(invalid.values()), stats.dropped["body_too_large"]) == (len(MALFORMED) - 1, 1)
    assert stats.accepted == len(MALFORMED) + 1
    assert sum(n for reason, n in stats.dropped.items() if reason.startswith("bot:")) == 2
    assert records(pb, "visitors", website=website.id) == []
    assert site_sessions(pb, website.id) == []


def test_site_id_override_writes_to_that_site(
    make_sdk: MakeSdk, pb: PocketBaseClient, website: Website
) -> None:
    other = ensure_website(pb, "other", f"other-{website.domain}")
    sdk = make_sdk()
    request = environ("203.0.113.77", path="/webhooks/stripe")
    sdk.track_server_event(
        request, "payment-webhook-received", {"source": "stripe"}, site_id=other.tracking_id
    )
    sdk.track_server_event(None, "nightly-report", {"rows": 12})
    sdk.track_server_event(request, "unknown-site", site_id="no-such-tracking-id")
    assert sdk.flush(timeout=10)
    [other_session] = site_sessions(pb, other.id)
    [payment] = records(pb, "events", session=other_session["id"])
    assert (payment["type"], payment["eventName"], payment["path"]) == (
        "custom",
        "payment-webhook-received",
        "/webhooks/stripe",
    )
    assert payment["eventData"] == {"source": "stripe"}
    [own_session] = site_sessions(pb, website.id)
    [report] = records(pb, "events", session=own_session["id"])
    assert report["eventName"] == "nightly-report"
    assert sdk.stats().dropped == {"unknown_site": 1}


def test_identify_links_the_visitor(
    make_sdk: MakeSdk, pb: PocketBaseClient, website: Website
) -> None:
    sdk = make_sdk()
    request = environ("203.0.113.50")
    sdk.track_api_event(request, page_view(website.domain, "/login"))
    sdk.identify(request, "user_123", {"name": "Ada", "phone": "+44 20", "plan": "pro"})
    assert sdk.flush(timeout=10)
    [visitor] = records(pb, "visitors", website=website.id)
    assert (visitor["userId"], visitor["name"], visitor["phone"]) == ("user_123", "Ada", "+44 20")
    assert visitor["metadata"] == {"plan": "pro"}
    sdk.track_api_event(request, page_view(website.domain, "/account"))
    assert sdk.flush(timeout=10)
    [visitor] = records(pb, "visitors", website=website.id)
    assert visitor["userId"] == "user_123"  # later writes never erase it


def test_init_with_wait_fails_fast_with_clear_errors(
    pocketbase: PocketBaseServer, website: Website
) -> None:
    base: dict[str, Any] = {
        "pocketbase_url": pocketbase.url,
        "admin_email": pocketbase.email,
        "admin_password": pocketbase.password,
        "site_id": website.tracking_id,
        "wait": True,
    }
    with pytest.raises(ConfigurationError, match="no website with tracking id 'nope'"):
        SkoposSDK.init(**{**base, "site_id": "nope"})
    with pytest.raises(PocketBaseAuthError):
        SkoposSDK.init(**{**base, "admin_password": "wrong-password"})
    with pytest.raises(PocketBaseUnreachable):
        SkoposSDK.init(**{**base, "pocketbase_url": f"http://127.0.0.1:{free_port()}"})
    # Bad options fail at once, waiting or not.
    with pytest.raises(ConfigurationError, match="batch_interval"):
        SkoposSDK.init(**{**base, "batch_interval": -1, "wait": False})
    with pytest.raises(TypeError):
        SkoposSDK.init(**{**base, "sesion_timeout": 3})  # a typo is never ignored


def test_bad_trusted_proxies_fail_at_init(pocketbase: PocketBaseServer, website: Website) -> None:
    with pytest.raises(ConfigurationError, match="trusted_proxies"):
        SkoposSDK.init(
            pocketbase_url=pocketbase.url,
            site_id=website.tracking_id,
            admin_email=pocketbase.email,
            admin_password=pocketbase.password,
            trusted_proxies="private, not-a-network",
        )


# --------------------------------------------------------------------------------------------
# PocketBase down, slow or misconfigured never stops the host: init returns at once, calls
# wait in the queue and are written once PocketBase can take them.


def _options(server: PocketBaseServer, site: Website, **extra: Any) -> dict[str, Any]:
    return {
        "pocketbase_url": server.url,
        "site_id": site.tracking_id,
        "admin_email": server.email,
        "admin_password": server.password,
        "realtime": False,
        "strict": True,
        **extra,
    }


@pytest.mark.parametrize("worker_process", [False, True], ids=["thread", "process"])
def test_init_returns_at_once_while_pocketbase_is_down_and_writes_when_it_is_up(
    pocketbase_factory: Callable[..., PocketBaseServer], worker_process: bool
) -> None:
    server = pocketbase_factory()
    with server.client() as admin:
        site = ensure_website(admin, "down at start", "down-at-start.example.test")
    server.process.stop()
    started = time.monotonic()
    sdk = SkoposSDK.init(**_options(server, site, worker_process=worker_process))
    try:
        assert time.monotonic() - started < 1.0
        for n in range(5):
            sdk.track_api_event(environ(f"203.0.113.{n}"), page_view(site.domain, f"/p/{n}"))
        sdk.track_api_event(environ("203.0.113.1"), js_error(site.domain, "while down"))
        assert not sdk.flush(timeout=1.0)  # never connected: False at its timeout
        stats = sdk.stats()
        assert (stats.accepted, stats.written, stats.connected) == (6, 0, False)
        assert stats.last_error is not None
        assert "cannot connect to PocketBase" in stats.last_error
        server.process.start()
        assert sdk.flush(timeout=60)
        assert sdk.stats().connected
    finally:
        sdk.shutdown(timeout=10)
    with server.client() as admin:
        paths = Counter(e["path"] for e in site_events(admin, site.id))
        assert paths == Counter({f"/p/{n}": 1 for n in range(5)})
        [error] = records(admin, "js_errors", website=site.id)
        assert error["count"] == 1


def test_a_slow_pocketbase_does_not_hold_up_init(
    pocketbase: PocketBaseServer, website: Website, pb: PocketBaseClient
) -> None:
    release = threading.Event()

    def plan(method: str, path: str, number: int) -> str:
        return "pass" if release.is_set() else "stall"

    with FaultProxy(pocketbase.url, plan) as proxy:
        proxy.stall_seconds = 3.0
        started = time.monotonic()
        sdk = SkoposSDK.init(**_options(pocketbase, website, pocketbase_url=proxy.url))
        try:
            assert time.monotonic() - started < 1.0
            sdk.track_api_event(environ("198.51.100.7"), page_view(website.domain, "/slow"))
            release.set()
            assert sdk.flush(timeout=60)
        finally:
            sdk.shutdown(timeout=10)
    assert [e["path"] for e in site_events(pb, website.id)] == ["/slow"]


def test_a_configuration_that_needs_a_fix_is_reported_and_recovers_once_fixed(
    pocketbase: PocketBaseServer, pb: PocketBaseClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An unknown tracking id cannot fix itself: reported (last_error), tried again slowly,
    # and written without a restart once the website exists.
    monkeypatch.setattr(connecting, "NEEDS_FIX_RETRY", 0.5)
    tracking_id = new_tracking_id()
    domain = f"{tracking_id}.example.test"
    sdk = SkoposSDK.init(
        **_options(pocketbase, Website("", "", domain, tracking_id, created=False))
    )
    try:
        sdk.track_api_event(environ("198.51.100.8"), page_view(domain, "/waiting"))
        assert not sdk.flush(timeout=1.5)
        stats = sdk.stats()
        assert not stats.connected
        assert stats.last_error is not None
        assert f"no website with tracking id {tracking_id!r}" in stats.last_error
        site = pb.create_record(
            "websites",
            {"name": "fixed", "domain": domain, "trackingId": tracking_id, "ipBlacklist": []},
        )
        assert sdk.flush(timeout=30)
    finally:
        sdk.shutdown(timeout=10)
    assert [e["path"] for e in site_events(pb, site["id"])] == ["/waiting"]


def test_shutdown_while_never_connected_keeps_its_word(
    pocketbase_factory: Callable[..., PocketBaseServer], tmp_path: Path
) -> None:
    # What the spool held from an earlier process stays there; what was queued and could
    # not be written by the deadline is counted, and shutdown takes its timeout, no more.
    server = pocketbase_factory()
    with server.client() as admin:
        site = ensure_website(admin, "never connected", "never-connected.example.test")
    earlier = SkoposSDK.init(**_options(server, site, spool_dir=tmp_path, wait=True))
    server.process.stop()
    earlier.track_api_event(environ("198.51.100.9"), page_view(site.domain, "/earlier"))
    earlier.shutdown(timeout=1.0)
    assert earlier.stats().spooled == 1
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left

    sdk = SkoposSDK.init(**_options(server, site, spool_dir=tmp_path))
    sdk.track_api_event(environ("198.51.100.9"), page_view(site.domain, "/later"))
    started = time.monotonic()
    sdk.shutdown(timeout=1.0)
    assert time.monotonic() - started < 3.0
    stats = sdk.stats()
    assert (stats.accepted, stats.dropped) == (1, {"undelivered_at_shutdown": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == left  # untouched

    server.process.start()
    replay = SkoposSDK.init(**_options(server, site, spool_dir=tmp_path))
    try:
        assert replay.flush(timeout=30)
        assert replay.stats().recovered == {"written": 1}
    finally:
        replay.shutdown(timeout=10)
    with server.client() as admin:
        assert [e["path"] for e in site_events(admin, site.id)] == ["/earlier"]


# --------------------------------------------------------------------------------------------
# Memory: bounded by bytes, whatever clients send


def test_an_oversized_body_is_refused_at_the_call_never_queued(
    pocketbase_factory: Callable[..., PocketBaseServer],
) -> None:
    # 20 bodies of 5 MiB were all queued, the 16 KiB limit checked later by the worker.
    server = pocketbase_factory()
    with server.client() as admin:
        site = ensure_website(admin, "big bodies", "big-bodies.example.test")
    server.process.stop()  # nothing leaves the queue: whatever is queued stays in memory
    sdk = SkoposSDK.init(**_options(server, site))
    try:
        tracemalloc.start()
        try:
            for n in range(20):
                body = b'{"type":"pageView","url":"https://big-bodies.example.test/"}'.ljust(
                    5 << 20, b" "
                )
                sdk.track_api_event(environ(f"198.51.100.{n}"), body)
                del body
            held = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        assert held < 1 << 20, f"{held / 2**20:.1f} MiB held after the calls"
        stats = sdk.stats()
        assert (stats.accepted, stats.dropped) == (0, {"body_too_large": 20})
        sdk.track_api_event(environ("198.51.100.1"), b"x" * (16 * 1024))  # at the limit: queued
        assert sdk.stats().accepted == 1
    finally:
        sdk.shutdown(timeout=0.1)


def test_the_queue_holds_at_most_its_byte_budget_under_hostile_calls() -> None:
    # 10,000 calls of 16 KiB bodies and 8 KiB headers were ~870 MiB; the queue now holds
    # max_queue_bytes (32 MiB) of them, headers cut when captured, and refuses the rest.
    found = probe("queue")
    assert found["accepted"] < found["calls"]  # it refused
    assert found["growth"] < 48 << 20, f"{found['growth'] / 2**20:.1f} MiB for {found}"


def test_collect_messages_for_the_sites_it_serves_land_in_each(
    make_sdk: MakeSdk, pb: PocketBaseClient, website: Website
) -> None:
    # The official script names its site in every message: the default site and those in
    # collect_site_ids are served, any other is dropped and counted.
    other = ensure_website(pb, "other", f"other-{website.domain}")
    sdk = make_sdk(collect_site_ids=[other.tracking_id])
    assert sdk.collect_origin_hosts == {
        website.domain,
        f"www.{website.domain}",
        other.domain,
        f"www.{other.domain}",
    }
    request = environ("203.0.113.60")
    for site in (website, other):
        message = collect.batch(
            collect.page_view(), sid=site.tracking_id, url=f"https://{site.domain}/landing"
        )
        sdk.track_collect(request, collect.encode_message(message))
    stranger = collect.batch(
        collect.page_view(), sid="someone-else", url=f"https://{website.domain}/"
    )
    sdk.track_collect(request, collect.encode_message(stranger))
    sdk.track_collect(request, b'{"_d": "not base64", "_v": 1}')
    assert sdk.flush(timeout=10)
    for site in (website, other):
        [session] = site_sessions(pb, site.id)
        assert session["entryPath"] == "/landing"
    stats = sdk.stats()
    assert (stats.accepted, stats.written) == (4, 2)
    assert stats.dropped == {"site_not_served": 1, "invalid:bad_encoding": 1}


def test_an_unknown_collect_site_fails_init_with_wait_and_is_reported_without(
    pocketbase: PocketBaseServer, website: Website
) -> None:
    options = _options(pocketbase, website, collect_site_ids="nope", strict=False)
    with pytest.raises(ConfigurationError, match=r"collect_site_ids.*'nope'"):
        SkoposSDK.init(**options, wait=True)
    sdk = SkoposSDK.init(**options)  # the host starts; the error is said, not raised
    try:
        sdk.track_api_event(environ("198.51.100.8"), page_view(website.domain, "/held"))
        assert not sdk.flush(timeout=1.5)
        stats = sdk.stats()
        assert not stats.connected
        assert stats.last_error is not None
        assert "collect_site_ids: no website with tracking id 'nope'" in stats.last_error
        assert sdk.collect_origin_hosts == {"*"}  # any origin, until its sites are known
    finally:
        sdk.shutdown(timeout=0.5)
