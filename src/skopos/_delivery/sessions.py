"""Activities → visitors, sessions and events records (the batch one flush writes).

A session lasts while a visitor's activities arrive within ``session_timeout``
of each other, across processes and restarts. Two steps per batch:

1. ``resolve`` (I/O, may raise): bulk-read from PocketBase what the caches do
   not know: which visitors already exist, each visitor's latest session.
2. ``assign`` (pure): walk the activities in order, continue or open sessions,
   and build the batch requests.

Ids make concurrent writers agree: a visitor's record id derives from its
visitor id, and a new session's id from the visitor and the session before it
(``""`` for a first session). Two processes opening the next session of the
same visitor therefore upsert the same record instead of splitting it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from skopos._delivery.writes import PendingWrite
from skopos._lru import LruCache
from skopos._pocketbase.client import BatchRequest, PocketBaseClient
from skopos._pocketbase.dates import parse_pb_date, pb_date
from skopos._pocketbase.filter import any_of, pb_filter
from skopos._tracking.activity import Activity
from skopos._tracking.hosts import host_matches_domain
from skopos._tracking.identity import derive_record_id

__all__ = ["SessionState", "Sessionizer"]

_TOUCH_INTERVAL = 30.0  # seconds


@dataclass(slots=True)
class SessionState:
    """What a flush needs to know about a visitor's current session."""

    id: str
    website: str
    visitor: str
    last_activity: float
    entry_path: str
    exit_path: str
    referrer: str = ""
    browser: str = ""
    os: str = ""
    device: str = ""
    screen_width: str = ""
    screen_height: str = ""
    language: str = ""
    ip_address: str = ""
    is_new_visitor: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    # ``last_activity`` as of the last write of this session (what PocketBase's ``updated``
    # says, roughly): touches are deferred until it lags by ``touch_interval``.
    written_activity: float = 0.0

    def record(self) -> dict[str, Any]:
        """The full ``sessions`` record, as created."""
        body: dict[str, Any] = {
            **self.extra,
            "id": self.id,
            "website": self.website,
            "visitor": self.visitor,
            "entryPath": self.entry_path,
            "exitPath": self.exit_path,
            "referrer": self.referrer,
            "browser": self.browser,
            "os": self.os,
            "device": self.device,
            "screenWidth": self.screen_width,
            "screenHeight": self.screen_height,
            "language": self.language,
            "isNewVisitor": self.is_new_visitor,
        }
        if self.ip_address:
            body["ipAddress"] = self.ip_address
        return body

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> SessionState:
        """Rebuild the state of a session another process (or run) wrote."""
        kept = {k: record[k] for k in ("country", "state") if record.get(k)}
        return cls(
            id=record["id"],
            website=record.get("website", ""),
            visitor=record.get("visitor", ""),
            last_activity=parse_pb_date(record.get("updated", "")),
            entry_path=record.get("entryPath", ""),
            exit_path=record.get("exitPath", ""),
            referrer=record.get("referrer", ""),
            browser=record.get("browser", ""),
            os=record.get("os", ""),
            device=record.get("device", ""),
            screen_width=record.get("screenWidth", ""),
            screen_height=record.get("screenHeight", ""),
            language=record.get("language", ""),
            ip_address=record.get("ipAddress", ""),
            is_new_visitor=bool(record.get("isNewVisitor")),
            extra=kept,
            written_activity=parse_pb_date(record.get("updated", "")),
        )


@dataclass
class _Lookups:
    existing_visitors: set[str] = field(default_factory=set)
    latest_sessions: dict[str, SessionState] = field(default_factory=dict)


