"""The public ``SkoposSDK`` end to end against a real PocketBase: what lands is what we expect.

What one station decides is tested beside its module (filters: ``tracking/test_pipeline.py``,
sessions across processes: ``delivery/test_sessions.py``, ...); here, the public calls.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from skopos import ConfigurationError, PocketBaseAuthError, PocketBaseUnreachable, SkoposSDK
from skopos._admin.embedded import free_port
from skopos._admin.setup import Website, ensure_website
from skopos._pocketbase.client import PocketBaseClient
from tests._support import collect_client as collect
from tests._support.pocketbase_server import MakeSdk, PocketBaseServer
from tests._support.tracking_helpers import (
    CHROME,
    IPHONE,
    custom,
    environ,
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
    assert sum(invalid.values()) == len(MALFORMED)
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


def test_init_fails_fast_with_clear_errors(pocketbase: PocketBaseServer, website: Website) -> None:
    base: dict[str, Any] = {
        "pocketbase_url": pocketbase.url,
        "admin_email": pocketbase.email,
        "admin_password": pocketbase.password,
        "site_id": website.tracking_id,
    }
    with pytest.raises(ConfigurationError, match="no website with tracking id 'nope'"):
        SkoposSDK.init(**{**base, "site_id": "nope"})
    with pytest.raises(PocketBaseAuthError):
        SkoposSDK.init(**{**base, "admin_password": "wrong-password"})
    with pytest.raises(PocketBaseUnreachable):
        SkoposSDK.init(**{**base, "pocketbase_url": f"http://127.0.0.1:{free_port()}"})
    with pytest.raises(ConfigurationError, match="batch_interval"):
        SkoposSDK.init(**{**base, "batch_interval": -1})
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


def test_an_unknown_collect_site_fails_at_init(
    pocketbase: PocketBaseServer, website: Website
) -> None:
    with pytest.raises(ConfigurationError, match=r"collect_site_ids.*'nope'"):
        SkoposSDK.init(
            pocketbase_url=pocketbase.url,
            site_id=website.tracking_id,
            admin_email=pocketbase.email,
            admin_password=pocketbase.password,
            collect_site_ids="nope",
        )
