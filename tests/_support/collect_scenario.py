"""One visitor's traffic as the official client script sends it to ``/collect``, and what must
land in PocketBase for it: the same check for every integration.

``visit(site_id, domain)`` is every message type the script sends, in the order a visit
produces them (the first page view at once, then a batch with a custom event, an outbound
click, a download and an SPA navigation, JS errors with breadcrumbs, an identify, the exit).
``expected(visit)`` says, from the reference mapping (``collect_records``, which follows the
dashboard's own collector), what each record must hold; ``assert_landed`` reads PocketBase
and compares field by field, then checks the dashboard's own numbers (``_admin/metrics``).

Where we deliberately differ from the dashboard's collector, the expectation says so:
the visitor id is our keyed hash (never the client's ``vid``), the referrer is stored
without query string, JS errors are grouped by our ``error_hash``.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from skopos._admin.metrics import dashboard_metrics
from skopos._pocketbase.client import PocketBaseClient
from skopos._pocketbase.filter import pb_filter
from skopos._tracking.collect import CollectMessage, decode_collect
from skopos._tracking.collect_records import CollectRecords, collect_records
from tests._support.collect_client import (
    batch,
    breadcrumb,
    custom_event,
    download,
    encode_message,
    error,
    errors,
    exit_message,
    identify,
    outbound,
    page_view,
)
from tests._support.tracking_helpers import CHROME, environ, records, site_events, site_sessions

# What Chrome sends with the script's fetch(..., {keepalive: true}) from the site's page.
CONTENT_TYPE = "application/json"


def browser_headers(domain: str) -> dict[str, str]:
    """The request headers of the script's POST from a page of ``domain`` (cross-origin)."""
    return {
        "User-Agent": CHROME,
        "Accept-Language": "en-US,en;q=0.9",
        "Origin": f"https://{domain}",
        "Sec-Fetch-Mode": "cors",
    }


@dataclass(frozen=True)
class Visit:
    """The messages of one visit and their bodies as the script posts them."""

    domain: str
    messages: list[dict[str, Any]]
    bodies: list[bytes] = field(default_factory=list)


def visit(site_id: str, domain: str) -> Visit:
    """A visit to ``domain`` (tracked as ``site_id``) with every message type."""
    page = f"https://{domain}"
    crumbs = [
        breadcrumb("navigation", "Navigated to /docs", data={"from": "/pricing", "to": "/docs"}),
        breadcrumb("click", "button#signup"),
    ]
    messages = [
        batch(page_view(), sid=site_id, url=f"{page}/pricing?plan=pro"),
        batch(
            custom_event("signup", {"plan": "pro", "seats": 3, "note": "naïve 🙂"}),
            outbound("https://partner.example.org/offer?ref=skopos"),
            download("report.pdf", f"{page}/files/report.pdf"),
            page_view("/docs"),
            sid=site_id,
            url=f"{page}/docs",
        ),
        errors(
            error(
                "TypeError: x is undefined",
                stack="TypeError: x is undefined\n    at render (app.js:10:5)",
                count=3,
                bc=crumbs,
            ),
            error("Script error.", count=1),
            sid=site_id,
            url=f"{page}/docs",
        ),
        identify(
            "user-42",
            name="Ada Lovelace",
            email="ada@example.com",
            phone="+44 20 7946 0000",
            meta={"plan": "pro"},
            sid=site_id,
            url=f"{page}/docs",
        ),
        exit_message(42, sid=site_id, url=f"{page}/docs"),
    ]
    return Visit(domain, messages, [encode_message(message) for message in messages])


@dataclass(frozen=True)
class Expected:
    """What the records must hold, from the reference mapping of each message."""

    decoded: list[CollectMessage]
    records: list[CollectRecords]

    @property
    def events(self) -> list[tuple[str, str, Any, Any]]:
        """(type, path, eventName, eventData) of every event, in the order sent."""
        found: list[tuple[str, str, Any, Any]] = []
        for entry in self.records:
            for event in entry.events:
                fields = event.fields()
                found.append(
                    (event.type, event.path, fields.get("eventName", ""), fields.get("eventData"))
                )
        return found

    @property
    def session(self) -> dict[str, str]:
        """The session's fields: the first message's, the exit path of the last one's."""
        fields = dict(self.records[0].session.fields())
        fields["exitPath"] = self.records[-1].session.path
        return fields

    @property
    def error_counts(self) -> Counter[str]:
        """Occurrences by error message."""
        counts: Counter[str] = Counter()
        for entry in self.records:
            for occurrence in entry.js_errors:
                counts[occurrence.message] += occurrence.count
        return counts


