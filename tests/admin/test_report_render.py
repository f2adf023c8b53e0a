"""Periods, the terminal report and the HTML page, without PocketBase."""

from __future__ import annotations

import datetime as dt
import io
import re
from zoneinfo import ZoneInfo

import pytest
from rich.console import Console

from skopos._admin.metrics import Count, DailyPoint, Metrics
from skopos._admin.report import Period, Report, SiteInfo, resolve_timezone
from skopos._admin.report_html import daily_chart_svg, render_html
from skopos._admin.report_render import format_duration, render_report, sparkline
from skopos._exceptions import ConfigurationError

HOSTILE = '<script>alert("x")</script>'
UTC = dt.timezone.utc


def make_report(days: int = 7, **changes: object) -> Report:
    start = dt.datetime(2026, 3, 1, tzinfo=UTC)
    daily = [DailyPoint(start.date() + dt.timedelta(days=n), n * 3, n * 7) for n in range(days)]
    fields: dict[str, object] = {
        "visitors": 40,
        "distinct_visitors": 31,
        "new_visitors": 30,
        "returning_visitors": 10,
        "page_views": 97,
        "bounced_sessions": 12,
        "engaged_sessions": 25,
        "avg_session_duration": 83.4,
        "js_errors": 5,
        "top_pages": [Count("/", 50), Count(HOSTILE, 47)],
        "referrers": [Count("Direct", 30), Count("google.com", 10)],
        "errors": [Count(f"TypeError: {HOSTILE}", 5)],
        "daily": daily,
        **changes,
    }
    metrics = Metrics(**fields)  # type: ignore[arg-type]
    site = SiteInfo("rec", f"Blog {HOSTILE}", "blog.example", "k3x9")
    period = Period(start, start + dt.timedelta(days=days) - dt.timedelta(milliseconds=1), UTC)
    return Report(site, period, metrics, start + dt.timedelta(days=days))


def test_html_escapes_everything_visitors_can_write() -> None:
    html = render_html(make_report())
    assert "<script" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert html.count("<svg") >= 2


def test_daily_chart_labels_at_most_a_dozen_days() -> None:
    start = dt.date(2026, 1, 1)
    points = [DailyPoint(start + dt.timedelta(days=n), n, 2 * n) for n in range(90)]
    svg = daily_chart_svg(points)
    assert svg.count("<rect") == 90
    assert len(re.findall(r">\d\d-\d\d</text>", svg)) <= 13
    assert "<polyline" in svg
    assert "<rect" not in daily_chart_svg([])


def test_terminal_report_has_cards_chart_and_tables() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, width=160, force_terminal=False, color_system=None)
    render_report(make_report(), console, limit=1)
    out = buffer.getvalue()
    for text in ("Visitors", "31 distinct", "Bounce rate", "30%", "01:23", "Daily", "Top pages"):
        assert text in out
    assert sparkline([0, 3, 6, 9, 12, 15, 18]) in out
    assert "… 1 more" in out  # --limit 1 leaves one of the two pages out


def test_format_duration_and_sparkline() -> None:
    assert (format_duration(0), format_duration(59.5), format_duration(61)) == (
        "00:00",
        "01:00",
        "01:01",
    )
    assert format_duration(3600) == "1:00:00"
    assert sparkline([0, 0]) == "▁▁"
    assert sparkline([]) == ""


def test_periods() -> None:
    paris = ZoneInfo("Europe/Paris")
    now = dt.datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    last = Period.last("7d", paris, now=now)
    assert last.end == now
    assert last.end - last.start == dt.timedelta(days=7)
    assert last.timezone_name == "Europe/Paris"
    assert Period.last("24h", UTC, now=now).start == now - dt.timedelta(hours=24)
    assert Period.last("2w", UTC, now=now).start == now - dt.timedelta(weeks=2)
    days = Period.between("2026-03-28", "2026-03-29", paris)  # the clocks change on the 29th
    assert days.start.isoformat() == "2026-03-28T00:00:00+01:00"
    assert days.end.isoformat() == "2026-03-29T23:59:59.999000+02:00"
    for bad in ("0d", "7", "d7", "7y"):
        with pytest.raises(ConfigurationError):
            Period.last(bad, UTC)
    with pytest.raises(ConfigurationError):
        resolve_timezone("Nowhere/Land")
    assert resolve_timezone("utc") is UTC


def test_report_json_names_the_period() -> None:
    data = make_report().to_json(limit=1)
    assert data["from"] == "2026-03-01T00:00:00.000+00:00"
    assert data["to"] == "2026-03-07T23:59:59.999+00:00"
    assert data["timezone"] == "UTC"
    assert data["top_pages"] == [{"key": "/", "count": 50}]
    assert len(data["daily"]) == 7
