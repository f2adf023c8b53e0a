"""``skopos report``: read one site's period from PocketBase and compute the dashboard's numbers.

Reading is streamed and bounded, whatever the size of the period:

- **sessions** of the site created in the period, ``fields=`` limited to what the rules read,
  ordered by ``(visitor, id)`` and paged by key (``visitor > v || (visitor = v && id > i)``),
  never by a growing offset; so distinct visitors are counted by watching the visitor change.
- for every 100 of those sessions, their **events** created in the period, ordered by
  ``session, created, @rowid`` (insertion order among equal times, as the dashboard's query
  returns them); each open session keeps O(1) state (``metrics.SessionTally``).
- **page views of older sessions**: events of the period whose session began before it (the
  dashboard counts them in page views), paged by id.
- **JS errors** created in the period, paged by id.

Every request skips PocketBase's total count except one, for the progress bar. Memory is the
counters keyed by distinct paths, referrers... plus one page of records.

Example::

    with PocketBaseClient(url, email, password) as client:
        site = find_site(client, "TRACKING_ID")
        report = read_report(client, site, Period.last("7d"))
        print(report.metrics.visitors, report.to_json()["bounce_rate"])
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from skopos._admin.metrics import Metrics, MetricsAggregator, SessionTally
from skopos._exceptions import ConfigurationError
from skopos._pocketbase.client import MAX_PER_PAGE, PocketBaseClient
from skopos._pocketbase.filter import ANY_OF_CHUNK, any_of, pb_filter

__all__ = [
    "Period",
    "Report",
    "SiteInfo",
    "find_site",
    "local_timezone",
    "read_report",
    "resolve_timezone",
]

Progress = Callable[[int, int], None]
Record = dict[str, Any]

SESSION_FIELDS = (
    "id,visitor,created,updated,isNewVisitor,referrer,browser,os,device,country,language,"
    "entryPath,exitPath"
)
EVENT_FIELDS = "id,session,type,path,eventName,eventData,created"
_LAST = re.compile(r"(\d+)\s*([hdw])")
_UNITS = {"h": dt.timedelta(hours=1), "d": dt.timedelta(days=1), "w": dt.timedelta(weeks=1)}


def local_timezone() -> dt.tzinfo:
    """This machine's time zone: ``$TZ`` when it names one, else the system's offset now.

    Example::

        Period.last("7d", local_timezone())
    """
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        try:
            return resolve_timezone(name)
        except ConfigurationError:
            pass
    zone = dt.datetime.now().astimezone().tzinfo
    return zone if zone is not None else dt.timezone.utc


def resolve_timezone(name: str) -> dt.tzinfo:
    """An IANA time zone (``Europe/Paris``) or ``UTC``; ConfigurationError if unknown.

    >>> resolve_timezone("UTC")
    datetime.timezone.utc
    """
    if name.upper() in ("UTC", "Z"):
        return dt.timezone.utc
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigurationError(f"unknown time zone {name!r} (e.g. Europe/Paris, UTC)") from exc


def _zone_name(tz: dt.tzinfo) -> str:
    key = getattr(tz, "key", None)
    return str(key) if key else (dt.datetime.now(tz).tzname() or "local")


@dataclass(frozen=True)
class Period:
    """From ``start`` to ``end`` (aware datetimes, both included), shown in ``tz``.

    >>> p = Period.between("2026-01-01", "2026-01-07", dt.timezone.utc)
    >>> p.start.isoformat(), p.end.isoformat()
    ('2026-01-01T00:00:00+00:00', '2026-01-07T23:59:59.999000+00:00')
    """

    start: dt.datetime
    end: dt.datetime
    tz: dt.tzinfo

    @classmethod
    def last(
        cls, spec: str, tz: dt.tzinfo | None = None, *, now: dt.datetime | None = None
    ) -> Period:
        """The ``spec`` (``24h``, ``7d``, ``30d``, ``2w``) up to now, a rolling window."""
        match = _LAST.fullmatch(spec.strip().lower())
        if match is None or int(match.group(1)) == 0:
            raise ConfigurationError(f"--last must look like 24h, 7d or 30d, got {spec!r}")
        zone = tz or local_timezone()
        end = (now or dt.datetime.now(dt.timezone.utc)).astimezone(zone)
        return cls(end - int(match.group(1)) * _UNITS[match.group(2)], end, zone)

    @classmethod
    def between(cls, first: str, last: str | None, tz: dt.tzinfo | None = None) -> Period:
        """Whole local days from ``first`` to ``last`` (``YYYY-MM-DD``; ``last`` default today)."""
        zone = tz or local_timezone()
        start_day = _parse_day(first, "--from")
        end_day = _parse_day(last, "--to") if last else dt.datetime.now(zone).date()
        if end_day < start_day:
            raise ConfigurationError(f"--to {end_day} is before --from {start_day}")
        start = dt.datetime.combine(start_day, dt.time(0), zone)
        end = dt.datetime.combine(end_day, dt.time(23, 59, 59, 999000), zone)
        return cls(start, end, zone)

    @property
    def timezone_name(self) -> str:
        """The zone's IANA name when it has one (``Europe/Paris``), else its abbreviation."""
        return _zone_name(self.tz)


