"""``skopos report`` against a real PocketBase filled through the SDK with known traffic.

The traffic is ``traffic.plan_traffic``'s (browsers, bots, returning visitors, exits, custom
events, JS errors), played into ``SkoposSDK.track_api_event`` as WSGI requests. The report
must equal what the plan knows it sent, and what a plain transcription of the dashboard's
own computation makes of the raw records.
"""

from __future__ import annotations

import datetime as dt
import json
import struct
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from skopos import SkoposSDK
from skopos._admin.cli import main as skopos
from skopos._admin.metrics import dashboard_metrics
from skopos._admin.report import Period, SiteInfo, find_site, read_report
from skopos._admin.setup import Website
from skopos._admin.traffic import TrafficPlan, VisitorPlan, plan_traffic
from skopos._pocketbase.client import PocketBaseClient
from skopos._pocketbase.dates import parse_pb_date
from skopos._pocketbase.filter import pb_filter
from tests._support.chromium import CHROMIUM, CHROMIUM_ARGS, playwright_driver

pytestmark = pytest.mark.pocketbase

SESSION_TIMEOUT = 1.0
RETURN_AFTER = 1.6
PAUSE = 0.1


def environ(visitor: VisitorPlan, body: bytes, domain: str) -> dict[str, Any]:
    """The WSGI environ of a browser's sendBeacon POST from this visitor (no proxy)."""
    env: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/api/event",
        "QUERY_STRING": "",
        "SERVER_NAME": domain,
        "SERVER_PORT": "443",
        "REMOTE_ADDR": visitor.headers["X-Forwarded-For"],
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.url_scheme": "https",
    }
    for name, value in visitor.headers.items():
        key = name.upper().replace("-", "_")
        if key == "X_FORWARDED_FOR":
            continue
        env[key if key == "CONTENT_TYPE" else f"HTTP_{key}"] = value
    return env


def play(plan: TrafficPlan, sdk: SkoposSDK, domain: str) -> None:
    """Each visitor's requests in order with their pauses, visitors concurrently."""

    def visit(visitor: VisitorPlan) -> None:
        for number, session in enumerate(visitor.sessions):
            if number:
                time.sleep(visitor.return_after)
            for request in session:
                time.sleep(request.pause)
                body = json.dumps(request.payload).encode()
                sdk.track_api_event(environ(visitor, body, domain), body)

    with ThreadPoolExecutor(max_workers=12) as pool:
        for future in [pool.submit(visit, v) for v in plan.visitors]:
            future.result()


@pytest.fixture(scope="module")
def filled(
    pocketbase: Any, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Website, TrafficPlan]:
    """A fresh website on the shared server, with 60 planned visitors written by the SDK."""
    import uuid

    from skopos._admin.setup import ensure_website

    with pocketbase.client() as client:
        token = uuid.uuid4().hex[:12]
        site = ensure_website(client, f"report {token}", f"{token}.example.test")
    plan = plan_traffic(
        60, page_url=f"https://{site.domain}", seed=7, return_after=RETURN_AFTER, pause=PAUSE
    )
    sdk = SkoposSDK.init(
        pocketbase_url=pocketbase.url,
        site_id=site.tracking_id,
        admin_email=pocketbase.email,
        admin_password=pocketbase.password,
        strict=True,
        realtime=False,
        session_timeout=SESSION_TIMEOUT,
    )
    try:
        play(plan, sdk, site.domain)
        time.sleep(1.0)  # the sessions' last touches come due on their own (their ``updated``)
        assert sdk.flush(60)
        stats = sdk.stats()
        bots = sum(n for reason, n in stats.dropped.items() if reason.startswith("bot:"))
        assert bots == plan.expected.bot_requests
    finally:
        sdk.shutdown(timeout=10)
    return site, plan


def run_report(
    server: Any, site: Website, capsys: pytest.CaptureFixture[str], *extra: str
) -> dict[str, Any]:
    argv = ["report", "--url", server.url, "--email", server.email, "--password", server.password]
    code = skopos([*argv, "--site", site.tracking_id, "--last", "1h", "--json", *extra])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    data: dict[str, Any] = json.loads(captured.out)
    return data


def as_dict(rows: list[dict[str, Any]]) -> dict[str, int]:
    return {row["key"]: row["count"] for row in rows}


