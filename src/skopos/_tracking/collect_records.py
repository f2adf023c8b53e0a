"""What the dashboard's own collector writes for a ``/collect`` message: a pure mapping.

:func:`collect_records` turns a validated :class:`CollectMessage` into plain typed values,
one per record the dashboard (0.54) would write, following its collector's table:

======================  =======================================================================
message / item          record
======================  =======================================================================
``batch`` ``pv``        event ``pageView`` at ``p`` (or the page's path)
``batch`` ``ev``        event ``custom``, ``eventName`` = ``n``, ``eventData`` = ``d``
``batch`` ``out``       event ``click``, ``eventName`` ``outbound``, ``eventData`` ``{url}``
``batch`` ``dl``        event ``click``, ``eventName`` ``download``, ``eventData``
                        ``{filename, url}`` (``filename`` left out when unknown)
``exit``                event ``custom``, ``eventName`` ``exit``, ``eventData`` ``{duration}``
``errors``              one ``js_errors`` occurrence per error, ``breadcrumbs`` as
                        ``{type, message, timestamp, data}``
``identify``            visitor ``userId``, ``name``, ``email``, ``phone``, ``metadata``
every message           session ``screenWidth``, ``screenHeight``, ``language``, ``referrer``,
                        ``entryPath``/``exitPath`` (the page's path), ``devicePixelRatio``,
                        ``connectionType``, ``scriptVersion``
======================  =======================================================================

Events other than page views are at the page's path. Nothing here decides sessions,
visitors, record ids, timestamps or writes: that is the delivery's job. The ``fields()``
methods give the record's field names and values as the dashboard stores them (text for
the session's numbers); they are data for a writer, not requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from skopos._tracking.collect_message import (
    CollectBatch,
    CollectErrors,
    CollectExit,
    CollectIdentify,
    CollectItem,
    CollectMessage,
    CustomEventItem,
    DownloadItem,
    OutboundItem,
    PageViewItem,
)
from skopos._tracking.payload import JsonValue

__all__ = [
    "EXIT_EVENT_NAME",
    "CollectEvent",
    "CollectJsError",
    "CollectRecords",
    "CollectSession",
    "CollectVisitor",
    "EventRecordType",
    "collect_records",
]

EventRecordType = Literal["pageView", "custom", "click"]
# The dashboard leaves custom events of this name out of bounce and custom-event reports.
EXIT_EVENT_NAME = "exit"


@dataclass(frozen=True, slots=True)
class CollectEvent:
    """One ``events`` record: ``type``, ``path``, ``eventName``, ``eventData``.

    Example::

        >>> CollectEvent("click", "/docs", "outbound", {"url": "https://x.example/"}).fields()
        ... # doctest: +NORMALIZE_WHITESPACE
        {'type': 'click', 'path': '/docs', 'eventName': 'outbound',
         'eventData': {'url': 'https://x.example/'}}
    """

    type: EventRecordType
    path: str
    name: str | None = None
    data: dict[str, JsonValue] | None = None

    def fields(self) -> dict[str, JsonValue]:
        """The record's fields; ``eventName`` and ``eventData`` only when set."""
        fields: dict[str, JsonValue] = {"type": self.type, "path": self.path}
        if self.name is not None:
            fields["eventName"] = self.name
        if self.data is not None:
            fields["eventData"] = self.data
        return fields


@dataclass(frozen=True, slots=True)
class CollectJsError:
    """One occurrence (``count`` of them) of a JS error, for the ``js_errors`` group it
    belongs to: ``errorMessage``, ``stackTrace``, ``url`` (the page's URL), ``breadcrumbs``.

    ``count`` is added to the group's count (``count+``); ``source``, ``line`` and
    ``column`` (the script's ``src``, ``line``, ``col``) have no field in the 0.54 schema.
    """

    message: str
    stack_trace: str | None
    url: str
    count: int
    breadcrumbs: tuple[dict[str, JsonValue], ...] | None = None
    source: str | None = None
    line: int | None = None
    column: int | None = None

    def fields(self) -> dict[str, JsonValue]:
        """The group record's fields from this occurrence (``count`` and ``lastSeen`` aside)."""
        fields: dict[str, JsonValue] = {
            "errorMessage": self.message,
            "stackTrace": self.stack_trace or "",
            "url": self.url,
        }
        if self.breadcrumbs is not None:
            fields["breadcrumbs"] = list(self.breadcrumbs)
        return fields


@dataclass(frozen=True, slots=True)
class CollectVisitor:
    """What ``identify`` sets on the ``visitors`` record.

    The 0.54 schema has no ``visitors.email`` field (PocketBase ignores unknown fields
    silently, so the dashboard's own collector loses it); our own identify keeps such
    traits in ``metadata``. Which one to write is the writer's choice.

    Example::

        >>> CollectVisitor("u-42", name="Ada", email=None, phone=None, metadata=None).fields()
        {'userId': 'u-42', 'name': 'Ada'}
    """

    user_id: str
    name: str | None
    email: str | None
    phone: str | None
    metadata: dict[str, JsonValue] | None

    def fields(self) -> dict[str, JsonValue]:
        """The record's fields, those sent only (an identify never clears a field)."""
        fields: dict[str, JsonValue] = {"userId": self.user_id}
        for key, value in (
            ("name", self.name),
            ("email", self.email),
            ("phone", self.phone),
            ("metadata", self.metadata),
        ):
            if value is not None:
                fields[key] = value
        return fields


