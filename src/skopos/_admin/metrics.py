"""The Skopos Dashboard's numbers, computed exactly as the dashboard computes them (pure).

The dashboard reads the raw ``sessions``, ``events`` and ``js_errors`` records of a period and
derives every number from them (``/work/shared/reference/dashboard-metrics.md`` has the rules).
This module holds those rules as a streaming aggregator fed one session at a time, so that
``skopos report`` can read a million events in bounded memory, and so that any test can check
that what the SDK writes reads right on the dashboard::

    agg = MetricsAggregator()
    agg.add_session(session_record, events_of_that_session)  # PocketBase records as dicts
    agg.add_js_error(js_error_record)
    metrics = agg.result()
    metrics.bounce_rate, metrics.top_pages[0]

or, for records already in memory, ``dashboard_metrics(sessions, events, js_errors)``.

The rules, and what we chose where the reference is silent (following the dashboard's own
analytics service, version 0.54):

- **Period**: sessions, events and JS error records whose ``created`` lies in ``[start, end]``,
  both ends included. Per-session numbers use a period session's events of the period.
- **Visitors** = sessions; ``distinct_visitors`` = distinct ``sessions.visitor``; new and
  returning from ``isNewVisitor``.
- **Page views** = every ``pageView`` event of the period, also those of a session that began
  before the period (``add_other_event``); **top pages** count only the period's sessions'
  page views with a path (the dashboard does the same, so the two can differ slightly).
- An event is an *exit* when its ``eventName`` is ``exit`` (whatever its type).
- **Bounce**: exactly one event that is not an exit. A session without events is neither
  bounced nor engaged, and has no entry or exit page.
- **Engaged**: any event whose ``eventData.duration`` is a number > 10 (a numeric string is
  read like JavaScript's ``parseFloat``, as the dashboard does), or a non-exit event that is
  not the session's first event in ``created`` order. That is "two or more events, exits
  aside" except in one corner the reference does not mention: a session whose first event
  is an exit and whose only other event is not counts as engaged, as on the dashboard.
- **Entry / exit page**: the path of the first / last event by ``created`` (ties keep the
  order the events were fed in, as the dashboard's stable sort does), or the session's
  ``entryPath`` / ``exitPath`` when that event has no path.
- **Average session duration** = the sum of the positive ``updated - created`` durations
  divided by the number of *all* sessions (the dashboard's formula: a non-positive duration
  adds nothing but its session still counts). Seconds, not rounded (the dashboard shows it
  rounded to whole seconds).
- **Rates** are fractions 0..1 of all sessions (the dashboard shows rounded percents).
- **Referrers**: the hostname of ``sessions.referrer`` without a leading ``www.``; empty means
  ``Direct``; a referrer that is not a URL is shown as it is. **Browsers, OS, devices,
  countries, languages**: the session's value, empty means ``Unknown``.
- **Custom events**: ``custom`` events with a name other than ``exit``.
- **JS errors**: the sum of ``count`` (a missing or zero count counts 1, as on the dashboard),
  grouped by ``errorMessage`` for the list (records without a message count in the total only).
- Lists are sorted by count, then key (the dashboard keeps first-seen order among ties).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from skopos._pocketbase.dates import parse_pb_date

__all__ = [
    "BREAKDOWN_TITLES",
    "DIRECT",
    "ENGAGED_DURATION",
    "EXIT_EVENT",
    "UNKNOWN",
    "Count",
    "DailyPoint",
    "Metrics",
    "MetricsAggregator",
    "SessionTally",
    "dashboard_metrics",
    "duration_value",
    "referrer_label",
]

Record = Mapping[str, Any]

EXIT_EVENT = "exit"
ENGAGED_DURATION = 10.0  # seconds; an event with a longer eventData.duration engages
DIRECT = "Direct"
UNKNOWN = "Unknown"

# JavaScript's parseFloat: optional blanks, a sign, then the longest decimal prefix.
_MAX_DAY_SLOTS = 10_000
_JS_FLOAT = re.compile(r"[+-]?(?:Infinity|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)")


@dataclass(frozen=True, slots=True)
class Count:
    """One row of a breakdown: a key (a path, a browser, ``Direct``...) and how often.

    >>> Count("/pricing", 3).to_json()
    {'key': '/pricing', 'count': 3}
    """

    key: str
    count: int

    def to_json(self) -> dict[str, Any]:
        """The row as it appears in ``skopos report --json``."""
        return {"key": self.key, "count": self.count}


@dataclass(frozen=True, slots=True)
class DailyPoint:
    """Sessions begun and page views made on one local day.

    >>> DailyPoint(dt.date(2026, 1, 2), 4, 9).to_json()
    {'date': '2026-01-02', 'visitors': 4, 'page_views': 9}
    """

    day: dt.date
    visitors: int
    page_views: int

    def to_json(self) -> dict[str, Any]:
        """The point as it appears under ``daily`` in ``skopos report --json``."""
        return {
            "date": self.day.isoformat(),
            "visitors": self.visitors,
            "page_views": self.page_views,
        }


# Each breakdown's title in reports, in the order reports show them.
BREAKDOWN_TITLES = {
    "top_pages": "Top pages",
    "entry_pages": "Entry pages",
    "exit_pages": "Exit pages",
    "referrers": "Referrers",
    "browsers": "Browsers",
    "os": "Operating systems",
    "devices": "Devices",
    "countries": "Countries",
    "languages": "Languages",
    "custom_events": "Custom events",
    "errors": "JS errors",
}


@dataclass(frozen=True)
class Metrics:
    """Every number of a period, as the dashboard shows it (see the module docs).

    >>> t0, t1 = "2026-01-01 10:00:00.000Z", "2026-01-01 10:00:30.000Z"
    >>> m = dashboard_metrics(
    ...     [{"id": "s1", "created": t0, "updated": t1, "isNewVisitor": True}],
    ...     [{"session": "s1", "type": "pageView", "path": "/", "created": t0}],
    ...     [],
    ... )
    >>> (m.visitors, m.page_views, m.bounce_rate, m.avg_session_duration)
    (1, 1, 1.0, 30.0)
    """

    visitors: int = 0
    distinct_visitors: int = 0
    new_visitors: int = 0
    returning_visitors: int = 0
    page_views: int = 0
    bounced_sessions: int = 0
    engaged_sessions: int = 0
    avg_session_duration: float = 0.0
    js_errors: int = 0
    top_pages: list[Count] = field(default_factory=list)
    entry_pages: list[Count] = field(default_factory=list)
    exit_pages: list[Count] = field(default_factory=list)
    referrers: list[Count] = field(default_factory=list)
    browsers: list[Count] = field(default_factory=list)
    os: list[Count] = field(default_factory=list)
    devices: list[Count] = field(default_factory=list)
    countries: list[Count] = field(default_factory=list)
    languages: list[Count] = field(default_factory=list)
    custom_events: list[Count] = field(default_factory=list)
    errors: list[Count] = field(default_factory=list)
    daily: list[DailyPoint] = field(default_factory=list)

    @property
    def sessions(self) -> int:
        """Sessions of the period: the dashboard's headline "visitors"."""
        return self.visitors

    @property
    def bounce_rate(self) -> float:
        """Bounced sessions / sessions, 0..1."""
        return self.bounced_sessions / self.visitors if self.visitors else 0.0

    @property
    def engagement_rate(self) -> float:
        """Engaged sessions / sessions, 0..1."""
        return self.engaged_sessions / self.visitors if self.visitors else 0.0

    def breakdowns(self) -> dict[str, list[Count]]:
        """Every list, by its JSON name, in the order reports show them."""
        return {
            "top_pages": self.top_pages,
            "entry_pages": self.entry_pages,
            "exit_pages": self.exit_pages,
            "referrers": self.referrers,
            "browsers": self.browsers,
            "os": self.os,
            "devices": self.devices,
            "countries": self.countries,
            "languages": self.languages,
            "custom_events": self.custom_events,
            "errors": self.errors,
        }

    def to_json(self, *, limit: int | None = None) -> dict[str, Any]:
        """The numbers under their ``skopos report --json`` names; lists cut to ``limit`` rows.

        >>> sorted(Metrics().to_json())[:4]
        ['avg_session_duration', 'bounce_rate', 'bounced_sessions', 'browsers']
        """
        data: dict[str, Any] = {
            "visitors": self.visitors,
            "distinct_visitors": self.distinct_visitors,
            "sessions": self.sessions,
            "new_visitors": self.new_visitors,
            "returning_visitors": self.returning_visitors,
            "page_views": self.page_views,
            "bounced_sessions": self.bounced_sessions,
            "engaged_sessions": self.engaged_sessions,
            "bounce_rate": round(self.bounce_rate, 6),
            "engagement_rate": round(self.engagement_rate, 6),
            "avg_session_duration": round(self.avg_session_duration, 3),
            "js_errors": self.js_errors,
        }
        for name, rows in self.breakdowns().items():
            data[name] = [row.to_json() for row in rows[:limit]]
        data["daily"] = [point.to_json() for point in self.daily]
        return data