def expected(sent: Visit) -> Expected:
    """The reference mapping of every message of ``sent``."""
    decoded = []
    for body in sent.bodies:
        message = decode_collect(body)
        assert isinstance(message, CollectMessage), message
        decoded.append(message)
    return Expected(decoded, [collect_records(message) for message in decoded])


# An integration's test client, reduced: ``send(method, path, body, headers)`` →
# ``(status, headers by lower-case name, body)``.
Send = Callable[[str, str, bytes, dict[str, str]], tuple[int, dict[str, str], bytes]]


def post_visit(send: Send, sent: Visit) -> None:
    """Post every message of ``sent`` as the script does; each is answered 204 with CORS
    headers for the site's page (the script's fetch reads the answer)."""
    origin = f"https://{sent.domain}"
    headers = {**browser_headers(sent.domain), "Content-Type": CONTENT_TYPE}
    for body in sent.bodies:
        status, answered, content = send("POST", "/collect", body, headers)
        assert (status, content) == (204, b""), (status, content)
        assert answered.get("access-control-allow-origin") == origin, answered


def assert_collect_http(send: Send, domain: str, configured_origin: str | None = None) -> None:
    """The HTTP side of ``/collect``: CORS for the site's pages (with and without ``www.``)
    and configured origins only, the health answer, and the refusals of ``/api/event``."""
    allowed = [f"https://{domain}", f"https://www.{domain}", f"http://{domain}:8080"]
    if configured_origin:
        allowed.append(configured_origin)
    for origin in allowed:
        preflight = {
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        }
        status, headers, _ = send("OPTIONS", "/collect", b"", preflight)
        assert status == 204, (origin, status)
        assert headers.get("access-control-allow-origin") == origin, (origin, headers)
        assert "POST" in headers["access-control-allow-methods"]
        assert headers["access-control-allow-headers"] == "Content-Type"
    for origin in (f"https://{domain}.evil.example", "https://evil.example", "null"):
        status, headers, _ = send("OPTIONS", "/collect", b"", {"Origin": origin})
        assert status == 204
        assert not any(name.startswith("access-control") for name in headers), (origin, headers)

    status, headers, content = send("GET", "/collect/health", b"", {"Origin": f"https://{domain}"})
    assert status == 200
    assert headers["content-type"].startswith("application/json")
    assert headers.get("access-control-allow-origin") == f"https://{domain}"
    health = json.loads(content)
    assert health["status"] == "ok"
    assert abs(health["timestamp"] - time.time() * 1000) < 60_000

    status, headers, _ = send("GET", "/collect", b"", {})
    assert status == 405
    assert "POST" in headers["allow"]
    xml = {"Content-Type": "application/xml"}
    assert send("POST", "/collect", b"<collect/>", xml)[0] == 415
    too_big = {"Content-Type": CONTENT_TYPE}
    assert send("POST", "/collect", b'{"_d": "' + b"A" * 20_000 + b'", "_v": 1}', too_big)[0] == 413


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True)


