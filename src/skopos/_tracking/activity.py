"""The worker's units of work: a queued tracking call, and the activity it becomes.

``TrackCall`` is built on the request thread (primitives only); ``Activity``
is what survives validation, filtering and enrichment in the worker. A call
becomes one activity, except a ``/collect`` message, which becomes as many as
it carries events or errors (sharing one ``CallParts``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from skopos._stats import CallParts
from skopos._tracking.identity import random_record_id
from skopos._tracking.site_rules import SiteRules
from skopos._tracking.snapshot import CapturedRequest
from skopos._tracking.user_agent import ClientInfo

__all__ = ["Activity", "ActivityType", "CallKind", "JournalRef", "TrackCall"]

CallKind = Literal["api", "server", "identify", "collect"]
ActivityType = Literal["pageView", "custom", "click", "jsError", "identify"]
# Where the spool journaled an activity: (segment number, sequence number in the segment).
JournalRef = tuple[int, int]


class TrackCall:
    """One accepted tracking call, as queued by the request thread."""

    __slots__ = ("at", "data", "kind", "name", "payload", "request", "site_id")

    def __init__(
        self,
        kind: CallKind,
        site_id: str,
        request: CapturedRequest | None,
        payload: object = None,
        name: object = None,
        data: object = None,
    ) -> None:
        self.at = time.time()
        self.kind = kind
        self.site_id = site_id
        self.request = request  # reduced to a RequestSnapshot by the worker
        self.payload = payload  # api, collect: the browser's body, unparsed
        self.name = name  # server: event name; identify: user id
        self.data = data  # server: custom data; identify: traits


@dataclass(slots=True)
class Activity:
    """A validated, filtered, enriched tracking call, ready to be sessionized."""

    type: ActivityType
    site: SiteRules
    visitor_id: str
    visitor_record_id: str
    at: float
    path: str = ""
    url: str = ""
    referrer: str | None = None
    name: str | None = None
    data: dict[str, Any] | None = None
    client: ClientInfo | None = None
    screen_width: int | None = None
    screen_height: int | None = None
    language: str | None = None
    ip_address: str | None = None  # only when the site stores raw IPs
    country: str = ""  # ISO 3166-1 alpha-2, from a trusted CDN's header or the local lookup
    region: str = ""  # the session's ``state``: a region name, from a local GeoIP database
    error_message: str | None = None
    stack_trace: str | None = None
    # Daily visitor ids, early in a day: the visitor's id of yesterday, whose session may go
    # on over midnight (the sessionizer decides).
    previous_visitor_id: str | None = None
    previous_visitor_record_id: str | None = None
    anonymous: bool = False  # a privacy signal: counted in a session of its own, no visitor
    # From the official client script (/collect): the session's device pixel ratio,
    # connection type and script version, as text, as the session stores them; a JS error's
    # occurrences (its ``count``) and breadcrumbs (``{type, message, timestamp, data}``).
    device_pixel_ratio: str | None = None
    connection_type: str | None = None
    script_version: str | None = None
    occurrences: int = 1
    breadcrumbs: list[dict[str, Any]] | None = None
    session_id: str | None = None  # set when sessionized
    # The events record's id, fixed here so that a replay from the spool cannot duplicate it.
    record_id: str = field(default_factory=random_record_id)
    spool_ref: JournalRef | None = None  # where the spool journaled it, if spooling
    recovered: bool = False  # replayed from another process's spool, not accepted by this one
    # Set when its call became several activities: the call is acknowledged through it.
    parts: CallParts | None = None