@dataclass(frozen=True, slots=True)
class CollectSession:
    """What every message says about its session: ``path`` is the page's path (query
    dropped, hash routes kept), the session's ``entryPath`` when it starts and its
    ``exitPath`` after every message; the rest describes the client.

    Example::

        >>> session = CollectSession("/", None, 1920, 1080, "en-US", 2.0, "4g", "1.3.0")
        >>> session.fields()["screenWidth"], session.fields()["devicePixelRatio"]
        ('1920', '2')
    """

    path: str
    referrer: str | None
    screen_width: int | None
    screen_height: int | None
    language: str | None
    device_pixel_ratio: float | None
    connection_type: str | None
    script_version: str | None

    def fields(self) -> dict[str, str]:
        """The ``sessions`` fields as text, set ones only (``entryPath`` is for a new session)."""
        fields = {"entryPath": self.path, "exitPath": self.path}
        for key, value in (
            ("referrer", self.referrer),
            ("screenWidth", self.screen_width),
            ("screenHeight", self.screen_height),
            ("language", self.language),
            ("devicePixelRatio", self.device_pixel_ratio),
            ("connectionType", self.connection_type),
            ("scriptVersion", self.script_version),
        ):
            if value is not None:
                fields[key] = _text(value)
        return fields


@dataclass(frozen=True, slots=True)
class CollectRecords:
    """Everything one message says: the session's fields, events (in the order sent),
    JS error occurrences, and the visitor's identity (``identify`` only)."""

    session: CollectSession
    events: tuple[CollectEvent, ...] = ()
    js_errors: tuple[CollectJsError, ...] = ()
    visitor: CollectVisitor | None = None


def collect_records(message: CollectMessage) -> CollectRecords:
    """What the dashboard's collector would write for ``message``; pure, never raises.

    Example::

        >>> from skopos._tracking.collect import decode_collect
        >>> message = decode_collect({"type": "batch", "sid": "abc", "url": "https://a.example/p?q",
        ...     "events": [{"t": "pv"}, {"t": "dl", "f": "a.pdf", "u": "https://a.example/a.pdf"}]})
        >>> [event.fields() for event in collect_records(message).events]
        ... # doctest: +NORMALIZE_WHITESPACE
        [{'type': 'pageView', 'path': '/p'},
         {'type': 'click', 'path': '/p', 'eventName': 'download',
          'eventData': {'filename': 'a.pdf', 'url': 'https://a.example/a.pdf'}}]
    """
    session = CollectSession(
        path=message.path,
        referrer=message.referrer,
        screen_width=message.screen_width,
        screen_height=message.screen_height,
        language=message.language,
        device_pixel_ratio=message.device_pixel_ratio,
        connection_type=message.connection_type,
        script_version=message.script_version,
    )
    body = message.body
    if isinstance(body, CollectBatch):
        events = tuple(_event(item, message.path) for item in body.events)
        return CollectRecords(session, events=events)
    if isinstance(body, CollectExit):
        exit_event = CollectEvent(
            "custom", message.path, EXIT_EVENT_NAME, {"duration": body.duration}
        )
        return CollectRecords(session, events=(exit_event,))
    if isinstance(body, CollectErrors):
        errors = tuple(
            CollectJsError(
                message=error.message,
                stack_trace=error.stack_trace,
                url=message.url,
                count=error.count,
                breadcrumbs=None
                if error.breadcrumbs is None
                else tuple(
                    {
                        "type": crumb.type,
                        "message": crumb.message,
                        "timestamp": crumb.timestamp,
                        "data": crumb.data,
                    }
                    for crumb in error.breadcrumbs
                ),
                source=error.source,
                line=error.line,
                column=error.column,
            )
            for error in body.errors
        )
        return CollectRecords(session, js_errors=errors)
    return CollectRecords(session, visitor=_visitor(body))


def _event(item: CollectItem, page_path: str) -> CollectEvent:
    if isinstance(item, PageViewItem):
        return CollectEvent("pageView", item.path)
    if isinstance(item, CustomEventItem):
        return CollectEvent("custom", page_path, item.name, item.data)
    if isinstance(item, OutboundItem):
        return CollectEvent("click", page_path, "outbound", {"url": item.url})
    assert isinstance(item, DownloadItem)
    data: dict[str, JsonValue] = {"url": item.url}
    if item.filename is not None:
        data = {"filename": item.filename, "url": item.url}
    return CollectEvent("click", page_path, "download", data)


def _visitor(body: CollectIdentify) -> CollectVisitor:
    return CollectVisitor(body.user_id, body.name, body.email, body.phone, body.metadata)


def _text(value: str | int | float) -> str:
    """A session field's text, as JavaScript's ``String()`` writes numbers (2, not 2.0)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
