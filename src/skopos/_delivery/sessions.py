"""Activities → visitors, sessions and events records (the batch one write sends).

A session lasts while a visitor's activities come within ``session_timeout`` of each
other, judged by when the visitor was active, never by when a write landed: across
processes, restarts, outages and spool replays. An activity belongs to the visitor's session
whose span, from its first to its last activity, it falls within a timeout of; activities
may arrive late and out of order (another process's backlog, a replayed spool). Two steps
per batch:

1. ``resolve`` (I/O, may raise): bulk-read from PocketBase what the caches do not know:
   which visitors exist, and their sessions active around the activities' times
   (``firstActivity`` and ``lastActivity``, fields ``skopos setup`` adds; sessions written
   without them fall back to ``created`` and ``updated``).
2. ``assign`` (pure): walk the activities in order, continue or open sessions, and build
   the batch's requests: new visitors, identities, new sessions, events, and one touch per
   continuing session (its ``exitPath`` and ``lastActivity``), after its events.

Timestamps the dashboard reads: PocketBase stamps ``created`` and ``updated`` at commit, and
the dashboard's session duration is ``updated - created``. Every batch that carries events of
a session also carries that session's create or touch, so ``updated`` moves with the batch
that holds the session's latest events, never later. A session's create and a touch of it
never share a batch, and batches commit one after another, so ``updated`` is never before
``created``.

Ids make concurrent writers agree: a visitor's record id derives from its visitor id, and a
session's from the visitor and the ``session_timeout``-long window its first activity falls
in. Two sessions of one visitor never start in the same window (more than a timeout of
silence lies between them), so processes that open the same session each on their own
derive the same id and upsert one record instead of splitting it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from skopos._delivery.writes import PendingWrite
from skopos._lru import LruCache
from skopos._pocketbase.client import BatchRequest, PocketBaseClient
from skopos._pocketbase.dates import parse_pb_date, pb_date
from skopos._pocketbase.filter import any_of, pb_filter
from skopos._tracking.activity import Activity
from skopos._tracking.campaigns import campaign
from skopos._tracking.identity import derive_record_id

__all__ = ["LiveSession", "Sessionizer", "session_id"]

logger = logging.getLogger("skopos")

# What a session lookup reads: no more than deciding membership needs.
_LOOKUP_FIELDS = "id,visitor,firstActivity,lastActivity,created,updated,exitPath"
# A cached session's memory besides its exit path: the object, its id, two floats, the
# visitor key and the LRU's own entry (measured: ~420 bytes).
_SESSION_OVERHEAD = 448


def _session_bytes(session: LiveSession) -> int:
    """What one cached session holds (the session cache's byte budget counts this)."""
    return _SESSION_OVERHEAD + sys.getsizeof(session.exit_path)


def session_id(visitor_record_id: str, started_at: float, timeout: float) -> str:
    """The record id of the visitor's session whose first activity is at ``started_at``.

    >>> session_id("v1", 10.0, 1800.0) == session_id("v1", 1799.0, 1800.0)  # one window
    True
    >>> session_id("v1", 10.0, 1800.0) == session_id("v1", 1810.5, 1800.0)
    False
    """
    return derive_record_id("session", visitor_record_id, str(int(started_at // timeout)))


@dataclass(slots=True)
class LiveSession:
    """What the cache keeps of a visitor's session."""

    id: str
    first_activity: float  # epoch seconds of the visitor's first activity in it
    last_activity: float  # and of the latest
    exit_path: str

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> LiveSession:
        """The session as another process (or an earlier run) wrote it."""
        first = parse_pb_date(record.get("firstActivity", "")) or parse_pb_date(
            record.get("created", "")
        )
        last = parse_pb_date(record.get("lastActivity", "")) or parse_pb_date(
            record.get("updated", "")
        )
        return cls(record["id"], min(first, last), last, record.get("exitPath", ""))

    def holds(self, at: float, timeout: float) -> bool:
        """Whether an activity at ``at`` belongs here: within ``timeout`` of its span."""
        return self.first_activity - timeout <= at <= self.last_activity + timeout

    def touch(self) -> BatchRequest:
        """The update that moves the session's exit path, last activity and ``updated``."""
        body = {"exitPath": self.exit_path, "lastActivity": pb_date(self.last_activity)}
        return BatchRequest.update("sessions", self.id, body)


@dataclass
class _Lookups:
    existing_visitors: set[str] = field(default_factory=set)
    sessions: dict[str, list[LiveSession]] = field(default_factory=dict)  # by visitor


@dataclass(slots=True)
class _Opened:
    """A session opened in this batch: created with its state as the batch leaves it."""

    live: LiveSession
    first: Activity
    new_visitor: bool


class Sessionizer:
    """Keeps visitor and session caches (LRU-bounded) and builds each batch's writes."""

    def __init__(
        self,
        client: PocketBaseClient,
        *,
        session_timeout: float,
        visitor_cache_size: int = 100_000,
        session_cache_size: int = 50_000,
        session_cache_bytes: int = 32 << 20,
    ) -> None:
        self._client = client
        self._timeout = session_timeout
        # Visitor ids are 15 characters: the count bounds the bytes (~160 each, ~16 MB).
        self._known_visitors: LruCache[str, bool] = LruCache(visitor_cache_size)
        # Sessions hold an exit path of up to 2,048 bytes: bounded by bytes too (~22 MB for
        # 50,000 sessions with short paths; hostile paths get fewer sessions, never more
        # memory).
        self._sessions: LruCache[str, LiveSession] = LruCache(
            session_cache_size, max_bytes=session_cache_bytes, weigh=_session_bytes
        )
        self._lookups = _Lookups()
        self._activity_fields: bool | None = None
        # Activities the last ``assign`` could not sessionize (a bug): the worker drops them.
        self.rejected: list[Activity] = []

    # -- step 1: read what the caches miss ------------------------------------------

    def resolve(self, activities: Sequence[Activity]) -> None:
        """Bulk-read unknown visitors and the live sessions needed to sessionize."""
        lookups = _Lookups()
        identified = [a for a in activities if not a.anonymous]
        visitors = {v for a in identified for v in _visitor_ids(a)}
        unknown = [v for v in visitors if v not in self._known_visitors]
        lookups.existing_visitors = self._existing(unknown)

        # Visitors with an activity their cached session does not hold: another process may
        # have a session for it. The earliest such activity bounds the lookup.
        earliest: dict[str, float] = {}
        for activity in identified:
            for visitor in _visitor_ids(activity):
                cached = self._sessions.get(visitor)
                if activity.type == "identify" or self._holds(cached, activity):
                    continue
                if visitor in self._known_visitors or visitor in lookups.existing_visitors:
                    earliest[visitor] = min(earliest.get(visitor, activity.at), activity.at)
        if earliest:
            cutoff = min(earliest.values()) - self._timeout
            lookups.sessions = self._recent_sessions(list(earliest), cutoff)
        self._lookups = lookups

    def _holds(self, session: LiveSession | None, activity: Activity) -> bool:
        return session is not None and session.holds(activity.at, self._timeout)

    def _existing(self, record_ids: list[str]) -> set[str]:
        found: set[str] = set()
        for query in any_of("id", record_ids):
            page = self._client.list_records("visitors", filter=query, fields="id", per_page=1000)
            found.update(record["id"] for record in page.items)
        return found

    def _has_activity_fields(self) -> bool:
        """Whether ``sessions`` has the fields ``skopos setup`` adds (asked once). Without
        them, filtering on them fails; sessions are then judged by write times (the old way)
        until ``skopos setup`` runs and the process restarts."""
        if self._activity_fields is None:
            collection = self._client.request("GET", "/api/collections/sessions")
            names = {field.get("name") for field in collection.get("fields") or ()}
            self._activity_fields = {"firstActivity", "lastActivity"} <= names
            if not self._activity_fields:
                logger.error(
                    "skopos: the sessions collection lacks firstActivity/lastActivity; run"
                    " `skopos setup` (until then sessions are judged by when writes landed)"
                )
        return self._activity_fields

    def _recent_sessions(self, visitors: list[str], cutoff: float) -> dict[str, list[LiveSession]]:
        """The visitors' sessions active since ``cutoff``, by visitor."""
        if self._has_activity_fields():
            expression = (
                "(lastActivity >= {:cutoff} || (lastActivity = '' && updated >= {:cutoff}))"
            )
        else:
            expression = "updated >= {:cutoff}"
        since = pb_filter(expression, cutoff=pb_date(cutoff))
        found: dict[str, list[LiveSession]] = {}
        for visitor_filter in any_of("visitor", visitors):
            records = self._client.iter_records(
                "sessions", filter=f"({visitor_filter}) && {since}", fields=_LOOKUP_FIELDS
            )
            for record in records:
                found.setdefault(record["visitor"], []).append(LiveSession.from_record(record))
        return found

    # -- step 2: assign sessions, build the writes ---------------------------------------

    def assign(self, activities: Sequence[Activity]) -> list[PendingWrite]:
        """Sessionize ``activities`` in order; return the writes, dependencies first.

        Updates the caches as if the writes succeed; ``forget`` undoes that for a
        visitor whose writes were dropped.
        """
        lookups, self._lookups = self._lookups, _Lookups()
        visitors: dict[str, PendingWrite] = {}
        identities: list[PendingWrite] = []
        events: list[PendingWrite] = []
        opened: dict[str, _Opened] = {}
        touched: dict[str, tuple[str, LiveSession]] = {}  # session id → (visitor, session)
        anonymous: list[PendingWrite] = []
        new_visitors: set[str] = set()

        self.rejected = []
        for activity in activities:
            try:
                if activity.anonymous:
                    anonymous.extend(_anonymous_writes(activity))
                    continue
                self._continue_over_midnight(activity, lookups)
                self._assign_one(
                    activity, lookups, visitors, identities, events, opened, touched, new_visitors
                )
            except Exception:  # one bad activity must not hold back the batch: it is dropped
                logger.exception("skopos: internal error sessionizing an activity (dropped)")
                self.rejected.append(activity)

        creates = [_create(entry) for entry in opened.values()]
        touches = [
            PendingWrite(session.touch(), "sessions", vid, parent=True)
            for vid, session in touched.values()
        ]
        # Touches last: ``updated`` is stamped after the session's events are created.
        return [*visitors.values(), *identities, *creates, *events, *touches, *anonymous]

    def _continue_over_midnight(self, activity: Activity, lookups: _Lookups) -> None:
        """Daily ids: early in a day, an activity whose visitor (by yesterday's id) has a
        session that holds it goes on in that session, under yesterday's visitor."""
        previous = activity.previous_visitor_record_id
        if previous is None or activity.previous_visitor_id is None:
            return
        looked_up = lookups.sessions.get(previous, ())
        if self._session_holding(activity, self._sessions.get(previous), looked_up) is None:
            return
        activity.visitor_record_id = previous
        activity.visitor_id = activity.previous_visitor_id

    def _assign_one(
        self,
        activity: Activity,
        lookups: _Lookups,
        visitors: dict[str, PendingWrite],
        identities: list[PendingWrite],
        events: list[PendingWrite],
        opened: dict[str, _Opened],
        touched: dict[str, tuple[str, LiveSession]],
        new_visitors: set[str],
    ) -> None:
        """One activity of ``assign``, into the batch's writes."""
        vid = activity.visitor_record_id
        known = vid in self._known_visitors or vid in lookups.existing_visitors
        if not known and vid not in visitors:
            new_visitors.add(vid)
            visitors[vid] = PendingWrite(
                BatchRequest.create("visitors", _visitor_body(activity)),
                "visitors",
                vid,
                parent=True,
            )
        self._known_visitors.put(vid, True)
        if activity.type == "identify":
            body = {**_visitor_body(activity), **(activity.data or {})}
            upsert = BatchRequest.upsert("visitors", body)
            identities.append(PendingWrite.for_activity(upsert, "visitors", vid, activity))
            return

        cached = self._sessions.get(vid)
        session = self._session_holding(activity, cached, lookups.sessions.get(vid, ()))
        if session is None:
            at = activity.at
            session = LiveSession(session_id(vid, at, self._timeout), at, at, activity.path)
            first_session = vid in new_visitors and cached is None
            opened[session.id] = _Opened(session, activity, first_session)
            lookups.sessions.setdefault(vid, []).append(session)
        elif activity.at >= session.last_activity:
            session.last_activity = activity.at
            if activity.type == "pageView":
                session.exit_path = activity.path
            if session.id not in opened:
                touched[session.id] = (vid, session)
        else:
            # A late activity (another process's backlog, a replay) leaves the session's
            # end, and so its ``updated``, where it is: touching it would stretch the
            # duration the dashboard shows to the time of this write.
            session.first_activity = min(session.first_activity, activity.at)
        if cached is None or session.last_activity >= cached.last_activity:
            self._sessions.put(vid, session)  # the cache keeps the visitor's latest
        activity.session_id = session.id

        if activity.type in ("pageView", "custom", "click"):
            create = BatchRequest.create("events", _event_body(activity, session.id))
            events.append(PendingWrite.for_activity(create, "events", vid, activity))

    def _session_holding(
        self, activity: Activity, cached: LiveSession | None, looked_up: Sequence[LiveSession]
    ) -> LiveSession | None:
        """The visitor's session ``activity`` belongs to (the latest, if several could)."""
        best = cached if self._holds(cached, activity) else None
        for session in looked_up:
            if session.holds(activity.at, self._timeout) and (
                best is None or session.last_activity > best.last_activity
            ):
                best = session
        if best is not None and cached is not None and best.id == cached.id and best is not cached:
            # The same session read back: keep one object, with what both know.
            cached.first_activity = min(cached.first_activity, best.first_activity)
            cached.last_activity = max(cached.last_activity, best.last_activity)
            best = cached
        return best

    def forget(self, visitor_record_id: str) -> None:
        """Drop cached knowledge of a visitor whose writes did not land."""
        self._known_visitors.discard(visitor_record_id)
        self._sessions.discard(visitor_record_id)


def _create(opened: _Opened) -> PendingWrite:
    """Create a new session; if another writer created it first (first writer wins: its
    entry path and referrer stand), touch it instead."""
    live, first = opened.live, opened.first
    body: dict[str, Any] = {
        **_session_fields(first),
        "id": live.id,
        "visitor": first.visitor_record_id,
        "exitPath": live.exit_path,
        "firstActivity": pb_date(live.first_activity),
        "lastActivity": pb_date(live.last_activity),
        "isNewVisitor": opened.new_visitor,
    }
    if first.ip_address:
        body["ipAddress"] = first.ip_address
    return PendingWrite(
        BatchRequest.create("sessions", body),
        "sessions",
        first.visitor_record_id,
        parent=True,
        if_exists=live.touch(),
    )


def _session_fields(first: Activity) -> dict[str, Any]:
    """What a session's first activity says about it: where it came from, on what."""
    client = first.client
    fields: dict[str, Any] = {
        "website": first.site.record_id,
        "entryPath": first.path,
        "referrer": first.referrer or "",  # a traffic source already (Pipeline._finish)
        "browser": client.browser if client else "",
        "os": client.os if client else "",
        "device": client.device if client else "",
        "screenWidth": str(first.screen_width) if first.screen_width is not None else "",
        "screenHeight": str(first.screen_height) if first.screen_height is not None else "",
        "language": first.language or "",
        **campaign(first.url, first.referrer, first.site.domain).fields(),
    }
    if first.country:
        fields["country"] = first.country
    if first.region:
        fields["state"] = first.region
    # What the official client script reports (the 0.54 schema's fields); our own script
    # does not send them.
    for name, value in (
        ("devicePixelRatio", first.device_pixel_ratio),
        ("connectionType", first.connection_type),
        ("scriptVersion", first.script_version),
    ):
        if value:
            fields[name] = value
    return fields


def _visitor_ids(activity: Activity) -> tuple[str, ...]:
    """The visitor record ids an activity may belong to (yesterday's too, early in a day)."""
    previous = activity.previous_visitor_record_id
    return (
        (activity.visitor_record_id,)
        if previous is None
        else (activity.visitor_record_id, previous)
    )


def _anonymous_writes(activity: Activity) -> list[PendingWrite]:
    """A privacy signal: the event in a session of its own, with no visitor and no IP."""
    if activity.type not in ("pageView", "custom", "click"):
        return []  # a JS error is counted in its group, linked to no session
    session = derive_record_id("anonymous session", activity.record_id)
    activity.session_id = session
    body = {
        **_session_fields(activity),
        "id": session,
        "visitor": "",
        "exitPath": activity.path,
        "firstActivity": pb_date(activity.at),
        "lastActivity": pb_date(activity.at),
        "isNewVisitor": False,
    }
    create = PendingWrite(
        BatchRequest.create("sessions", body), "sessions", session, parent=True, if_exists=None
    )
    event = BatchRequest.create("events", _event_body(activity, session))
    return [create, PendingWrite.for_activity(event, "events", session, activity)]


def _visitor_body(activity: Activity) -> dict[str, Any]:
    return {
        "id": activity.visitor_record_id,
        "website": activity.site.record_id,
        "visitorId": activity.visitor_id,
    }


def _event_body(activity: Activity, session_id: str) -> dict[str, Any]:
    return {
        "id": activity.record_id,
        "session": session_id,
        "type": activity.type,
        "path": activity.path,
        "eventName": activity.name or "",
        "eventData": activity.data,
    }
