"""The ``/collect`` message as the worker sees it once validated, and why one is dropped.

Typed, frozen records made only by :func:`skopos._tracking.collect.decode_collect`; every
field is within the bound its docstring states. :mod:`skopos._tracking.collect_records`
says what the dashboard makes of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias, get_args

from skopos._tracking.payload import JsonValue, RejectionReason

__all__ = [
    "COLLECT_REJECTION_REASONS",
    "Breadcrumb",
    "CollectBatch",
    "CollectBody",
    "CollectError",
    "CollectErrors",
    "CollectExit",
    "CollectIdentify",
    "CollectItem",
    "CollectMessage",
    "CollectRejection",
    "CollectRejectionReason",
    "CustomEventItem",
    "DownloadItem",
    "MessageType",
    "OutboundItem",
    "PageViewItem",
]

MessageType = Literal["batch", "errors", "exit", "identify"]

# The reasons of our own /api/event payloads keep their meaning (and their counters);
# the others are particular to /collect messages.
CollectRejectionReason = Literal[
    RejectionReason,
    "bad_encoding",  # _d not a base64 string, or _d without _v
    "unsupported_version",  # _v present but not 1
    "bad_message_type",  # type missing or not batch/errors/exit/identify
    "bad_site_id",  # sid missing, not a string, or not a plausible tracking id
    "bad_events",  # batch without an events list
    "empty_batch",  # batch whose events list is empty
    "too_many_events",  # batch with more than MAX_BATCH_EVENTS items
    "bad_errors",  # errors message without a non-empty errors list
    "too_many_errors",  # errors message with more than MAX_ERRORS items
    "bad_duration",  # exit without a finite, non-negative dur
    "bad_user_id",  # identify without a usable uid
    "bad_item",  # (one item) a batch event or an error that is not an object
    "bad_event_type",  # (one item) a batch event whose t is not pv/ev/out/dl
]
COLLECT_REJECTION_REASONS: frozenset[str] = frozenset(get_args(CollectRejectionReason))


@dataclass(frozen=True, slots=True)
class CollectRejection:
    """Why a ``/collect`` message (or one item of it) was dropped.

    ``reason`` is one of :data:`COLLECT_REJECTION_REASONS`, a stable code for a counter: the
    reasons shared with :class:`skopos._tracking.payload.Rejection` mean the same thing.
    ``detail`` is for humans and quotes at most a short excerpt of the message. It is a
    class of its own (not ``payload.Rejection``) so that its wider set of reasons stays
    typed and an ``isinstance`` check can never confuse the two.

    Example::

        >>> from skopos._tracking.collect import decode_collect
        >>> decode_collect(b'{"_d": "not base64!", "_v": 1}')
        CollectRejection(reason='bad_encoding', detail='_d is not valid base64')
    """

    reason: CollectRejectionReason
    detail: str


@dataclass(frozen=True, slots=True)
class PageViewItem:
    """``{"t": "pv", "p": path}``: a page view at ``path`` (``p``, or the page's path)."""

    path: str


@dataclass(frozen=True, slots=True)
class CustomEventItem:
    """``{"t": "ev", "n": name, "d": data}``: ``name`` 1..100 characters, cleaned; ``data``
    a fresh copy within the custom data bounds, None when absent or empty."""

    name: str
    data: dict[str, JsonValue] | None


@dataclass(frozen=True, slots=True)
class OutboundItem:
    """``{"t": "out", "u": url}``: a click on a link to another site (http(s), credentials
    removed, at most 2,048 characters)."""

    url: str


@dataclass(frozen=True, slots=True)
class DownloadItem:
    """``{"t": "dl", "f": filename, "u": url}``: a download link clicked; ``filename`` is
    cleaned text of 1..255 characters or None."""

    url: str
    filename: str | None


CollectItem: TypeAlias = PageViewItem | CustomEventItem | OutboundItem | DownloadItem


@dataclass(frozen=True, slots=True)
class CollectBatch:
    """A ``batch`` message's events, in the order sent, and the items dropped (with why).

    Example::

        >>> from skopos._tracking.collect import decode_collect
        >>> decode_collect({"type": "batch", "sid": "abc", "url": "https://a.example/",
        ...     "events": [{"t": "out", "u": "https://b.example/"}, {"t": "dl"}]}).body
        ... # doctest: +NORMALIZE_WHITESPACE
        CollectBatch(events=(OutboundItem(url='https://b.example/'),),
            dropped=(CollectRejection(reason='bad_url',
                detail='u must be a non-empty string, got <NoneType>'),))
    """

    events: tuple[CollectItem, ...]
    dropped: tuple[CollectRejection, ...] = ()


@dataclass(frozen=True, slots=True)
class Breadcrumb:
    """``{t, m, ts, d}``: what happened before an error. ``type`` 1..50 characters,
    ``message`` at most 500 (cut), ``timestamp`` client ms or None, ``data`` custom data."""

    type: str
    message: str | None
    timestamp: int | None
    data: dict[str, JsonValue] | None


@dataclass(frozen=True, slots=True)
class CollectError:
    """One ``{msg, stack, src, line, col, count, bc}`` of an ``errors`` message.

    ``message`` and ``stack_trace`` follow our jsError rules (1..1,000 and 1..8,000
    characters, cleaned); ``source`` is the script's address as cleaned text (it may be
    ``inline`` or an extension's URL); ``count`` is 1..1,000.

    Example::

        >>> from skopos._tracking.collect import decode_collect
        >>> decode_collect({"type": "errors", "sid": "abc", "url": "https://a.example/",
        ...     "errors": [{"msg": "x is undefined", "count": 2,
        ...                 "bc": [{"t": "navigation", "m": "Navigated to /", "ts": 0}]}]}
        ... ).body.errors  # doctest: +NORMALIZE_WHITESPACE
        (CollectError(message='x is undefined', stack_trace=None, source=None, line=None,
            column=None, count=2, breadcrumbs=(Breadcrumb(type='navigation',
            message='Navigated to /', timestamp=None, data=None),)),)
    """

    message: str
    stack_trace: str | None = None
    source: str | None = None
    line: int | None = None
    column: int | None = None
    count: int = 1
    breadcrumbs: tuple[Breadcrumb, ...] | None = None


@dataclass(frozen=True, slots=True)
class CollectErrors:
    """An ``errors`` message's errors (1..10 were sent), and the ones dropped (with why)."""

    errors: tuple[CollectError, ...]
    dropped: tuple[CollectRejection, ...] = ()


@dataclass(frozen=True, slots=True)
class CollectExit:
    """An ``exit`` message: ``duration`` whole seconds on the page (0..86,400), ``reason``
    the script's token (``leave``, ...) or None.

    Example::

        >>> from skopos._tracking.collect import decode_collect
        >>> decode_collect({"type": "exit", "sid": "abc", "url": "https://a.example/",
        ...                 "dur": 13, "reason": "leave"}).body
        CollectExit(duration=13, reason='leave')
    """

    duration: int
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class CollectIdentify:
    """An ``identify`` message: ``user_id`` 1..255 characters; ``name`` (255), ``email``
    (254, must look like one) and ``phone`` (50) cleaned, or None; ``metadata`` custom data.

    Example::

        >>> from skopos._tracking.collect import decode_collect
        >>> decode_collect({"type": "identify", "sid": "abc", "url": "https://a.example/",
        ...     "uid": 42, "email": "not an email", "meta": {"plan": "pro"}}).body
        CollectIdentify(user_id='42', name=None, email=None, phone=None, metadata={'plan': 'pro'})
    """

    user_id: str
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    metadata: dict[str, JsonValue] | None = None


CollectBody: TypeAlias = CollectBatch | CollectErrors | CollectExit | CollectIdentify


@dataclass(frozen=True, slots=True)
class CollectMessage:
    """A ``/collect`` message that passed validation; every field is within its bound.

    The envelope: ``site_id`` is ``sid`` (the tracking id); ``url``, ``host`` and ``path``
    are the page's, derived as for ``/api/event`` payloads (credentials removed, host
    normalised, path without query, hash routes kept). ``body`` holds what the ``type``
    carries. Every other envelope field is optional: ``visitor_id`` (``vid``) and
    ``session_id`` (``ssid``) are the client's untrusted ids; ``referrer`` (``ref``);
    ``screen_*`` (``sw``, ``sh``) and ``viewport_*`` (``vw``, ``vh``) 0..20,000 px;
    ``device_pixel_ratio`` (``dpr``); ``connection_type`` (``cn``); ``language``
    (``lang``); ``time_zone`` (``tz``); ``client_time`` (``ts``, ms); ``script_version``
    (``sv``).

    Example::

        >>> from skopos._tracking.collect import decode_collect
        >>> m = decode_collect({"type": "batch", "sid": "abc", "url": "https://Shop.example/a?b=1",
        ...                     "events": [{"t": "pv"}, {"t": "ev", "n": "buy", "d": {"n": 2}},
        ...                                {"t": "ev"}]})
        >>> (m.type, m.site_id, m.host, m.path)
        ('batch', 'abc', 'shop.example', '/a')
        >>> m.body.events
        (PageViewItem(path='/a'), CustomEventItem(name='buy', data={'n': 2}))
        >>> [r.reason for r in m.body.dropped]
        ['missing_name']
    """

    type: MessageType
    site_id: str
    url: str
    host: str
    path: str
    body: CollectBody
    visitor_id: str | None = None
    session_id: str | None = None
    referrer: str | None = None
    screen_width: int | None = None
    screen_height: int | None = None
    viewport_width: int | None = None
    viewport_height: int | None = None
    device_pixel_ratio: float | None = None
    connection_type: str | None = None
    language: str | None = None
    time_zone: str | None = None
    client_time: int | None = None
    script_version: str | None = None