def test_report_json_equals_the_traffic_that_was_sent(
    pocketbase: Any, filled: tuple[Website, TrafficPlan], capsys: pytest.CaptureFixture[str]
) -> None:
    site, plan = filled
    expected = plan.expected
    data = run_report(pocketbase, site, capsys, "--limit", "0")
    assert data["site"] == site.tracking_id
    assert dt.datetime.fromisoformat(data["to"]) - dt.datetime.fromisoformat(
        data["from"]
    ) == dt.timedelta(hours=1)
    assert data["visitors"] == data["sessions"] == expected.sessions
    assert data["distinct_visitors"] == expected.distinct_visitors
    assert data["new_visitors"] == expected.new_visitors
    assert data["returning_visitors"] == expected.returning_visitors > 0
    assert data["page_views"] == expected.page_views
    assert data["bounce_rate"] == pytest.approx(expected.bounced_sessions / expected.sessions)
    assert data["engagement_rate"] == pytest.approx(expected.engaged_sessions / expected.sessions)
    assert as_dict(data["top_pages"]) == dict(expected.top_pages)
    assert as_dict(data["entry_pages"]) == dict(expected.entry_pages)
    assert as_dict(data["exit_pages"]) == dict(expected.exit_pages)
    assert as_dict(data["custom_events"]) == dict(expected.custom_events)
    assert "exit" not in as_dict(data["custom_events"])
    assert data["js_errors"] == expected.js_errors > 0
    assert as_dict(data["errors"]) == dict(expected.errors)
    # Durations are PocketBase's updated - created: the span of each session's requests,
    # give or take the SDK's write latency.
    spans = [sum(r.pause for r in s) for v in plan.visitors if v.human for s in v.sessions]
    assert data["avg_session_duration"] == pytest.approx(sum(spans) / len(spans), abs=1.0)
    browsers = as_dict(data["browsers"])
    assert sum(browsers.values()) == expected.sessions
    assert "Googlebot" not in json.dumps(data)


def _dashboard_transcription(
    sessions: list[dict[str, Any]], events: list[dict[str, Any]], errors: list[dict[str, Any]]
) -> dict[str, Any]:
    """The dashboard's computation written out plainly over lists (no streaming)."""

    def duration(event: dict[str, Any]) -> float | None:
        value = (event.get("eventData") or {}).get("duration")
        return float(value) if isinstance(value, (int, float)) else None

    by_session: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in sorted(events, key=lambda e: parse_pb_date(e["created"])):  # a stable sort
        by_session[event["session"]].append(event)
    bounced = engaged = 0
    entries: Counter[str] = Counter()
    exits: Counter[str] = Counter()
    for session in sessions:
        evs = by_session.get(session["id"], [])
        if not evs:
            continue
        entries[evs[0]["path"] or session["entryPath"]] += 1
        exits[evs[-1]["path"] or session["exitPath"]] += 1
        bounced += sum(e["eventName"] != "exit" for e in evs) == 1
        for i, event in enumerate(evs):
            d = duration(event)
            long = d is not None and d > 10
            if long or (event["eventName"] != "exit" and i >= 1):
                engaged += 1
                break
    total = sum(
        max(0.0, parse_pb_date(s["updated"]) - parse_pb_date(s["created"])) for s in sessions
    )
    return {
        "sessions": len(sessions),
        "page_views": sum(e["type"] == "pageView" for e in events),
        "bounced": bounced,
        "engaged": engaged,
        "avg": total / len(sessions),
        "entries": dict(entries),
        "exits": dict(exits),
        "js_errors": sum(int(e.get("count") or 0) or 1 for e in errors),
    }


def test_report_agrees_with_the_dashboards_computation_on_the_raw_records(
    pocketbase: Any,
    pb: PocketBaseClient,
    filled: tuple[Website, TrafficPlan],
    capsys: pytest.CaptureFixture[str],
) -> None:
    site, _ = filled
    data = run_report(pocketbase, site, capsys, "--limit", "0")
    sessions = list(pb.iter_records("sessions", filter=pb_filter("website = {:s}", s=site.id)))
    events = list(
        pb.iter_records(
            "events", filter=pb_filter("session.website = {:s}", s=site.id), sort="created,@rowid"
        )
    )
    errors = list(pb.iter_records("js_errors", filter=pb_filter("website = {:s}", s=site.id)))
    plain = _dashboard_transcription(sessions, events, errors)
    assert data["sessions"] == plain["sessions"]
    assert data["page_views"] == plain["page_views"]
    assert data["bounced_sessions"] == plain["bounced"]
    assert data["engaged_sessions"] == plain["engaged"]
    assert data["avg_session_duration"] == pytest.approx(plain["avg"], abs=0.001)
    assert as_dict(data["entry_pages"]) == plain["entries"]
    assert as_dict(data["exit_pages"]) == plain["exits"]
    assert data["js_errors"] == plain["js_errors"]
    # And the in-memory helper others use in their tests says the same about everything.
    start = dt.datetime.fromisoformat(data["from"])
    end = dt.datetime.fromisoformat(data["to"])
    tz = start.tzinfo
    assert tz is not None
    whole = dashboard_metrics(sessions, events, errors, start=start, end=end, tz=tz).to_json()
    assert whole == {k: v for k, v in data.items() if k in whole}


