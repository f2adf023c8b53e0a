"""A /collect message's records → our activities (pure): one per event, error or identity,
each with the message's session fields, for the visitor and time the pipeline decided."""

from __future__ import annotations

from typing import Any

from skopos._tracking.collect import CollectMessage, decode_collect
from skopos._tracking.collect_activities import Visit, collect_activities
from skopos._tracking.collect_records import collect_records
from skopos._tracking.ip_rules import IpBlacklist
from skopos._tracking.site_rules import SiteRules
from skopos._tracking.user_agent import ClientInfo
from tests._support.collect_client import (
    batch,
    breadcrumb,
    custom_event,
    download,
    error,
    errors,
    exit_message,
    identify,
    outbound,
    page_view,
)

SITE = SiteRules(
    "site0000000000a", "TRACKING_ID", "example.com", False, False, False, IpBlacklist(None)
)
VISIT = Visit(
    SITE,
    "our-keyed-visitor-id",
    "visitorrecord01",
    at=1_800_000_000.0,
    client=ClientInfo("Chrome", "Windows", "desktop"),
    ip_address="198.51.100.7",
    country="DE",
    region="DE-BE",
)


def activities_of(message: dict[str, Any]) -> list[Any]:
    decoded = decode_collect(message)
    assert isinstance(decoded, CollectMessage), decoded
    return collect_activities(collect_records(decoded), decoded.url, VISIT)


def test_every_activity_carries_the_visit_and_the_session_fields() -> None:
    for activity in activities_of(
        batch(page_view(), custom_event("x"), ref="https://a.example/p?q=1")
    ):
        assert (activity.site, activity.visitor_id, activity.visitor_record_id) == (
            SITE,
            "our-keyed-visitor-id",
            "visitorrecord01",
        )
        assert (activity.at, activity.client, activity.ip_address) == (
            VISIT.at,
            VISIT.client,
            "198.51.100.7",
        )
        assert (activity.country, activity.region) == ("DE", "DE-BE")
        assert (activity.screen_width, activity.screen_height, activity.language) == (
            1920,
            1080,
            "en-US",
        )
        assert (activity.device_pixel_ratio, activity.connection_type, activity.script_version) == (
            "1.5",
            "4g",
            "1.3.0",
        )
        assert activity.referrer == "https://a.example/p?q=1"  # the session drops the query
        assert activity.url == "https://example.com/pricing?plan=pro"
        assert activity.parts is None  # the worker decides how the call is acknowledged


def test_events_keep_their_order_and_the_dashboard_s_shapes() -> None:
    found = activities_of(
        batch(
            page_view(),
            custom_event("bars_click", {"bar": 3}),
            outbound("https://other.example/"),
            download("a.pdf", "https://example.com/a.pdf"),
            page_view("/next#tab"),
        )
    )
    assert [(a.type, a.path, a.name, a.data) for a in found] == [
        ("pageView", "/pricing", None, None),
        ("custom", "/pricing", "bars_click", {"bar": 3}),
        ("click", "/pricing", "outbound", {"url": "https://other.example/"}),
        (
            "click",
            "/pricing",
            "download",
            {"filename": "a.pdf", "url": "https://example.com/a.pdf"},
        ),
        ("pageView", "/next", None, None),
    ]
    [exited] = activities_of(exit_message(30))
    assert (exited.type, exited.name, exited.data) == ("custom", "exit", {"duration": 30})


def test_errors_and_identify() -> None:
    crumb = breadcrumb("console", "warn", data={"level": "warn"})
    first, second = activities_of(
        errors(
            error("boom", stack="Error: boom\n    at f (a.js:1:2)", count=5, bc=[crumb]), error("x")
        )
    )
    assert (first.type, first.path, first.error_message, first.occurrences) == (
        "jsError",
        "/pricing",
        "boom",
        5,
    )
    assert first.stack_trace == "Error: boom\n    at f (a.js:1:2)"
    assert first.breadcrumbs == [
        {"type": "console", "message": "warn", "timestamp": crumb["ts"], "data": {"level": "warn"}}
    ]
    assert (second.occurrences, second.breadcrumbs) == (1, None)
    [who] = activities_of(identify("u-1", name="Ada", phone="+1 555", meta={"plan": "pro"}))
    assert (who.type, who.data) == (
        "identify",
        {"userId": "u-1", "name": "Ada", "phone": "+1 555", "metadata": {"plan": "pro"}},
    )
