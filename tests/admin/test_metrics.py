"""``skopos._admin.metrics``: every rule of the dashboard, on hand-made records."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from skopos._admin.metrics import (
    Count,
    Metrics,
    MetricsAggregator,
    dashboard_metrics,
    duration_value,
    referrer_label,
)

_ids = itertools.count(1)


def at(seconds: float) -> str:
    """A PocketBase date ``seconds`` after 2026-03-01 10:00 UTC."""
    moment = dt.datetime(2026, 3, 1, 10, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def session(duration: float = 30.0, start: float = 0.0, **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": f"s{next(_ids)}",
        "visitor": fields.pop("visitor", f"v{next(_ids)}"),
        "created": at(start),
        "updated": at(start + duration),
        "isNewVisitor": True,
    }
    record.update(fields)
    return record


def page(path: str, when: float = 0.0, **fields: Any) -> dict[str, Any]:
    return {"type": "pageView", "path": path, "eventName": "", "created": at(when), **fields}


def custom(name: str, when: float = 0.0, data: Any = None, path: str = "/") -> dict[str, Any]:
    return {
        "type": "custom",
        "path": path,
        "eventName": name,
        "eventData": data,
        "created": at(when),
    }


def exit_event(duration: Any, when: float = 0.0, path: str = "/") -> dict[str, Any]:
    return custom("exit", when, {"duration": duration}, path)


def one(*events: dict[str, Any], **fields: Any) -> Metrics:
    """The metrics of one session with these events."""
    agg = MetricsAggregator()
    agg.add_session(session(**fields), list(events))
    return agg.result()


# -- visitors ------------------------------------------------------------------------------


def test_visitors_are_sessions_and_distinct_visitors_are_counted_apart() -> None:
    agg = MetricsAggregator()
    agg.add_session(session(visitor="a"), [page("/")])
    agg.add_session(session(visitor="a", isNewVisitor=False), [page("/")])
    agg.add_session(session(visitor="b"), [])
    result = agg.result()
    assert (result.visitors, result.sessions, result.distinct_visitors) == (3, 3, 2)
    assert (result.new_visitors, result.returning_visitors) == (2, 1)


def test_sorted_visitors_count_changes_like_the_set_does() -> None:
    records = [session(visitor=v) for v in ("a", "a", "b", "c", "c", "c")]
    for sorted_mode in (False, True):
        agg = MetricsAggregator(visitors_sorted=sorted_mode)
        for record in records:
            agg.add_session(record, [])
        assert agg.result().distinct_visitors == 3


# -- page views, bounce, engagement ------------------------------------------------------------


def test_page_views_count_every_page_view_of_the_period_top_pages_only_sessions() -> None:
    agg = MetricsAggregator()
    agg.add_session(session(), [page("/a"), page("/a"), page(""), custom("signup")])
    agg.add_other_event(page("/older-session"))  # its session began before the period
    agg.add_other_event(custom("signup"))
    result = agg.result()
    assert result.page_views == 4
    assert result.top_pages == [Count("/a", 2)]  # no empty path, nothing from older sessions
    assert result.custom_events == [Count("signup", 1)]


@pytest.mark.parametrize(
    ("events", "bounced"),
    [
        ([page("/")], True),
        ([page("/"), exit_event(3)], True),  # a page exit is not an interaction
        ([page("/"), exit_event(3), exit_event(4)], True),
        ([page("/"), custom("engagement", data={"ms": 10})], False),  # any other custom event
        ([page("/"), custom("page_exit")], False),
        ([page("/"), page("/b")], False),
        ([exit_event(3)], False),  # nothing but an exit: zero events, exits aside
        ([], False),  # no events: neither bounced nor engaged
    ],
)
def test_bounce_is_exactly_one_event_exits_aside(
    events: list[dict[str, Any]], bounced: bool
) -> None:
    result = one(*events)
    assert result.bounced_sessions == int(bounced)
    assert result.bounce_rate == float(bounced)


@pytest.mark.parametrize(
    ("events", "engaged"),
    [
        ([page("/")], False),
        ([page("/", 0), page("/b", 1)], True),  # two events
        ([page("/"), exit_event(10)], False),  # 10 is not more than 10
        ([page("/"), exit_event(10.5)], True),
        ([page("/"), exit_event("11")], True),  # a numeric string, read like parseFloat
        ([page("/"), exit_event("11s")], True),
        ([page("/"), exit_event(True)], False),  # not a number
        ([page("/"), exit_event("soon")], False),
        ([page("/"), exit_event(None)], False),
        ([page("/"), exit_event(3), exit_event(4)], False),  # exits never count as events
        ([custom("video", data={"duration": 42})], True),  # any event's duration
        ([page("/", 0, eventData=[1, 2])], False),  # eventData not an object
        # The corner the reference leaves out: an exit first, then one other event.
        ([exit_event(3, 0), page("/", 1)], True),
        ([page("/", 0), exit_event(3, 1)], False),
        ([], False),
    ],
)
def test_engagement(events: list[dict[str, Any]], engaged: bool) -> None:
    assert one(*events).engaged_sessions == int(engaged)


def test_rates_are_fractions_of_all_sessions() -> None:
    agg = MetricsAggregator()
    agg.add_session(session(), [page("/")])  # bounced
    agg.add_session(session(), [page("/", 0), page("/b", 1)])  # engaged
    agg.add_session(session(), [])  # neither, still a session
    agg.add_session(session(), [page("/"), exit_event(30)])  # bounced and engaged
    result = agg.result()
    assert result.bounce_rate == 0.5
    assert result.engagement_rate == 0.5
    assert Metrics().bounce_rate == Metrics().engagement_rate == 0.0


# -- durations -----------------------------------------------------------------------------


def test_average_duration_ignores_non_positive_durations_but_counts_their_sessions() -> None:
    agg = MetricsAggregator()
    for duration in (30.0, 0.0, -0.001, 15.5):
        agg.add_session(session(duration=duration), [page("/")])
    # (30 + 15.5) / 4 sessions: the dashboard's total of positive durations / sessions.
    assert agg.result().avg_session_duration == pytest.approx(11.375)
    assert MetricsAggregator().result().avg_session_duration == 0.0


# -- entry and exit pages ------------------------------------------------------------------------


def test_entry_and_exit_pages_follow_created_not_the_order_events_come_in() -> None:
    result = one(page("/third", 3), page("/first", 1), page("/second", 2))
    assert result.entry_pages == [Count("/first", 1)]
    assert result.exit_pages == [Count("/third", 1)]


def test_equal_times_keep_the_order_given_like_a_stable_sort() -> None:
    result = one(page("/a", 5), page("/b", 5), page("/c", 5))
    assert (result.entry_pages, result.exit_pages) == ([Count("/a", 1)], [Count("/c", 1)])


def test_exit_page_may_be_an_exit_events_path_and_empty_paths_fall_back() -> None:
    result = one(page("/a", 0), exit_event(20, 9, path="/a-left"))
    assert result.exit_pages == [Count("/a-left", 1)]
    fallback = one(page("", 0), page("", 1), entryPath="/in", exitPath="/out")
    assert (fallback.entry_pages, fallback.exit_pages) == ([Count("/in", 1)], [Count("/out", 1)])
    assert one(entryPath="/in", exitPath="/out").entry_pages == []  # no events: none


# -- breakdowns ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("referrer", "label"),
    [
        ("", "Direct"),
        (None, "Direct"),
        ("https://www.google.com/search", "google.com"),
        ("https://WWW.Example.COM:8443/a?b=c", "example.com"),
        ("https://news.ycombinator.com/item?id=1", "news.ycombinator.com"),
        ("https://www2.example.com/", "www2.example.com"),
        ("android-app://com.slack", "com.slack"),
        ("not a url", "not a url"),  # shown as it is, like the dashboard
        ("file:///home/x.html", "Direct"),  # a URL without a host
    ],
)
def test_referrer_labels(referrer: Any, label: str) -> None:
    assert referrer_label(referrer) == label


def test_breakdowns_come_from_sessions_and_empty_is_unknown() -> None:
    agg = MetricsAggregator()
    agg.add_session(
        session(
            browser="Firefox",
            os="Linux",
            device="desktop",
            country="DE",
            language="de-DE",
            referrer="https://www.google.com/",
        ),
        [page("/")],
    )
    agg.add_session(session(browser="", os="", device="", country="", language=""), [])
    agg.add_session(session(), [])  # fields missing entirely
    result = agg.result()
    assert result.browsers == [Count("Unknown", 2), Count("Firefox", 1)]
    assert result.os == [Count("Unknown", 2), Count("Linux", 1)]
    assert result.devices == [Count("Unknown", 2), Count("desktop", 1)]
    assert result.countries == [Count("Unknown", 2), Count("DE", 1)]
    assert result.languages == [Count("Unknown", 2), Count("de-DE", 1)]
    assert result.referrers == [Count("Direct", 2), Count("google.com", 1)]


def test_custom_events_leave_out_exits_and_non_custom_types() -> None:
    events = [
        custom("signup"),
        custom("signup"),
        exit_event(5),
        {"type": "click", "eventName": "outbound", "path": "/", "created": at(0)},
        custom(""),
    ]
    assert one(page("/"), *events).custom_events == [Count("signup", 2)]


def test_lists_sort_by_count_then_key() -> None:
    result = one(page("/b"), page("/a"), page("/c"), page("/c"))
    assert [row.key for row in result.top_pages] == ["/c", "/a", "/b"]


# -- JS errors ----------------------------------------------------------------------------------


def test_js_errors_sum_counts_and_group_by_message() -> None:
    agg = MetricsAggregator()
    agg.add_js_error({"errorMessage": "TypeError: x", "count": 3})
    agg.add_js_error({"errorMessage": "TypeError: x", "count": 2})  # another group, same text
    agg.add_js_error({"errorMessage": "ReferenceError", "count": 0})  # count || 1
    agg.add_js_error({"errorMessage": "", "count": 4})  # the total only
    agg.add_js_error({"errorMessage": "no count"})
    result = agg.result()
    assert result.js_errors == 11
    assert result.errors == [
        Count("TypeError: x", 5),
        Count("ReferenceError", 1),
        Count("no count", 1),
    ]


# -- the in-memory helper, periods, days ----------------------------------------------------------


def test_dashboard_metrics_keeps_the_period_both_ends_included() -> None:
    start = dt.datetime(2026, 3, 1, 10, tzinfo=dt.timezone.utc)
    end = start + dt.timedelta(seconds=100)
    inside, edge, before = session(start=0), session(start=100), session(start=-1)
    events = [
        {**page("/in", 0), "session": inside["id"]},
        {**page("/late", 101), "session": inside["id"]},  # after the period: not counted
        {**page("/edge", 100), "session": edge["id"]},
        {**page("/old", 50), "session": before["id"]},  # a page view of an older session
    ]
    errors = [
        {"errorMessage": "e", "count": 2, "created": at(100)},
        {"count": 5, "created": at(101)},
    ]
    result = dashboard_metrics([inside, edge, before], events, errors, start=start, end=end)
    assert result.visitors == 2
    assert result.page_views == 3
    assert result.top_pages == [Count("/edge", 1), Count("/in", 1)]
    assert result.js_errors == 2


def test_daily_series_uses_the_time_zone_and_covers_every_day() -> None:
    paris = ZoneInfo("Europe/Paris")
    late = session(start=13.5 * 3600)  # 23:30 UTC on March 1st is March 2nd in Paris
    start = dt.datetime(2026, 2, 28, tzinfo=paris)
    end = dt.datetime(2026, 3, 3, 23, 59, tzinfo=paris)
    agg = MetricsAggregator(tz=paris, start=start, end=end)
    agg.add_session(late, [page("/", 13.5 * 3600), page("/b", 13.5 * 3600 + 5)])
    daily = {
        point.day.isoformat(): (point.visitors, point.page_views) for point in agg.result().daily
    }
    assert daily == {
        "2026-02-28": (0, 0),
        "2026-03-01": (0, 0),
        "2026-03-02": (1, 2),
        "2026-03-03": (0, 0),
    }


def test_interleaved_sessions_equal_one_at_a_time() -> None:
    first, second = session(visitor="a"), session(visitor="b")
    first_events = [page("/", 0), exit_event(3, 1)]
    second_events = [page("/x", 0), page("/y", 2), custom("signup", 3)]
    whole = MetricsAggregator()
    whole.add_session(first, first_events)
    whole.add_session(second, second_events)
    mixed = MetricsAggregator()
    tallies = [mixed.open_session(first), mixed.open_session(second)]
    for a, b in itertools.zip_longest(first_events, second_events):
        if a is not None:
            mixed.add_event(tallies[0], a)
        if b is not None:
            mixed.add_event(tallies[1], b)
    for tally in tallies:
        mixed.close_session(tally)
    assert mixed.result() == whole.result()


def test_json_has_the_documented_keys_and_limit_cuts_lists() -> None:
    result = one(page("/a"), page("/b"), page("/c"))
    data = result.to_json(limit=2)
    for key in (
        "visitors",
        "distinct_visitors",
        "sessions",
        "new_visitors",
        "returning_visitors",
        "page_views",
        "bounce_rate",
        "engagement_rate",
        "avg_session_duration",
        "js_errors",
        "top_pages",
        "entry_pages",
        "exit_pages",
        "referrers",
        "browsers",
        "os",
        "devices",
        "countries",
        "languages",
        "custom_events",
        "errors",
        "daily",
    ):
        assert key in data
    assert data["top_pages"] == [{"key": "/a", "count": 1}, {"key": "/b", "count": 1}]
    assert len(result.to_json()["top_pages"]) == 3


@pytest.mark.parametrize(
    ("value", "number"),
    [
        (12, 12.0),
        (10.5, 10.5),
        ("  7.5 s", 7.5),
        ("-3", -3.0),
        (".5", 0.5),
        ("1e2x", 100.0),
        ("Infinity", float("inf")),
        ("", None),
        ("abc", None),
        (False, None),
        ({}, None),
        (float("nan"), None),
    ],
)
def test_duration_value_reads_like_javascript(value: Any, number: float | None) -> None:
    assert duration_value(value) == number