def duration_value(value: object) -> float | None:
    """``eventData.duration`` as the dashboard reads it: a number, or a string's numeric
    prefix (JavaScript's ``parseFloat``); None for anything else.

    >>> duration_value(12), duration_value("11.5s"), duration_value(True), duration_value("x")
    (12.0, 11.5, None, None)
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
        return None if math.isnan(number) else number
    if isinstance(value, str):
        match = _JS_FLOAT.match(value.lstrip())
        if match is None:
            return None
        text = match.group(0)
        return float(text.replace("Infinity", "inf"))
    return None


def referrer_label(referrer: object) -> str:
    """The referrer as the dashboard groups it: hostname without ``www.``, else ``Direct``.

    >>> referrer_label("https://www.Google.com/search"), referrer_label(""), referrer_label("x")
    ('google.com', 'Direct', 'x')
    """
    if not referrer or not isinstance(referrer, str):
        return DIRECT
    try:
        parts = urlsplit(referrer.strip())
        if not parts.scheme or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", parts.scheme):
            return referrer  # not a URL: the dashboard shows the text as it is
        host = parts.hostname or ""
    except ValueError:
        return referrer
    host = host.removeprefix("www.")
    return host or DIRECT


class _Clock:
    """PocketBase dates to epoch seconds, and epoch seconds to local days, both memoised.

    ``parse_pb_date`` (a full date parse) would cost more than everything else per event. Dates are
    memoised by day (a period has few), local days by quarter hour (every UTC offset is a
    multiple of 15 minutes), at most ``_MAX_DAY_SLOTS`` of them (104 days' worth).
    """

    __slots__ = ("_days", "_midnights", "_tz")

    def __init__(self, tz: dt.tzinfo) -> None:
        self._tz = tz
        self._midnights: dict[str, float] = {}
        self._days: dict[int, dt.date] = {}

    def seconds(self, value: object) -> float:
        """``2026-01-02 03:04:05.678Z`` as epoch seconds (0.0 if unreadable)."""
        if not isinstance(value, str):
            return 0.0
        midnight = self._midnights.get(value[:10])
        if midnight is None:
            midnight = parse_pb_date(value[:10] + " 00:00:00.000Z")
            if midnight == 0.0 and not value.startswith("1970-01-01"):
                return parse_pb_date(value)
            self._midnights[value[:10]] = midnight
        try:
            hours, minutes, rest = int(value[11:13]), int(value[14:16]), float(value[17:23])
        except ValueError:
            return parse_pb_date(value)
        if len(value) != 24 or value[-1] != "Z":
            return parse_pb_date(value)
        return midnight + hours * 3600 + minutes * 60 + rest

    def day(self, timestamp: float) -> dt.date:
        """The local date of ``timestamp``."""
        slot = int(timestamp // 900)
        found = self._days.get(slot)
        if found is None:
            if len(self._days) >= _MAX_DAY_SLOTS:
                self._days.clear()  # a long period: start over rather than grow
            found = dt.datetime.fromtimestamp(slot * 900, self._tz).date()
            self._days[slot] = found
        return found


def _label(value: object) -> str:
    return value if isinstance(value, str) and value else UNKNOWN


def _is_exit(event: Record) -> bool:
    return event.get("eventName") == EXIT_EVENT


def _event_duration(event: Record) -> float | None:
    data = event.get("eventData")
    return duration_value(data.get("duration")) if isinstance(data, Mapping) else None


def _sorted_counts(counter: Counter[str]) -> list[Count]:
    return [Count(key, n) for key, n in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))]


class SessionTally:
    """What the rules need from one open session's events: O(1), whatever their number.

    Made by ``MetricsAggregator.open_session``; fed by ``add_event``.
    """

    __slots__ = (
        "engaged",
        "entry_path",
        "events",
        "exit_path",
        "first_at",
        "first_is_exit",
        "last_at",
        "non_exit",
        "session",
    )

    def __init__(self, session: Record) -> None:
        self.session = session
        self.events = 0
        self.non_exit = 0
        self.engaged = False
        self.first_at = math.inf
        self.last_at = -math.inf
        self.first_is_exit = False
        self.entry_path = ""
        self.exit_path = ""

    def add(self, event: Record, at: float) -> None:
        self.events += 1
        exit_event = _is_exit(event)
        if not exit_event:
            self.non_exit += 1
        duration = _event_duration(event)
        if duration is not None and duration > ENGAGED_DURATION:
            self.engaged = True
        path = event.get("path") or ""
        # A stable sort by created: the first of equal times stays first, the last stays last.
        if at < self.first_at:
            self.first_at, self.first_is_exit, self.entry_path = at, exit_event, path
        if at >= self.last_at:
            self.last_at, self.exit_path = at, path

    @property
    def is_engaged(self) -> bool:
        # A non-exit event at a position after the first engages: with two non-exit events
        # one of them is; with one, it is when an exit comes first.
        return self.engaged or self.non_exit >= 2 or (self.non_exit == 1 and self.first_is_exit)


class MetricsAggregator:
    """Feed it a period's records, one session at a time; ``result()`` gives the numbers.

    Memory is bounded by the number of distinct keys (paths, referrers, browsers, error
    messages, days), never by the number of events. Distinct visitors need a set of visitor
    ids unless sessions arrive ordered by ``visitor`` (``visitors_sorted=True``), when
    counting changes is enough.

    ``tz`` decides the local day of the ``daily`` series; ``start`` and ``end`` (aware
    datetimes) make that series cover every day of the period, zeros included.

    Example::

        agg = MetricsAggregator(tz=ZoneInfo("Europe/Paris"))
        for session in sessions:
            agg.add_session(session, events_by_session.get(session["id"], []))
        for event in page_views_of_older_sessions:
            agg.add_other_event(event)
        for error in js_errors:
            agg.add_js_error(error)
        print(agg.result().to_json())
    """

    def __init__(
        self,
        *,
        tz: dt.tzinfo = dt.timezone.utc,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        visitors_sorted: bool = False,
    ) -> None:
        self._tz = tz
        self._clock = _Clock(tz)
        self._start = start
        self._end = end
        self._visitors_sorted = visitors_sorted
        self._visitor_set: set[str] = set()
        self._last_visitor: str | None = None
        self._distinct = 0
        self._sessions = 0
        self._new = 0
        self._bounced = 0
        self._engaged = 0
        self._page_views = 0
        self._positive_duration = 0.0
        self._js_errors = 0
        self._pages: Counter[str] = Counter()
        self._entries: Counter[str] = Counter()
        self._exits: Counter[str] = Counter()
        self._referrers: Counter[str] = Counter()
        self._browsers: Counter[str] = Counter()
        self._os: Counter[str] = Counter()
        self._devices: Counter[str] = Counter()
        self._countries: Counter[str] = Counter()
        self._languages: Counter[str] = Counter()
        self._custom: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self._day_visitors: Counter[dt.date] = Counter()
        self._day_page_views: Counter[dt.date] = Counter()

    def _day(self, timestamp: float) -> dt.date:
        return self._clock.day(timestamp)

    def _count_visitor(self, visitor: str) -> None:
        if self._visitors_sorted:
            if visitor != self._last_visitor:
                self._distinct += 1
                self._last_visitor = visitor
        elif visitor not in self._visitor_set:
            self._visitor_set.add(visitor)
            self._distinct += 1

    def add_session(self, session: Record, events: Iterable[Record]) -> None:
        """One session of the period and its events of the period (in any order; equal
        ``created`` times keep the order given). ``events`` is read once."""
        tally = self.open_session(session)
        for event in events:
            self.add_event(tally, event)
        self.close_session(tally)

    def open_session(self, session: Record) -> SessionTally:
        """Start a session whose events will come through ``add_event``, possibly
        interleaved with other open sessions' events; ``close_session`` counts it. For
        readers that stream events in another order than sessions (``skopos report``)."""
        return SessionTally(session)

    def add_event(self, tally: SessionTally, event: Record) -> None:
        """One event of the period of an open session."""
        at = self._clock.seconds(event.get("created"))
        tally.add(event, at)
        self._count_event(event, at)
        event_type, name = event.get("type"), event.get("eventName")
        if event_type == "pageView" and event.get("path"):
            self._pages[str(event["path"])] += 1
        elif event_type == "custom" and name and name != EXIT_EVENT:
            self._custom[str(name)] += 1

    def close_session(self, tally: SessionTally) -> None:
        """Count an open session (with ``visitors_sorted``, in ``visitor`` order)."""
        session = tally.session
        self._sessions += 1
        self._count_visitor(str(session.get("visitor") or session.get("id") or ""))
        if session.get("isNewVisitor"):
            self._new += 1
        created = self._clock.seconds(session.get("created"))
        duration = self._clock.seconds(session.get("updated")) - created
        if duration > 0:
            self._positive_duration += duration
        self._day_visitors[self._day(created)] += 1
        self._referrers[referrer_label(session.get("referrer"))] += 1
        self._browsers[_label(session.get("browser"))] += 1
        self._os[_label(session.get("os"))] += 1
        self._devices[_label(session.get("device"))] += 1
        self._countries[_label(session.get("country"))] += 1
        self._languages[_label(session.get("language"))] += 1
        if tally.events == 0:
            return
        entry = tally.entry_path or session.get("entryPath") or ""
        if entry:
            self._entries[str(entry)] += 1
        exit_path = tally.exit_path or session.get("exitPath") or ""
        if exit_path:
            self._exits[str(exit_path)] += 1
        if tally.non_exit == 1:
            self._bounced += 1
        if tally.is_engaged:
            self._engaged += 1

    def _count_event(self, event: Record, at: float) -> None:
        if event.get("type") == "pageView":
            self._page_views += 1
            self._day_page_views[self._day(at)] += 1

    def add_other_event(self, event: Record) -> None:
        """An event of the period whose session is not one of the period's (it began
        earlier): it counts in page views, nothing else."""
        self._count_event(event, self._clock.seconds(event.get("created")))

    def add_js_error(self, record: Record) -> None:
        """One ``js_errors`` record created in the period."""
        raw = record.get("count")
        count = int(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool) else 0
        count = count or 1  # the dashboard's ``count || 1``
        self._js_errors += count
        message = record.get("errorMessage")
        if message:
            self._errors[str(message)] += count

    def _daily(self) -> list[DailyPoint]:
        days = set(self._day_visitors) | set(self._day_page_views)
        if self._start is not None and self._end is not None:
            day = self._start.astimezone(self._tz).date()
            last = self._end.astimezone(self._tz).date()
            while day <= last:
                days.add(day)
                day += dt.timedelta(days=1)
        return [
            DailyPoint(day, self._day_visitors[day], self._day_page_views[day])
            for day in sorted(days)
        ]

    def result(self) -> Metrics:
        """The numbers so far (the aggregator can keep going)."""
        sessions = self._sessions
        return Metrics(
            visitors=sessions,
            distinct_visitors=self._distinct,
            new_visitors=self._new,
            returning_visitors=sessions - self._new,
            page_views=self._page_views,
            bounced_sessions=self._bounced,
            engaged_sessions=self._engaged,
            avg_session_duration=self._positive_duration / sessions if sessions else 0.0,
            js_errors=self._js_errors,
            top_pages=_sorted_counts(self._pages),
            entry_pages=_sorted_counts(self._entries),
            exit_pages=_sorted_counts(self._exits),
            referrers=_sorted_counts(self._referrers),
            browsers=_sorted_counts(self._browsers),
            os=_sorted_counts(self._os),
            devices=_sorted_counts(self._devices),
            countries=_sorted_counts(self._countries),
            languages=_sorted_counts(self._languages),
            custom_events=_sorted_counts(self._custom),
            errors=_sorted_counts(self._errors),
            daily=self._daily(),
        )


def _in_period(record: Record, start: float, end: float) -> bool:
    return start <= parse_pb_date(record.get("created", "")) <= end


def dashboard_metrics(
    sessions: Iterable[Record],
    events: Iterable[Record],
    js_errors: Iterable[Record],
    *,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    tz: dt.tzinfo = dt.timezone.utc,
) -> Metrics:
    """The dashboard's numbers for records held in memory (tests, small sites).

    Records are PocketBase records as dicts (``sessions`` of one website, ``events`` with
    their ``session`` id, ``js_errors``). With ``start``/``end`` (aware datetimes) only
    records created in ``[start, end]`` count, as on the dashboard; without them, all do.

    >>> dashboard_metrics([], [], [{"errorMessage": "boom", "count": 3}]).errors
    [Count(key='boom', count=3)]
    """
    low = start.timestamp() if start is not None else -math.inf
    high = end.timestamp() if end is not None else math.inf
    period_sessions = [s for s in sessions if _in_period(s, low, high)]
    ids = {s.get("id") for s in period_sessions}
    by_session: dict[Any, list[Record]] = {}
    others: list[Record] = []
    for event in events:
        if not _in_period(event, low, high):
            continue
        if event.get("session") in ids:
            by_session.setdefault(event.get("session"), []).append(event)
        else:
            others.append(event)
    aggregator = MetricsAggregator(tz=tz, start=start, end=end)
    for session in period_sessions:
        aggregator.add_session(session, by_session.get(session.get("id"), []))
    for event in others:
        aggregator.add_other_event(event)
    for error in js_errors:
        if _in_period(error, low, high):
            aggregator.add_js_error(error)
    return aggregator.result()
