"""Every example app, end to end: headless Chromium → skopos.js → the app's endpoint → PocketBase.

One visit of the shared demo page (``examples/shared``), the same in every example::

    /  ──#spa (pushState)──► /spa/step-2  #custom  #error  ──#about──► /about  ──#outbound──►
    http://localhost:PORT/outbound-target (another host; no script there)

and then exactly what must be in PocketBase for the example's website. From skopos.js's rules:

- a pageView for each of /, /spa/step-2 and /about;
- an ``exit`` event for each of those three page views, with the page's path: the one of
  / when pushState starts the next page view, the one of /spa/step-2 and of /about on pagehide
  when the browser leaves them (sendBeacon delivers it after the page is gone). Each page view
  ends exactly once here and is never shown again, so the count is deterministic; only
  ``duration`` is not, and is checked for type;
- ``cta-click`` {plan: pro} on /spa/step-2 (``data-skopos-event`` markup) and an ``outbound``
  click {url} on /about; the click on #about is a same-host link and sends nothing;
- one JS error group, count 1 (written with the next write, the default);
- everything from one visitor in one session that entered on / and left on /about (only page
  views move ``exitPath``).

Headless Chromium says "HeadlessChrome" in its user agent, which the SDK's bot filter rightly
drops; the fixtures make it present a desktop Chrome of its own version, for the context and for
the whole browser (beacons sent from pagehide ignore the context's override). The test then reads
Chromium's network log for the headers of every event request it sent, and checks that none
reveals a headless browser.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest

from skopos._pocketbase.client import PocketBaseClient
from skopos._pocketbase.dates import parse_pb_date
from tests._support.example_apps import RecordingBrowser, RunningExample, example_params
from tests._support.tracking_helpers import records, site_events, site_sessions

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.pocketbase

ERROR_MESSAGE = "Example error from the demo page"
WAIT_FOR_RECORDS = 15.0
SETTLE = 1.0  # after everything expected arrived: time for anything unexpected to show up


def visit(page: Page, origin: str) -> None:
    """The scripted visit; each step waits until skopos.js runs on the page it acts on."""
    loaded = "() => !!(window.skopos && window.skopos.loaded)"
    page.goto(origin + "/")
    page.wait_for_function(loaded)
    page.click("#spa")
    page.wait_for_function("() => location.pathname === '/spa/step-2'")
    page.click("#custom")
    page.click("#error")
    page.click("#about")
    page.wait_for_url(origin + "/about")
    page.wait_for_function(loaded)
    page.click("#outbound")
    page.wait_for_url(f"http://localhost:{origin.rsplit(':', 1)[1]}/outbound-target")
    assert page.text_content("#outbound-target")
    page.close()


def snapshot(pb: PocketBaseClient, website_id: str) -> dict[str, list[dict[str, Any]]]:
    return {
        "visitors": records(pb, "visitors", website=website_id),
        "sessions": site_sessions(pb, website_id),
        "events": site_events(pb, website_id),
        "js_errors": records(pb, "js_errors", website=website_id),
    }


def wait_for_records(pb: PocketBaseClient, website_id: str) -> dict[str, list[dict[str, Any]]]:
    """Poll until the 8 events and the error group are there, then a little longer."""
    deadline = time.monotonic() + WAIT_FOR_RECORDS
    found = snapshot(pb, website_id)
    while len(found["events"]) < 8 or not found["js_errors"]:
        if time.monotonic() > deadline:
            break
        time.sleep(0.25)
        found = snapshot(pb, website_id)
    else:
        time.sleep(SETTLE)
        found = snapshot(pb, website_id)
    return found


def event_key(event: dict[str, Any]) -> tuple[str, str, str, str]:
    data = event["eventData"]
    if event["eventName"] == "exit":
        # The visible time varies; it must be a whole number of seconds.
        assert isinstance(data, dict), event
        assert set(data) == {"duration"}, event
        assert isinstance(data["duration"], int), event
        assert data["duration"] >= 0, event
        data = {"duration": "<int>"}
    return event["type"], event["path"], event["eventName"], json.dumps(data, sort_keys=True)


@pytest.mark.parametrize("example", example_params(), indirect=True)
def test_a_visit_lands_exactly(
    example: RunningExample, chromium: RecordingBrowser, pb: PocketBaseClient
) -> None:
    context = chromium.new_context()
    try:
        visit(context.new_page(), example.origin)
        # The browser stays open meanwhile: closing it could cancel beacons still in flight.
        found = wait_for_records(pb, example.website.id)
    finally:
        chromium.close()

    # What reached the server: 3 page views, 3 exits, cta-click, the outbound click, the error.
    sent = chromium.sent(example.origin, "POST /api/event ")
    assert len(sent) == 9, sent
    for headers in sent:
        assert headers["user-agent"] == chromium.identity.user_agent, headers
        assert "headless" not in headers["sec-ch-ua"].lower(), headers
        assert headers["accept-language"].startswith("en-US"), headers
        assert headers["content-type"] == "text/plain", headers

    context_info = f"\nrecords: {json.dumps(found, indent=1)}\nserver log:\n{example.log_tail()}"

    assert len(found["visitors"]) == 1, context_info
    assert len(found["sessions"]) == 1, context_info
    [session] = found["sessions"]
    assert session["visitor"] == found["visitors"][0]["id"]
    assert (session["entryPath"], session["exitPath"]) == ("/", "/about"), context_info
    assert (session["browser"], session["os"], session["device"]) == ("Chrome", "Linux", "desktop")
    assert (session["language"], session["referrer"], session["isNewVisitor"]) == (
        "en-US",
        "",
        True,
    )

    outbound = {"url": f"http://localhost:{example.port}/outbound-target"}
    expected = Counter(
        [
            ("pageView", "/", "", "null"),
            ("pageView", "/spa/step-2", "", "null"),
            ("pageView", "/about", "", "null"),
            ("custom", "/spa/step-2", "cta-click", json.dumps({"plan": "pro"})),
            ("click", "/about", "outbound", json.dumps(outbound)),
            ("custom", "/", "exit", json.dumps({"duration": "<int>"})),
            ("custom", "/spa/step-2", "exit", json.dumps({"duration": "<int>"})),
            ("custom", "/about", "exit", json.dumps({"duration": "<int>"})),
        ]
    )
    assert Counter(event_key(e) for e in found["events"]) == expected, context_info
    assert {e["session"] for e in found["events"]} == {session["id"]}

    assert len(found["js_errors"]) == 1, context_info
    [error] = found["js_errors"]
    assert ERROR_MESSAGE in error["errorMessage"]
    assert error["count"] == 1
    assert (error["session"], error["url"]) == (
        session["id"],
        f"{example.origin}/spa/step-2",
    )


@pytest.mark.parametrize("example", ["fastapi_app"], indirect=True)
def test_a_single_page_visit_is_one_page_view_and_its_exit(
    example: RunningExample, chromium: RecordingBrowser, pb: PocketBaseClient
) -> None:
    # Open a page, stay 3 s, close the tab: the dashboard must see a bounce of 3 s.
    context = chromium.new_context()
    try:
        page = context.new_page()
        page.goto(example.origin + "/about")
        page.wait_for_function("() => !!(window.skopos && window.skopos.loaded)")
        page.wait_for_timeout(3000)
        page.close(run_before_unload=True)
        deadline = time.monotonic() + WAIT_FOR_RECORDS
        found = snapshot(pb, example.website.id)
        while len(found["events"]) < 2 and time.monotonic() < deadline:
            time.sleep(0.25)
            found = snapshot(pb, example.website.id)
        time.sleep(SETTLE)
        found = snapshot(pb, example.website.id)
    finally:
        chromium.close()
    context_info = f"\nrecords: {json.dumps(found, indent=1)}\nserver log:\n{example.log_tail()}"
    [session] = found["sessions"]
    kinds = sorted((e["type"], e["eventName"]) for e in found["events"])
    assert kinds == [("custom", "exit"), ("pageView", "")], context_info
    [exit_event] = [e for e in found["events"] if e["eventName"] == "exit"]
    assert exit_event["eventData"]["duration"] == 3, context_info
    duration = parse_pb_date(session["updated"]) - parse_pb_date(session["created"])
    assert 2.5 <= duration <= 3.6, context_info