def _parse_day(text: str, option: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError as exc:
        raise ConfigurationError(f"{option} must be a date like 2026-01-31, got {text!r}") from exc


@dataclass(frozen=True)
class SiteInfo:
    """The website a report is about.

    >>> SiteInfo("rec1", "Blog", "blog.example", "k3x9").tracking_id
    'k3x9'
    """

    id: str
    name: str
    domain: str
    tracking_id: str
    archived: bool = False


def find_site(client: PocketBaseClient, tracking_id: str) -> SiteInfo:
    """The website with this tracking id; ConfigurationError naming it when there is none.

    Example::

        site = find_site(client, "k3x9q2...")  # SiteInfo(id=..., name=..., domain=...)
    """
    record = client.first_record("websites", pb_filter("trackingId = {:t}", t=tracking_id))
    if record is None:
        raise ConfigurationError(
            f"no website with tracking id {tracking_id!r} in PocketBase at {client.url}"
        )
    return SiteInfo(
        id=record["id"],
        name=record.get("name") or "",
        domain=record.get("domain") or "",
        tracking_id=tracking_id,
        archived=bool(record.get("isArchived")),
    )


@dataclass(frozen=True)
class Report:
    """A site's numbers for a period; ``to_json`` is the stable ``--json`` interface.

    Example::

        report = read_report(client, site, Period.last("24h"))
        json.dumps(report.to_json(limit=10))
    """

    site: SiteInfo
    period: Period
    metrics: Metrics
    generated_at: dt.datetime

    def to_json(self, *, limit: int | None = None) -> dict[str, Any]:
        """``site``, ``from``, ``to``... then every number of ``Metrics.to_json``."""
        return {
            "site": self.site.tracking_id,
            "site_name": self.site.name,
            "domain": self.site.domain,
            "from": self.period.start.isoformat(timespec="milliseconds"),
            "to": self.period.end.isoformat(timespec="milliseconds"),
            "timezone": self.period.timezone_name,
            "generated_at": self.generated_at.isoformat(timespec="seconds"),
            **self.metrics.to_json(limit=limit),
        }


def read_report(
    client: PocketBaseClient,
    site: SiteInfo,
    period: Period,
    *,
    progress: Progress | None = None,
    page_size: int = MAX_PER_PAGE,
) -> Report:
    """Stream the period's records through ``MetricsAggregator`` (see the module docs).

    ``progress(done, total)`` is called as sessions are read.

    Example::

        report = read_report(client, find_site(client, "k3x9"), Period.last("30d"))
        report.metrics.page_views
    """
    generated_at = dt.datetime.now(period.tz)
    aggregator = MetricsAggregator(
        tz=period.tz, start=period.start, end=period.end, visitors_sorted=True
    )
    in_period = pb_filter(
        "created >= {:start} && created <= {:end}", start=period.start, end=period.end
    )
    sessions_filter = pb_filter("website = {:site}", site=site.id) + " && " + in_period
    total = client.list_records(
        "sessions", filter=sessions_filter, per_page=1, fields="id", with_total=True
    ).total_items
    done = 0
    if progress is not None:
        progress(0, total)
    for page in _session_pages(client, sessions_filter, page_size):
        for start in range(0, len(page), ANY_OF_CHUNK):
            _read_chunk(client, aggregator, page[start : start + ANY_OF_CHUNK], in_period)
        done += len(page)
        if progress is not None:
            progress(done, max(total, done))

    older = (
        pb_filter(
            "session.website = {:site} && session.created < {:start}",
            site=site.id,
            start=period.start,
        )
        + " && type = 'pageView' && "
        + in_period
    )
    for event in _by_id(client, "events", older, "id,type,created", page_size):
        aggregator.add_other_event(event)
    errors = pb_filter("website = {:site}", site=site.id) + " && " + in_period
    for error in _by_id(client, "js_errors", errors, "id,errorMessage,count,created", page_size):
        aggregator.add_js_error(error)
    return Report(site, period, aggregator.result(), generated_at)


def _session_pages(
    client: PocketBaseClient, base_filter: str, page_size: int
) -> Iterator[list[Record]]:
    """Pages of sessions in ``(visitor, id)`` order, each page found by key, not offset."""
    after: tuple[str, str] | None = None
    while True:
        query = base_filter
        if after is not None:
            query += " && " + pb_filter(
                "(visitor > {:v} || (visitor = {:v} && id > {:i}))", v=after[0], i=after[1]
            )
        items = client.list_records(
            "sessions", filter=query, sort="visitor,id", per_page=page_size, fields=SESSION_FIELDS
        ).items
        if not items:
            return
        yield items
        if len(items) < page_size:
            return
        after = (items[-1].get("visitor") or "", items[-1]["id"])


def _read_chunk(
    client: PocketBaseClient,
    aggregator: MetricsAggregator,
    sessions: list[Record],
    in_period: str,
) -> None:
    """Feed a few sessions and their events; close them in the order given (visitor order)."""
    tallies: dict[str, SessionTally] = {s["id"]: aggregator.open_session(s) for s in sessions}
    [session_filter] = any_of("session", list(tallies), chunk=len(tallies))
    query = f"({session_filter}) && {in_period}"
    page = 1
    while True:
        items = client.list_records(
            "events",
            filter=query,
            sort="session,created,@rowid",
            page=page,
            per_page=MAX_PER_PAGE,
            fields=EVENT_FIELDS,
        ).items
        for event in items:
            tally = tallies.get(event.get("session", ""))
            if tally is not None:
                aggregator.add_event(tally, event)
        # Offsets stay small: they only ever page through the events of these few sessions.
        if len(items) < MAX_PER_PAGE:
            break
        page += 1
    for tally in tallies.values():
        aggregator.close_session(tally)


def _by_id(
    client: PocketBaseClient, collection: str, base_filter: str, fields: str, page_size: int
) -> Iterator[Record]:
    """Every matching record, in id order, each page found by key (``id > last``)."""
    last = ""
    while True:
        query = base_filter + (" && " + pb_filter("id > {:last}", last=last) if last else "")
        items = client.list_records(
            collection, filter=query, sort="id", per_page=page_size, fields=fields
        ).items
        yield from items
        if len(items) < page_size:
            return
        last = items[-1]["id"]
