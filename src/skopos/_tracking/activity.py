"""The worker's units of work: a queued tracking call, and the activity it becomes.

``TrackCall`` is built on the request thread (primitives only); ``Activity``
is what survives validation, filtering and enrichment in the worker. A call
becomes one activity, except a ``/collect`` message, which becomes as many as
it carries events or errors (sharing one ``CallParts``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from skopos._stats import CallParts
from skopos._tracking.identity import random_record_id
from skopos._tracking.site_rules import SiteRules
from skopos._tracking.snapshot import CapturedRequest
from skopos._tracking.user_agent import ClientInfo

__all__ = [
    "CALL_BYTES",
    "MEASURED_BACKLOG",
    "NOMINAL_PAYLOAD_BYTES",
    "Activity",
    "ActivityType",
    "CallKind",
    "JournalRef",
    "TrackCall",
    "call_size",
    "payload_size",
]

CallKind = Literal["api", "server", "identify", "collect"]
ActivityType = Literal["pageView", "custom", "click", "jsError", "identify"]
# Where the spool journaled an activity: (segment number, sequence number in the segment).
JournalRef = tuple[int, int]


# What a queued call holds besides its payload and its capture's strings: the TrackCall, the
# capture object and its list or tuple, the small strings it refers to (measured: ~400).
CALL_BYTES = 512
# From this many queued calls on, a call's capture and parsed payload are measured (and cut
# if need be); below it they are charged a nominal size (``NOMINAL_PAYLOAD_BYTES``, the
# capture's nominal size): a look at every header and value costs the call ~1-2 µs, and a
# queue that short holds little whatever its calls hold.
MEASURED_BACKLOG = 64
NOMINAL_PAYLOAD_BYTES = 2048


def payload_size(payload: object) -> int:
    """The bytes a payload holds, for the queue's byte budget (on the request thread: O(1)
    for a body; a parsed mapping costs a look at its top-level values).

    The largest body ``skopos.js`` sends is about 10 KiB; one over 16 KiB is refused at the
    call. A mapping's size is its top-level strings, which a body within the limit could
    not exceed either (decoding JSON never lengthens a string).

    >>> payload_size(b"x" * 100), payload_size(None), payload_size({"url": "x" * 100})
    (100, 0, 164)
    """
    kind = type(payload)
    if kind is bytes or kind is bytearray:
        return len(payload)  # type: ignore[arg-type]
    if payload is None:
        return 0
    if kind is str:
        return sys.getsizeof(payload)  # 1, 2 or 4 bytes a character
    if kind is dict or isinstance(payload, Mapping):
        values = payload.values()  # type: ignore[attr-defined]
        return 64 * len(values) + sum([len(v) for v in values if type(v) is str])
    if isinstance(payload, memoryview):
        return payload.nbytes
    return 64


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


def call_size(call: TrackCall) -> int:
    """The bytes ``call`` holds in a queue (its capture's ``size`` as captured)."""
    request = call.request
    return CALL_BYTES + payload_size(call.payload) + (request.size if request is not None else 0)


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
