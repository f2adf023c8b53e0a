"""What the Skopos Dashboard reads from our records is the truth of the traffic sent.

The dashboard decides sessions, durations, bounce and engagement from the records and from
when PocketBase stamped them (``shared/reference/dashboard-metrics.md``). These tests send
traffic whose truth is known and check what PocketBase holds, through outages and with
several SDK instances (each with its own caches and writer, as separate processes have).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import pytest

from skopos import SkoposSDK
from skopos._admin.metrics import dashboard_metrics
from skopos._admin.setup import Website
from skopos._pocketbase.client import PocketBaseClient
from skopos._pocketbase.dates import parse_pb_date
from tests._support import collect_client as collect
from tests._support.fault_proxy import FaultProxy
from tests._support.pocketbase_server import PocketBaseServer, start_sdk
from tests._support.tracking_helpers import (
    CHROME,
    custom,
    environ,
    page_view,
    records,
    site_events,
    site_sessions,
)

pytestmark = pytest.mark.pocketbase


@pytest.mark.parametrize(
    ("outage", "instances"),
    [(5.0, 1), (5.0, 4), pytest.param(60.0, 4, marks=pytest.mark.slow)],
)
def test_sessions_are_decided_by_activity_time_through_an_outage(
    pocketbase: PocketBaseServer,
    website: Website,
    pb: PocketBaseClient,
    outage: float,
    instances: int,
) -> None:
    # PocketBase is away while visitors come, leave for longer than the session timeout and
    # come back; every write lands after the outage, in whatever order the instances retry.
    # Each visitor's second visit goes through another instance than its first.
    down = threading.Event()
    visitors = 30
    with FaultProxy(
        pocketbase.url, lambda method, path, n: "error" if down.is_set() else "pass"
    ) as proxy:
        sdks = [
            start_sdk(pocketbase, website, url=proxy.url, session_timeout=2.0)
            for _ in range(instances)
        ]
        try:
            down.set()
            started = time.monotonic()
            for visit, pages in enumerate((("/a", "/b"), ("/c", "/d"))):
                if visit:
                    time.sleep(3.0)  # longer than the session timeout
                for visitor in range(visitors):
                    sdk = sdks[(visitor + visit) % instances]
                    request = environ(f"198.51.100.{visitor + 1}")
                    for page in pages:
                        sdk.track_api_event(request, page_view(website.domain, page))
            time.sleep(max(0.0, outage - (time.monotonic() - started)))
            down.clear()
            assert all(sdk.flush(timeout=90) for sdk in sdks)
        finally:
            for sdk in sdks:
                sdk.shutdown(timeout=10)
    sessions = site_sessions(pb, website.id)
    events = site_events(pb, website.id)
    pages_by_session: dict[str, list[str]] = defaultdict(list)
    for event in events:
        pages_by_session[event["session"]].append(event["path"])
    visits_by_visitor: dict[str, set[tuple[str, ...]]] = defaultdict(set)
    for session in sessions:
        visits_by_visitor[session["visitor"]].add(tuple(sorted(pages_by_session[session["id"]])))
    assert len(events) == 4 * visitors
    assert len(sessions) == 2 * visitors
    assert list(visits_by_visitor.values()) == [{("/a", "/b"), ("/c", "/d")}] * visitors


@pytest.mark.parametrize("batch", [False, True])
def test_session_durations_follow_the_visitor_under_steady_traffic(
    pocketbase: PocketBaseServer, website: Website, pb: PocketBaseClient, batch: bool
) -> None:
    # Page views 2 s apart (true duration 4 s) while another visitor keeps the site busy;
    # the dashboard's duration is updated - created.
    options: dict[str, Any] = {"batch": True, "batch_interval": 1.0} if batch else {}
    allowance = 1.25 if batch else 1.0  # batch=True: batch_interval, plus a commit's time
    sdk = start_sdk(pocketbase, website, **options)
    stop = threading.Event()

    def background() -> None:
        while not stop.wait(0.1):
            sdk.track_api_event(environ("203.0.113.250"), page_view(website.domain, "/busy"))

    noise = threading.Thread(target=background, daemon=True)
    noise.start()
    try:
        measured = [environ(f"198.51.100.{n}") for n in range(1, 6)]
        for page in ("/", "/pricing", "/signup"):
            for request in measured:
                sdk.track_api_event(request, page_view(website.domain, page))
            time.sleep(2.0)
    finally:
        stop.set()
        noise.join()
        assert sdk.flush(timeout=30)
        sdk.shutdown(timeout=10)
    counts: dict[str, int] = defaultdict(int)
    for event in site_events(pb, website.id):
        counts[event["session"]] += 1
    sessions = site_sessions(pb, website.id)
    durations = {
        s["id"]: parse_pb_date(s["updated"]) - parse_pb_date(s["created"]) for s in sessions
    }
    assert all(duration >= 0 for duration in durations.values())  # updated never before created
    measured_durations = [durations[s] for s, count in counts.items() if count == 3]
    assert len(measured_durations) == len(measured)
    assert all(abs(duration - 4.0) <= allowance for duration in measured_durations), (
        measured_durations
    )


def test_a_page_exit_moves_the_session_and_is_not_a_second_page(
    pocketbase: PocketBaseServer, website: Website, pb: PocketBaseClient
) -> None:
    sdk = start_sdk(pocketbase, website)
    try:
        request = environ("198.51.100.7")
        sdk.track_api_event(request, page_view(website.domain, "/landing"))
        time.sleep(2.0)
        sdk.track_api_event(request, custom(website.domain, "/landing", "exit", {"duration": 2}))
        assert sdk.flush(timeout=30)
    finally:
        sdk.shutdown(timeout=10)
    [session] = site_sessions(pb, website.id)
    events = site_events(pb, website.id)
    assert sorted((e["type"], e["eventName"]) for e in events) == [
        ("custom", "exit"),
        ("pageView", ""),
    ]
    exit_event = next(e for e in events if e["eventName"] == "exit")
    assert exit_event["eventData"] == {"duration": 2}
    duration = parse_pb_date(session["updated"]) - parse_pb_date(session["created"])
    assert 1.5 <= duration <= 3.0
    assert session["lastActivity"]


# -- the dashboard's own numbers, from generated traffic with known truth ---------------------

# Client addresses whose registry country is known (RIR allocations, stable for years).
ADDRESSES = {"8.8.8.8": "US", "81.2.69.142": "GB", "1.0.16.1": "JP", "2001:4860::1": "US"}


@dataclass
class Visitor:
    """One visitor of the generated traffic and what the dashboard must make of it."""

    address: str
    kind: str  # "bounce": one page, a short exit; "reader": one page, a long exit;
    #           "browser": two pages, a custom event, an exit

    @property
    def bounces(self) -> bool:
        return self.kind in ("bounce", "reader")

    @property
    def engaged(self) -> bool:
        return self.kind in ("reader", "browser")


def traffic() -> list[Visitor]:
    kinds = ("bounce", "reader", "browser")
    return [Visitor(address, kinds[n % 3]) for n, address in enumerate(list(ADDRESSES) * 3)]


def send_traffic(sdks: list[SkoposSDK], domain: str, visitors: list[Visitor]) -> None:
    """Every visitor at once: a page at 0 s, browsers a second page and an event at 1 s,
    everyone's exit at 2 s; each call through the next SDK instance in turn."""
    calls = 0

    def send(visitor: Visitor, user_agent: str, payload: dict[str, Any]) -> None:
        nonlocal calls
        sdks[calls % len(sdks)].track_api_event(environ(visitor.address, user_agent), payload)
        calls += 1

    agents = [f"{CHROME.replace('131.0.0.0', f'131.0.{n}.0')}" for n in range(len(visitors))]
    for visitor, agent in zip(visitors, agents, strict=True):
        send(visitor, agent, page_view(domain, "/"))
    time.sleep(1.0)
    for visitor, agent in zip(visitors, agents, strict=True):
        if visitor.kind == "browser":
            send(visitor, agent, page_view(domain, "/pricing"))
            send(visitor, agent, custom(domain, "/pricing", "signup", {"plan": "pro"}))
    time.sleep(1.0)
    for visitor, agent in zip(visitors, agents, strict=True):
        duration = 30 if visitor.kind == "reader" else 2
        path = "/pricing" if visitor.kind == "browser" else "/"
        send(visitor, agent, custom(domain, path, "exit", {"duration": duration}))


