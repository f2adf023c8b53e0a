"""JS errors: grouped by message and top stack frame and counted (pure logic), then written and
counted up in a real PocketBase."""

from __future__ import annotations

import time

import pytest

from skopos._admin.setup import Website
from skopos._delivery.js_errors import ErrorAggregator, error_hash, top_frame
from skopos._pocketbase.client import PocketBaseClient
from skopos._stats import Ledger
from skopos._tracking.activity import Activity
from skopos._tracking.ip_rules import IpBlacklist
from skopos._tracking.site_rules import SiteRules
from tests._support.memory_probe import probe
from tests._support.pocketbase_server import MakeSdk
from tests._support.tracking_helpers import (
    FIREFOX,
    environ,
    js_error,
    records,
    site_events,
    site_sessions,
)


def test_top_frame_per_browser() -> None:
    chrome = "TypeError: boom\n    at render (https://x.test/app.js?v=9:10:5)\n    at main"
    firefox = "render@https://x.test/app.js:10:5\nmain@https://x.test/app.js:1:1"
    assert top_frame(chrome, "TypeError: boom") == "at render (https://x.test/app.js:10:5)"
    assert top_frame(firefox, "boom") == "render@https://x.test/app.js:10:5"
    assert top_frame(None, "x") == ""
    assert error_hash("m", chrome) == error_hash("m", chrome.replace("?v=9", "?v=10"))
    assert error_hash("m", chrome) != error_hash("other", chrome)


def test_aggregator_counts_per_site_and_group() -> None:
    errors = ErrorAggregator()
    for number, site in enumerate(("s1", "s1", "s2")):
        rules = SiteRules(site, "t", None, False, False, False, IpBlacklist(None))
        activity = Activity("jsError", rules, "v", "vr", time.time(), url="u", error_message="m")
        activity.session_id = "x"
        activity.recovered = number == 1
        errors.add(activity)
    assert errors.occurrences == 3
    groups = sorted(errors.take(), key=lambda g: g.site_record_id)
    assert [(g.site_record_id, g.count) for g in groups] == [("s1", 2), ("s2", 1)]
    upsert, increment = groups[0].writes()
    assert (upsert.acks, upsert.recovered) == (1, 1)
    assert upsert.parent
    assert increment.request.body == {"count+": 2}
    assert errors.occurrences == 0


def test_occurrences_of_the_official_script_add_their_count_and_latest_breadcrumbs() -> None:
    # A /collect error stands for ``count`` occurrences and carries breadcrumbs; the group
    # adds the count, keeps the latest breadcrumbs, and acknowledges each call once.
    errors = ErrorAggregator()
    rules = SiteRules("s1", "t", None, False, False, False, IpBlacklist(None))
    ledger = Ledger()
    parts = ledger.open_parts(2)  # an errors message whose two errors fall in one group
    crumbs = [{"type": "click", "message": "buy", "timestamp": None, "data": None}]
    now = time.time()
    for occurrences, breadcrumbs, shared, seen in [
        (3, crumbs, parts, now),
        (2, None, parts, now + 1),  # later, without breadcrumbs: the earlier ones stay
        (1, None, None, now - 5),  # an ordinary call, seen earlier
    ]:
        activity = Activity("jsError", rules, "v", "vr", seen, url="u", error_message="m")
        activity.occurrences, activity.breadcrumbs, activity.parts = (
            occurrences,
            breadcrumbs,
            shared,
        )
        errors.add(activity)
    [group] = errors.take()
    assert (group.count, group.acks, group.parts) == (6, 1, [parts, parts])
    upsert, increment = group.writes()
    assert upsert.request.body is not None
    assert upsert.request.body["breadcrumbs"] == crumbs
    assert increment.request.body == {"count+": 6}
    ledger.ack_parts(upsert.parts or [])
    assert (ledger.acknowledged, ledger.written) == (1, 1)


# -- against a real PocketBase ----------------------------------------------------------------


@pytest.mark.pocketbase
def test_js_errors_are_grouped_and_counted(
    make_sdk: MakeSdk, pb: PocketBaseClient, website: Website
) -> None:
    sdk = make_sdk(js_error_batch_interval=3600)
    visitor = environ("198.51.100.7", FIREFOX)
    for _ in range(3):
        sdk.track_api_event(visitor, js_error(website.domain, "TypeError: x is undefined"))
    sdk.track_api_event(
        visitor,
        js_error(website.domain, "TypeError: x is undefined", "at render (app.js?v=2:10:5)"),
    )
    sdk.track_api_event(
        visitor, js_error(website.domain, "RangeError: too deep", "at loop (lib.js:1:1)")
    )
    assert sdk.flush(timeout=10)
    groups = {e["errorMessage"]: e for e in records(pb, "js_errors", website=website.id)}
    assert {m: g["count"] for m, g in groups.items()} == {
        "TypeError: x is undefined": 4,  # a cache-busting query string does not split a group
        "RangeError: too deep": 1,
    }
    [session] = site_sessions(pb, website.id)
    assert groups["RangeError: too deep"]["session"] == session["id"]
    assert groups["RangeError: too deep"]["lastSeen"]

    sdk.track_api_event(visitor, js_error(website.domain, "TypeError: x is undefined"))
    assert sdk.flush(timeout=10)
    again = {e["errorMessage"]: e for e in records(pb, "js_errors", website=website.id)}
    assert again["TypeError: x is undefined"]["count"] == 5
    assert len(again) == 2
    assert site_events(pb, website.id) == []  # errors are not events


def test_held_error_groups_are_bounded_by_bytes() -> None:
    # 10,000 groups of messages, stack traces and URLs at their bounds in 4-byte characters
    # were ~420 MiB before the aggregator counted as full; it is full at 8 MiB now.
    found = probe("errors")
    assert found["groups"] < 10_000
    assert found["growth"] < 16 << 20, f"{found['growth'] / 2**20:.1f} MiB for {found}"