def test_paging_by_key_reads_the_same_with_tiny_pages(
    pb: PocketBaseClient, filled: tuple[Website, TrafficPlan]
) -> None:
    site, _ = filled
    info = find_site(pb, site.tracking_id)
    period = Period.last("1h")
    big = read_report(pb, info, period)
    seen: list[tuple[int, int]] = []
    small = read_report(pb, info, period, page_size=7, progress=lambda d, t: seen.append((d, t)))
    assert small.metrics == big.metrics
    assert seen[0] == (0, big.metrics.visitors)
    assert seen[-1] == (big.metrics.visitors, big.metrics.visitors)


def test_a_period_without_data_reports_zeros(pb: PocketBaseClient, website: Website) -> None:
    info = SiteInfo(website.id, website.name, website.domain, website.tracking_id)
    report = read_report(pb, info, Period.between("2020-01-01", "2020-01-03", dt.timezone.utc))
    data = report.to_json()
    assert (data["visitors"], data["page_views"], data["bounce_rate"]) == (0, 0, 0.0)
    assert [point["date"] for point in data["daily"]] == ["2020-01-01", "2020-01-02", "2020-01-03"]


def test_terminal_report_shows_the_numbers(
    pocketbase: Any, filled: tuple[Website, TrafficPlan], capsys: pytest.CaptureFixture[str]
) -> None:
    site, plan = filled
    argv = ["report", "--url", pocketbase.url, "--email", pocketbase.email]
    code = skopos([*argv, "--password", pocketbase.password, "--site", site.tracking_id])
    out = capsys.readouterr().out
    assert code == 0
    for title in ("Visitors", "Page views", "Bounce rate", "Top pages", "Referrers", "JS errors"):
        assert title in out
    assert f"{plan.expected.page_views:,}" in out


# -- options and errors ------------------------------------------------------------------------


@pytest.fixture
def env(pocketbase: Any, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    monkeypatch.setenv("SKOPOS_POCKETBASE_URL", pocketbase.url)
    monkeypatch.setenv("SKOPOS_ADMIN_EMAIL", pocketbase.email)
    monkeypatch.setenv("SKOPOS_ADMIN_PASSWORD", pocketbase.password)

    def site(tracking_id: str) -> None:
        monkeypatch.setenv("SKOPOS_SITE_ID", tracking_id)

    return site


def test_environment_fallbacks_and_arguments_win(
    env: Callable[[str], None], website: Website, capsys: pytest.CaptureFixture[str]
) -> None:
    env(website.tracking_id)
    assert skopos(["report", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["site"] == website.tracking_id
    env("no-such-site")
    assert skopos(["report", "--json", "--site", website.tracking_id]) == 0  # argument > env
    capsys.readouterr()
    assert skopos(["report", "--json", "--url", "http://127.0.0.1:9"]) == 1  # argument > env


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--site", "no-such-site"], "no website with tracking id 'no-such-site'"),
        (["--last", "soon"], "--last must look like 24h, 7d or 30d"),
        (["--from", "2026-13-01"], "--from must be a date like 2026-01-31"),
        (["--to", "2026-01-01"], "--to needs --from"),
        (["--from", "2026-02-01", "--to", "2026-01-01"], "is before --from"),
        (["--tz", "Mars/Olympus"], "unknown time zone 'Mars/Olympus'"),
        (["--password", "wrong-password"], "refused the superuser credentials"),
        (["--url", "http://127.0.0.1:9"], "cannot reach PocketBase"),
    ],
)
def test_errors_are_one_line_with_exit_code_1(
    env: Callable[[str], None],
    website: Website,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    env(website.tracking_id)
    assert skopos(["report", *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("skopos report: error: ")
    assert message in err
    assert err.count("\n") == 1


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        skopos(["report", "--limit", "many"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        skopos(["report", "--last", "7d", "--from", "2026-01-01"])
    assert exit_info.value.code == 2
    capsys.readouterr()


# -- HTML ----------------------------------------------------------------------------------------


def test_html_report_is_self_contained_and_renders_in_chromium(
    pocketbase: Any,
    filled: tuple[Website, TrafficPlan],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    site, plan = filled
    page_file = tmp_path / "report.html"
    data = run_report(pocketbase, site, capsys, "--html", str(page_file))
    html = page_file.read_text("utf-8")
    assert html.startswith("<!doctype html>")
    assert "<svg" in html
    assert "<script" not in html
    for reference in ('src="http', 'href="http', "url(http", "@import"):
        assert reference not in html
    assert f"{data['page_views']:,}" in html

    requests: list[str] = []
    screenshot = tmp_path / "report.png"
    for driver in playwright_driver("the HTML report"):
        browser = driver.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            view = browser.new_page(viewport={"width": 1200, "height": 900})
            view.on("request", lambda request: requests.append(request.url))
            view.goto(page_file.as_uri())
            assert view.locator("h1").inner_text().startswith("Skopos report")
            bars = view.locator("svg rect").count()
            assert bars >= 1
            view.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert requests == [page_file.as_uri()]  # nothing fetched but the page itself
    png = screenshot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert width >= 1200
    assert height >= 900
    assert len(png) > 30_000, "a blank page compresses far smaller"
    assert plan.expected.page_views == data["page_views"]