@pytest.mark.parametrize(
    ("batch", "instances", "outage"),
    [(False, 1, False), (True, 1, False), (False, 4, False), (False, 1, True), (True, 4, True)],
    ids=["immediate", "batched", "4-instances", "outage", "batched-4-instances-outage"],
)
def test_the_dashboard_reads_the_truth_of_the_traffic(
    pocketbase: PocketBaseServer,
    website: Website,
    pb: PocketBaseClient,
    batch: bool,
    instances: int,
    outage: bool,
) -> None:
    visitors = traffic()
    down = threading.Event()

    def plan(method: str, path: str, number: int) -> str:
        return "error" if down.is_set() else "pass"

    options: dict[str, Any] = {"batch": True, "batch_interval": 1.0} if batch else {}
    with FaultProxy(pocketbase.url, plan) as proxy:
        sdks = [start_sdk(pocketbase, website, url=proxy.url, **options) for _ in range(instances)]
        try:
            if outage:
                down.set()
            send_traffic(sdks, website.domain, visitors)
            if outage:
                time.sleep(1.0)
                down.clear()
            assert all(sdk.flush(timeout=60) for sdk in sdks)
        finally:
            for sdk in sdks:
                sdk.shutdown(timeout=10)

    sessions = site_sessions(pb, website.id)
    events = site_events(pb, website.id)
    metrics = dashboard_metrics(sessions, events, [])
    assert metrics.visitors == len(visitors)
    assert metrics.bounced_sessions == sum(v.bounces for v in visitors)
    assert metrics.engaged_sessions == sum(v.engaged for v in visitors)
    assert metrics.page_views == sum(2 if v.kind == "browser" else 1 for v in visitors)
    browsers = sum(v.kind == "browser" for v in visitors)
    assert [(c.key, c.count) for c in metrics.custom_events] == [("signup", browsers)]
    assert Counter({c.key: c.count for c in metrics.countries}) == Counter(
        ADDRESSES[v.address] for v in visitors
    )
    if not (outage and instances > 1):
        # Entry pages are the sessions' first events by ``created``, a commit time: after an
        # outage, instances that each hold part of a session commit in any order.
        assert {(c.key, c.count) for c in metrics.entry_pages} == {("/", len(visitors))}
    if not outage:  # durations are commit times: an outage delays every one of them
        # batch=False: within 1 s; batch=True: within batch_interval (1 s), plus the few
        # milliseconds a commit takes.
        allowance = 1.25 if batch else 1.0
        spans = [parse_pb_date(s["updated"]) - parse_pb_date(s["created"]) for s in sessions]
        assert all(abs(span - 2.0) <= allowance for span in spans), spans


