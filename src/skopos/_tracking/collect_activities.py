"""A ``/collect`` message's records → activities: the official client script's traffic in
the same units as our own script's, for the sessionizer, the JS error groups and the writer.

:func:`skopos._tracking.collect_records.collect_records` says what the dashboard's own
collector writes for a message; :func:`collect_activities` turns that into one
:class:`Activity` per record to write, for a visitor the pipeline has already identified
(our keyed visitor id, never the message's ``vid``), at the time the call was accepted
(never the client's ``ts``):

- each event (``pv``, ``ev``, ``out``, ``dl``, and an ``exit`` message's custom ``exit``
  event) → a ``pageView``, ``custom`` or ``click`` activity, in the order sent;
- each error → a ``jsError`` activity whose ``occurrences`` is the error's ``count`` and
  whose breadcrumbs are the dashboard's ``{type, message, timestamp, data}``;
- ``identify`` → an ``identify`` activity carrying the visitor's fields.

Every activity carries the message's session fields: the sessionizer writes them when the
activity opens a session (``referrer``, screen, ``language``, ``devicePixelRatio``,
``connectionType``, ``scriptVersion``; ``state`` comes from the geo lookup, as for our own
script).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from skopos._tracking.activity import Activity
from skopos._tracking.collect_records import CollectRecords
from skopos._tracking.site_rules import SiteRules
from skopos._tracking.user_agent import ClientInfo

__all__ = ["Visit", "collect_activities"]


@dataclass(frozen=True, slots=True)
class Visit:
    """Who sent a message, as the pipeline decided it from the request: the site, our
    visitor ids, when the call was accepted, and what the request says about the client."""

    site: SiteRules
    visitor_id: str
    visitor_record_id: str
    at: float
    client: ClientInfo | None = None
    ip_address: str | None = None  # only when the site stores raw IPs
    country: str = ""
    region: str = ""


def collect_activities(records: CollectRecords, url: str, visit: Visit) -> list[Activity]:
    """The activities for one message's ``records``; ``url`` is the page's (cleaned) URL.

    Example::

        >>> from skopos._tracking.collect import decode_collect
        >>> from skopos._tracking.collect_records import collect_records
        >>> from skopos._tracking.ip_rules import IpBlacklist
        >>> message = decode_collect({"type": "batch", "sid": "abc", "url": "https://a.example/p",
        ...     "dpr": 2, "events": [{"t": "pv"}, {"t": "out", "u": "https://b.example/"}]})
        >>> site = SiteRules("r1", "abc", "a.example", False, False, False, IpBlacklist(None))
        >>> visit = Visit(site, "visitor-hash", "visitorrecord01", at=1767225600.0)
        >>> [(a.type, a.path, a.name, a.data, a.device_pixel_ratio)
        ...  for a in collect_activities(collect_records(message), message.url, visit)]
        ... # doctest: +NORMALIZE_WHITESPACE
        [('pageView', '/p', None, None, '2'),
         ('click', '/p', 'outbound', {'url': 'https://b.example/'}, '2')]
    """
    session = records.session.fields()
    common: dict[str, Any] = {
        "site": visit.site,
        "visitor_id": visit.visitor_id,
        "visitor_record_id": visit.visitor_record_id,
        "at": visit.at,
        "url": url,
        "referrer": records.session.referrer,
        "client": visit.client,
        "screen_width": records.session.screen_width,
        "screen_height": records.session.screen_height,
        "language": records.session.language,
        "device_pixel_ratio": session.get("devicePixelRatio"),
        "connection_type": session.get("connectionType"),
        "script_version": session.get("scriptVersion"),
        "ip_address": visit.ip_address,
        "country": visit.country,
        "region": visit.region,
    }
    activities = [
        Activity(type=event.type, path=event.path, name=event.name, data=event.data, **common)
        for event in records.events
    ]
    for error in records.js_errors:
        activities.append(
            Activity(
                type="jsError",
                path=records.session.path,
                error_message=error.message,
                stack_trace=error.stack_trace,
                occurrences=error.count,
                breadcrumbs=None if error.breadcrumbs is None else list(error.breadcrumbs),
                **common,
            )
        )
    if records.visitor is not None:
        activities.append(
            Activity(
                type="identify",
                path=records.session.path,
                data=records.visitor.fields(),
                **common,
            )
        )
    return activities