def assert_landed(pb: PocketBaseClient, website_id: str, sent: Visit) -> None:
    """Everything ``sent`` says is in PocketBase, field by field, and reads right on the
    dashboard; nothing else is."""
    want = expected(sent)
    [session] = site_sessions(pb, website_id)
    # In the dashboard's order: by created, then as PocketBase stored them (events of one
    # transaction share a millisecond; the writer inserts them in the order sent).
    events = list(
        pb.iter_records(
            "events", filter=pb_filter("session = {:s}", s=session["id"]), sort="created,@rowid"
        )
    )
    js_errors = records(pb, "js_errors", website=website_id)
    [visitor] = records(pb, "visitors", website=website_id)

    # Events: one per item, fields as the dashboard's collector writes them.
    landed = [(e["type"], e["path"], e["eventName"], e["eventData"]) for e in events]
    assert sorted(map(_canonical, landed)) == sorted(map(_canonical, want.events)), landed
    assert all(e["session"] == session["id"] for e in events)

    # The session: the envelope's fields, and ours (user agent, visitor, new visitor).
    for name, value in want.session.items():
        assert session[name] == value, name
    assert (session["browser"], session["os"], session["device"]) == (
        "Chrome",
        "Windows",
        "desktop",
    )
    assert session["visitor"] == visitor["id"]
    assert session["isNewVisitor"] is True
    assert session["firstActivity"]
    assert session["lastActivity"]

    # JS errors: grouped, counts added, the latest breadcrumbs, when last seen.
    by_message = {record["errorMessage"]: record for record in js_errors}
    assert Counter({m: r["count"] for m, r in by_message.items()}) == want.error_counts
    for entry in want.records:
        for occurrence in entry.js_errors:
            record = by_message[occurrence.message]
            for field_name, field_value in occurrence.fields().items():
                assert record[field_name] == field_value, field_name
            assert record["session"] == session["id"]
            assert record["lastSeen"]
    assert by_message["Script error."]["breadcrumbs"] is None

    # The visitor: identify's fields; its id is ours, not the script's vid.
    identified = next(entry.visitor for entry in want.records if entry.visitor is not None)
    assert identified is not None
    for trait, trait_value in identified.fields().items():
        assert visitor[trait] == trait_value, trait
    assert visitor["visitorId"] not in {m.visitor_id for m in want.decoded}
    assert len(visitor["visitorId"]) >= 32

    # The dashboard's numbers for this traffic.
    metrics = dashboard_metrics([session], events, js_errors)
    assert (metrics.visitors, metrics.new_visitors, metrics.page_views) == (1, 1, 2)
    assert (metrics.bounced_sessions, metrics.engaged_sessions) == (0, 1)
    assert [(c.key, c.count) for c in metrics.custom_events] == [("signup", 1)]
    assert [(c.key, c.count) for c in metrics.entry_pages] == [("/pricing", 1)]
    assert [(c.key, c.count) for c in metrics.exit_pages] == [("/docs", 1)]
    assert metrics.js_errors == sum(want.error_counts.values()) == 4
    assert [(c.key, c.count) for c in metrics.referrers] == [("google.com", 1)]
    clicks = Counter(e["eventName"] for e in events if e["type"] == "click")
    assert clicks == Counter({"outbound": 1, "download": 1})
    [exit_event] = [e for e in events if e["eventName"] == "exit"]
    assert exit_event["eventData"] == {"duration": 42}


@dataclass(frozen=True)
class Trace:
    """``calls`` messages from 6 visitors, each posted as its own call: batches of 3 events,
    errors messages of 2 errors (3 occurrences), exits. What must land is counted."""

    calls: list[tuple[dict[str, Any], bytes]]  # (WSGI environ, body)
    events: Counter[tuple[str, str, str]]  # (type, path, eventName)
    errors: Counter[str]  # occurrences by message
    activities: int  # what the calls become: events and error occurrences, one each


def trace(site_id: str, domain: str, calls: int) -> Trace:
    """A trace of ``calls`` /collect calls on ``domain``."""
    sent: list[tuple[dict[str, Any], bytes]] = []
    events: Counter[tuple[str, str, str]] = Counter()
    errors_seen: Counter[str] = Counter()
    activities = 0
    for number in range(calls):
        request = environ(f"198.51.100.{number % 6 + 1}")
        url = f"https://{domain}/t/{number}"
        if number % 3 == 0:
            message = batch(
                page_view(),
                custom_event(f"e{number}"),
                outbound("https://elsewhere.example.org/"),
                sid=site_id,
                url=url,
            )
            events.update(
                [
                    ("pageView", f"/t/{number}", ""),
                    ("custom", f"/t/{number}", f"e{number}"),
                    ("click", f"/t/{number}", "outbound"),
                ]
            )
            activities += 3
        elif number % 3 == 1:
            stack = "Error: A\n    at a (app.js:1:1)"
            message = errors(
                error("A", stack=stack, count=2), error("B", count=1), sid=site_id, url=url
            )
            errors_seen.update({"A": 2, "B": 1})
            activities += 2
        else:
            message = exit_message(5, sid=site_id, url=url)
            events[("custom", f"/t/{number}", "exit")] += 1
            activities += 1
        sent.append((request, encode_message(message)))
    return Trace(sent, events, errors_seen, activities)


def assert_trace_landed(pb: PocketBaseClient, website_id: str, sent: Trace) -> None:
    """Every event and error occurrence of ``sent`` is in PocketBase exactly once."""
    landed = Counter((e["type"], e["path"], e["eventName"]) for e in site_events(pb, website_id))
    assert landed == sent.events
    found = {e["errorMessage"]: e["count"] for e in records(pb, "js_errors", website=website_id)}
    assert found == dict(sent.errors)