# -- the same truth from the official client script's traffic (/collect) -----------------------


def send_collect_traffic(sdks: list[SkoposSDK], site: Website, visitors: list[Visitor]) -> None:
    """What the official script sends for each visitor: the first page view at once; for
    browsers, a second page, a custom event, an outbound and a download click, a JS error
    (twice, with breadcrumbs) and an identify a second later; everyone's exit at 2 s."""
    calls = 0
    page = f"https://{site.domain}"

    def send(visitor: Visitor, user_agent: str, message: dict[str, Any]) -> None:
        nonlocal calls
        request = environ(visitor.address, user_agent)
        body = collect.encode_message({**message, "sid": site.tracking_id})
        sdks[calls % len(sdks)].track_collect(request, body)
        calls += 1

    agents = [f"{CHROME.replace('131.0.0.0', f'131.1.{n}.0')}" for n in range(len(visitors))]
    for visitor, agent in zip(visitors, agents, strict=True):
        send(visitor, agent, collect.batch(collect.page_view(), url=f"{page}/"))
    time.sleep(1.0)
    crumbs = [collect.breadcrumb("navigation", "Navigated to /pricing")]
    for number, (visitor, agent) in enumerate(zip(visitors, agents, strict=True)):
        if visitor.kind == "browser":
            pricing = f"{page}/pricing"
            items = (
                collect.page_view("/pricing"),
                collect.custom_event("signup", {"plan": "pro"}),
                collect.outbound("https://partner.example.org/"),
                collect.download("price-list.pdf", f"{page}/price-list.pdf"),
            )
            send(visitor, agent, collect.batch(*items, url=pricing))
            failure = collect.error("TypeError: x is undefined", count=2, bc=crumbs)
            send(visitor, agent, collect.errors(failure, url=pricing))
            send(visitor, agent, collect.identify(f"user-{number}", name="Ada", url=pricing))
    time.sleep(1.0)
    for visitor, agent in zip(visitors, agents, strict=True):
        duration = 30 if visitor.kind == "reader" else 2
        path = "/pricing" if visitor.kind == "browser" else "/"
        send(visitor, agent, collect.exit_message(duration, url=f"{page}{path}"))