class Sessionizer:
    """Keeps visitor and session caches (LRU-bounded) and builds each flush's writes."""

    def __init__(
        self,
        client: PocketBaseClient,
        *,
        session_timeout: float,
        visitor_cache_size: int = 100_000,
        session_cache_size: int = 50_000,
    ) -> None:
        self._client = client
        self._timeout = session_timeout
        # A continuing session's exitPath (and so its ``updated``, the liveness other
        # processes read) is written at most this often, not with every event: a PATCH
        # costs PocketBase about as much as a create. Far below the timeout, so another
        # process's decision to continue it is only affected within this much of it.
        self.touch_interval = min(_TOUCH_INTERVAL, session_timeout / 20)
        self._deferred: dict[str, SessionState] = {}  # session id → state, oldest first
        self._max_deferred = session_cache_size
        self._known_visitors: LruCache[str, bool] = LruCache(visitor_cache_size)
        self._sessions: LruCache[str, SessionState] = LruCache(session_cache_size)
        self._lookups = _Lookups()

    # -- step 1: read what the caches miss ------------------------------------------

    def resolve(self, activities: Sequence[Activity]) -> None:
        """Bulk-read unknown visitors and the latest sessions needed to sessionize."""
        lookups = _Lookups()
        visitors = {a.visitor_record_id for a in activities}
        unknown = [v for v in visitors if v not in self._known_visitors]
        lookups.existing_visitors = self._existing(unknown)

        first_seen: dict[str, float] = {}
        for activity in activities:
            if activity.type != "identify":
                first_seen.setdefault(activity.visitor_record_id, activity.at)
        need = [
            visitor
            for visitor, at in first_seen.items()
            if (visitor in self._known_visitors or visitor in lookups.existing_visitors)
            and not self._live(self._sessions.get(visitor), at)
        ]
        if need:
            cutoff = min(first_seen[v] for v in need) - self._timeout
            lookups.latest_sessions = self._recent_sessions(need, cutoff)
            for visitor in need:
                if visitor not in lookups.latest_sessions:
                    latest = self._latest_session(visitor)
                    if latest is not None:
                        lookups.latest_sessions[visitor] = latest
        self._lookups = lookups

    def _live(self, state: SessionState | None, at: float) -> bool:
        return state is not None and at - state.last_activity <= self._timeout

    def _existing(self, record_ids: list[str]) -> set[str]:
        found: set[str] = set()
        for query in any_of("id", record_ids):
            page = self._client.list_records("visitors", filter=query, fields="id", per_page=1000)
            found.update(record["id"] for record in page.items)
        return found

    def _recent_sessions(self, visitors: list[str], cutoff: float) -> dict[str, SessionState]:
        latest: dict[str, SessionState] = {}
        for visitor_filter in any_of("visitor", visitors):
            query = f"({visitor_filter}) && " + pb_filter(
                "updated >= {:cutoff}", cutoff=pb_date(cutoff)
            )
            for record in self._client.iter_records("sessions", filter=query, sort="-updated"):
                latest.setdefault(record["visitor"], SessionState.from_record(record))
        return latest

    def _latest_session(self, visitor: str) -> SessionState | None:
        record = self._client.first_record(
            "sessions", pb_filter("visitor = {:v}", v=visitor), sort="-created,-id"
        )
        return SessionState.from_record(record) if record is not None else None

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
        dirty: dict[str, SessionState] = {}
        opened: set[str] = set()
        new_visitors: set[str] = set()

        for activity in activities:
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
                continue

            # A lookup is fresher than the cache: another process may have moved on.
            state = lookups.latest_sessions.pop(vid, None) or self._sessions.get(vid)
            if state is None or not self._live(state, activity.at):
                previous = state.id if state is not None else ""
                state = self._open(activity, previous, vid in new_visitors and state is None)
                opened.add(state.id)
            else:
                state.last_activity = max(state.last_activity, activity.at)
                if activity.type == "pageView":
                    state.exit_path = activity.path
            self._sessions.put(vid, state)
            dirty[state.id] = state
            activity.session_id = state.id

            if activity.type in ("pageView", "custom"):
                create = BatchRequest.create("events", _event_body(activity, state.id))
                events.append(PendingWrite.for_activity(create, "events", vid, activity))

        sessions: list[PendingWrite] = []
        for state in dirty.values():
            if state.id in opened:
                self._deferred.pop(state.id, None)
                sessions.append(self._session_write(state, opened=True))
            elif state.last_activity - state.written_activity >= self.touch_interval:
                self._deferred.pop(state.id, None)
                sessions.append(self._session_write(state, opened=False))
            else:
                self._deferred.setdefault(state.id, state)
        sessions += self._overflowing_touches()
        return [*visitors.values(), *identities, *sessions, *events]

    @property
    def has_deferred(self) -> bool:
        """Continuing sessions whose exitPath is not written yet."""
        return bool(self._deferred)

    def deferred_touches(self, now: float, *, everything: bool = False) -> list[PendingWrite]:
        """The deferred touches that are due at ``now`` (epoch seconds), or all of them."""
        if not self._deferred:
            return []
        if not everything and now - next(iter(self._deferred.values())).written_activity < (
            self.touch_interval
        ):
            return []  # the oldest is not due: nothing is (called every worker round)
        due: list[PendingWrite] = []
        for session_id, state in list(self._deferred.items()):
            if not everything and now - state.written_activity < self.touch_interval:
                break  # oldest first: the rest are younger
            del self._deferred[session_id]
            due.append(self._session_write(state, opened=False))
        return due

    def _overflowing_touches(self) -> list[PendingWrite]:
        touches: list[PendingWrite] = []
        while len(self._deferred) > self._max_deferred:
            state = self._deferred.pop(next(iter(self._deferred)))
            touches.append(self._session_write(state, opened=False))
        return touches

    @staticmethod
    def _session_write(state: SessionState, *, opened: bool) -> PendingWrite:
        """Create a new session (first writer wins: a concurrent creator's entry
        path and referrer stand); only move ``exitPath`` of an existing one, which
        also bumps ``updated``, the liveness every process reads."""
        state.written_activity = state.last_activity
        touch = BatchRequest.update("sessions", state.id, {"exitPath": state.exit_path})
        if not opened:
            return PendingWrite(touch, "sessions", state.visitor, parent=True)
        create = BatchRequest.create("sessions", state.record())
        return PendingWrite(create, "sessions", state.visitor, parent=True, if_exists=touch)

    def _open(self, activity: Activity, previous: str, new_visitor: bool) -> SessionState:
        client = activity.client
        referrer = _traffic_source(activity.referrer, activity.site.domain)
        return SessionState(
            id=derive_record_id("session", activity.visitor_record_id, previous),
            website=activity.site.record_id,
            visitor=activity.visitor_record_id,
            last_activity=activity.at,
            entry_path=activity.path,
            exit_path=activity.path,
            referrer=referrer,
            browser=client.browser if client else "",
            os=client.os if client else "",
            device=client.device if client else "",
            screen_width=str(activity.screen_width) if activity.screen_width is not None else "",
            screen_height=str(activity.screen_height) if activity.screen_height is not None else "",
            language=activity.language or "",
            ip_address=activity.ip_address or "",
            is_new_visitor=new_visitor,
            extra={"country": activity.country} if activity.country else {},
            written_activity=activity.at,
        )

    def forget(self, visitor_record_id: str) -> None:
        """Drop cached knowledge of a visitor whose writes did not land."""
        self._known_visitors.discard(visitor_record_id)
        self._sessions.discard(visitor_record_id)
        for session_id, state in list(self._deferred.items()):
            if state.visitor == visitor_record_id:
                del self._deferred[session_id]


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


def _traffic_source(referrer: str | None, site_domain: str | None) -> str:
    """The referrer without query or fragment (they may carry personal data);
    empty for the site's own pages, which are navigation, not a source."""
    if not referrer:
        return ""
    parts = urlsplit(referrer)
    host = parts.hostname or ""
    if site_domain and host_matches_domain(host, site_domain):
        return ""
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