@pytest.mark.parametrize(
    ("batch", "instances"),
    [(False, 1), (True, 1), (False, 4)],
    ids=["immediate", "batched", "4-instances"],
)
def test_the_dashboard_reads_the_truth_of_the_official_script_s_traffic(
    pocketbase: PocketBaseServer,
    website: Website,
    pb: PocketBaseClient,
    batch: bool,
    instances: int,
) -> None:
    visitors = traffic()
    options: dict[str, Any] = {"batch": True, "batch_interval": 1.0} if batch else {}
    sdks = [start_sdk(pocketbase, website, **options) for _ in range(instances)]
    try:
        send_collect_traffic(sdks, website, visitors)
        assert all(sdk.flush(timeout=60) for sdk in sdks)
        stats = [sdk.stats() for sdk in sdks]
    finally:
        for sdk in sdks:
            sdk.shutdown(timeout=10)
    browsers = sum(v.kind == "browser" for v in visitors)
    assert (
        sum(s.accepted for s in stats)
        == sum(s.written for s in stats)
        == 2 * len(visitors) + 3 * browsers
    )

    sessions = site_sessions(pb, website.id)
    events = site_events(pb, website.id)
    js_errors = records(pb, "js_errors", website=website.id)
    metrics = dashboard_metrics(sessions, events, js_errors)
    assert metrics.visitors == len(visitors)
    assert metrics.bounced_sessions == sum(v.bounces for v in visitors)
    assert metrics.engaged_sessions == sum(v.engaged for v in visitors)
    assert metrics.page_views == sum(2 if v.kind == "browser" else 1 for v in visitors)
    assert [(c.key, c.count) for c in metrics.custom_events] == [("signup", browsers)]
    clicks = Counter(e["eventName"] for e in events if e["type"] == "click")
    assert clicks == Counter({"outbound": browsers, "download": browsers})
    exits = [e["eventData"]["duration"] for e in events if e["eventName"] == "exit"]
    assert sorted(exits) == sorted(30 if v.kind == "reader" else 2 for v in visitors)
    assert metrics.js_errors == 2 * browsers
    [error] = js_errors
    assert error["breadcrumbs"] == [
        {
            "type": "navigation",
            "message": "Navigated to /pricing",
            "timestamp": collect.CLIENT_TIME_MS,
            "data": None,
        }
    ]
    identified = [v for v in records(pb, "visitors", website=website.id) if v["userId"]]
    assert len(identified) == browsers
    assert Counter({c.key: c.count for c in metrics.countries}) == Counter(
        ADDRESSES[v.address] for v in visitors
    )
    assert {(c.key, c.count) for c in metrics.entry_pages} == {("/", len(visitors))}
    assert all(s["devicePixelRatio"] == "1.5" and s["scriptVersion"] == "1.3.0" for s in sessions)
    allowance = 1.25 if batch else 1.0
    spans = [parse_pb_date(s["updated"]) - parse_pb_date(s["created"]) for s in sessions]
    assert all(abs(span - 2.0) <= allowance for span in spans), spans
