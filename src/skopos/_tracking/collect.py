"""Validate one ``/collect`` message of the official client script (``skopos.min.js`` 1.3).

Runs in the background worker, never on the request path. :func:`decode_collect` takes what
the host app handed over (the raw ``bytes``/``str`` body, or an already parsed mapping),
undoes the ``_d`` obfuscation (:mod:`skopos._tracking.collect_codec`) and returns either a
:class:`CollectMessage` whose every field is within bounds, or a :class:`CollectRejection`
whose ``reason`` is a stable code from :data:`COLLECT_REJECTION_REASONS`. It never raises,
and its work is bounded by the limits below, not by the size of the input.

The fields follow our own ``/api/event`` payloads (:mod:`skopos._tracking.payload`, whose
rules are reused as they are: URLs and paths, referrer, names, screen sizes, language, error
message and stack trace, custom data). Decisions where the protocol leaves room:

- Required fields that are wrong reject the message: ``type``, ``sid``, ``url``, and per
  type the ``events``/``errors`` list, ``exit``'s ``dur``, ``identify``'s ``uid`` and a bad
  ``meta`` (custom data is rejected, never truncated, as ``customData`` is). Optional fields
  that are wrong become None and the message is kept.
- One bad item of a batch (an ``ev`` without a name, bad ``d`` data, an ``out``/``dl``
  without an http(s) URL, an unknown ``t``) or one error without a message is dropped on
  its own and listed in ``dropped`` with its reason; the rest of the message is kept. A
  message may so carry no item at all: ``dropped`` then says why.
- More than :data:`MAX_BATCH_EVENTS` events or :data:`MAX_ERRORS` errors rejects the
  message (``too_many_*``), never a cut list; more than :data:`MAX_BREADCRUMBS` breadcrumbs
  makes an error's breadcrumbs None (the script itself keeps the last 10).
- ``pv``'s ``p`` is a path: it must start with ``/`` and is reduced the way page URLs are
  (query dropped, hash routes kept), else the page's own path is used.
- ``vid`` and ``ssid`` are the client's own ids, kept (at most 128 of ``[A-Za-z0-9._:~-]``)
  but untrusted: they must never replace our salted visitor id or name a record.
- ``ts`` (client clock, ms) is kept between 2000 and 2100, else None; it is no timestamp of
  ours. ``dpr`` is kept in (0, 20], rounded to 3 decimals. ``dur`` is rounded to whole
  seconds and capped at a day: a tab left open for a week was still "engaged".
- ``count`` of an error is 1..1,000 (rounded, capped; anything else counts as 1).
- ``identify``: ``uid`` may be a string or an integer (as our own ``identify`` allows);
  ``name`` is cut to 255 characters like our identify's; a ``phone`` over 50 characters or
  an ``email`` that does not look like one becomes None rather than a cut, wrong value.
- Lone surrogates (``\\udXXX`` escapes; the codec refuses them in raw UTF-8) are removed
  from text, and make a URL or custom data invalid, exactly as in our own payloads.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import TypeVar

from skopos._tracking.collect_codec import decode_body
from skopos._tracking.collect_message import (
    COLLECT_REJECTION_REASONS,
    Breadcrumb,
    CollectBatch,
    CollectBody,
    CollectError,
    CollectErrors,
    CollectExit,
    CollectIdentify,
    CollectItem,
    CollectMessage,
    CollectRejection,
    CollectRejectionReason,
    CustomEventItem,
    DownloadItem,
    MessageType,
    OutboundItem,
    PageViewItem,
)
from skopos._tracking.payload import (
    MAX_URL_CHARS,
    Rejection,
    clean_error_message,
    clean_language,
    clean_referrer,
    clean_screen_dimension,
    clean_stack_trace,
    clean_text,
    parse_http_url,
    validate_custom_data,
    validate_event_name,
)

# The message types live in collect_message; the three names needed to call decode_collect
# and read its answer are re-exported here.
__all__ = [
    "COLLECT_REJECTION_REASONS",
    "MAX_BATCH_EVENTS",
    "MAX_BREADCRUMBS",
    "MAX_ERRORS",
    "CollectMessage",
    "CollectRejection",
    "decode_collect",
]

MAX_BATCH_EVENTS = 100  # ten times the script's default batch size
MAX_ERRORS = 10  # the script sends at most 10
MAX_BREADCRUMBS = 10  # the script keeps the last 10
MAX_CLIENT_ID_CHARS = 128  # sid, vid, ssid
MAX_FILENAME_CHARS = 255
MAX_SOURCE_CHARS = MAX_URL_CHARS
MAX_SOURCE_POSITION = 10_000_000  # line and column
MAX_ERROR_COUNT = 1000
MAX_BREADCRUMB_TYPE_CHARS = 50
MAX_BREADCRUMB_MESSAGE_CHARS = 500
MAX_EXIT_SECONDS = 86_400
MAX_DEVICE_PIXEL_RATIO = 20.0
MIN_CLIENT_TIME_MS = 946_684_800_000  # 2000-01-01
MAX_CLIENT_TIME_MS = 4_102_444_800_000  # 2100-01-01
MAX_USER_ID_CHARS = 255  # visitors.userId
MAX_PERSON_NAME_CHARS = 255  # visitors.name
MAX_EMAIL_CHARS = 254
MAX_PHONE_CHARS = 50  # visitors.phone

_T = TypeVar("_T")
_CLIENT_ID = re.compile(rf"[A-Za-z0-9._:~-]{{1,{MAX_CLIENT_ID_CHARS}}}")
TOKEN = re.compile(r"[A-Za-z0-9_-]{1,32}")  # connection type, exit reason
_TIME_ZONE = re.compile(r"[A-Za-z0-9_+/-]{1,64}")
SCRIPT_VERSION = re.compile(r"[A-Za-z0-9.+_-]{1,32}")
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,189}")
_EXCERPT_CHARS = 24
# Any absolute http(s) URL: only the path that parse_http_url derives from it is used.
_PATH_BASE = "http://p.invalid"


def decode_collect(raw: object) -> CollectMessage | CollectRejection:
    """Decode and validate one ``/collect`` message; never raises.

    Example::

        >>> body = b'{"type": "exit", "sid": "abc", "url": "https://a.example/", "dur": 12.6}'
        >>> decode_collect(body).body
        CollectExit(duration=13, reason=None)
        >>> decode_collect(b'{"type": "exit", "sid": "abc", "url": "https://a.example/"}').reason
        'bad_duration'
        >>> decode_collect(b'{"_d": "%%%", "_v": 1}').reason
        'bad_encoding'
    """
    message = decode_body(raw)
    if isinstance(message, CollectRejection):
        return message
    return _guarded(lambda: _message(message))


class _Reject(Exception):
    """Raised inside the validator, turned into a CollectRejection where it is caught."""

    def __init__(self, reason: CollectRejectionReason, detail: str) -> None:
        super().__init__(reason)
        self.reason: CollectRejectionReason = reason
        self.detail = detail


def _guarded(validate: Callable[[], _T]) -> _T | CollectRejection:
    try:
        return validate()
    except _Reject as reject:
        return CollectRejection(reject.reason, reject.detail)
    except Exception as exc:  # the worker must survive any input, however strange
        return CollectRejection("internal_error", f"validator failed with {type(exc).__name__}")


def _checked(result: _T | Rejection) -> _T:
    """A payload rule's value; its Rejection raised as ours (same reason, same detail)."""
    if isinstance(result, Rejection):
        raise _Reject(result.reason, result.detail)
    return result


def _each(
    items: list[object] | tuple[object, ...], rule: Callable[[object], _T]
) -> tuple[tuple[_T, ...], tuple[CollectRejection, ...]]:
    """``rule`` applied to every item: the values, and the rejections of the items dropped.
    (Only a rejection drops an item; any other error still fails the whole message.)"""
    kept: list[_T] = []
    dropped: list[CollectRejection] = []
    for item in items:
        try:
            kept.append(rule(item))
        except _Reject as reject:
            dropped.append(CollectRejection(reject.reason, reject.detail))
    return tuple(kept), tuple(dropped)


def _excerpt(value: object) -> str:
    if isinstance(value, str):
        text = clean_text(value[: _EXCERPT_CHARS * 2], keep_lines=False)
        return repr(text[:_EXCERPT_CHARS] + ("..." if len(value) > _EXCERPT_CHARS else ""))
    return f"<{type(value).__name__}>"


# --- the envelope ----------------------------------------------------------------------------


def _message(raw: Mapping[object, object]) -> CollectMessage:
    raw_type = raw.get("type")
    body_rule = _BODY_RULES.get(raw_type) if isinstance(raw_type, str) else None
    if body_rule is None:
        raise _Reject(
            "bad_message_type",
            f"type must be batch, errors, exit or identify, got {_excerpt(raw_type)}",
        )
    site_id = _client_id(raw.get("sid"))
    if site_id is None:
        raise _Reject("bad_site_id", f"sid must be a tracking id, got {_excerpt(raw.get('sid'))}")
    url, host, path = _checked(parse_http_url(raw.get("url"), "url"))
    return CollectMessage(
        type=body_rule[0],
        site_id=site_id,
        url=url,
        host=host,
        path=path,
        body=body_rule[1](raw, path),
        visitor_id=_client_id(raw.get("vid")),
        session_id=_client_id(raw.get("ssid")),
        referrer=clean_referrer(raw.get("ref")),
        screen_width=clean_screen_dimension(raw.get("sw")),
        screen_height=clean_screen_dimension(raw.get("sh")),
        viewport_width=clean_screen_dimension(raw.get("vw")),
        viewport_height=clean_screen_dimension(raw.get("vh")),
        device_pixel_ratio=_device_pixel_ratio(raw.get("dpr")),
        connection_type=_token(raw.get("cn"), TOKEN),
        language=clean_language(raw.get("lang")),
        time_zone=_token(raw.get("tz"), _TIME_ZONE),
        client_time=_client_time(raw.get("ts")),
        script_version=_token(raw.get("sv"), SCRIPT_VERSION),
    )


def _client_id(value: object) -> str | None:
    if not isinstance(value, str) or len(value) > 2 * MAX_CLIENT_ID_CHARS:
        return None  # too long even before trimming: no regex over a long text
    text = value.strip()
    return str(text) if _CLIENT_ID.fullmatch(text) else None


def _token(value: object, pattern: re.Pattern[str]) -> str | None:
    if not isinstance(value, str) or len(value) > 128:
        return None
    text = value.strip()
    return str(text) if pattern.fullmatch(text) else None


def _number(value: object) -> float | None:
    """A finite JSON number as a float, else None. Integers too large for a float are
    clamped first (every bound here is far smaller, so the clamp changes no answer)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, int):
        return float(min(max(int(value), -(2**63)), 2**63))
    return float(value) if math.isfinite(value) else None


def _integer(value: object, low: int, high: int) -> int | None:
    """A number rounded to an int within ``low..high``, else None."""
    number = _number(value)
    if number is None or not low <= number <= high:
        return None
    return min(max(round(number), low), high)


def _device_pixel_ratio(value: object) -> float | None:
    number = _number(value)
    if number is None or not 0 < number <= MAX_DEVICE_PIXEL_RATIO:
        return None
    return round(number, 3) or None


def _client_time(value: object) -> int | None:
    return _integer(value, MIN_CLIENT_TIME_MS, MAX_CLIENT_TIME_MS)


def _short_text(value: object, limit: int, *, cut: bool = False) -> str | None:
    """Cleaned single-line text of 1..``limit`` characters (longer: cut, or None)."""
    if not isinstance(value, str):
        return None
    if len(value) > limit * 4 and not cut:
        return None  # cleaning only removes characters: it could never fit
    text = clean_text(value[: limit * 4], keep_lines=False).strip()
    if len(text) > limit:
        if not cut:
            return None
        text = text[:limit].rstrip()
    return str(text) or None


# --- batch -----------------------------------------------------------------------------------


def _batch(raw: Mapping[object, object], page_path: str) -> CollectBatch:
    items = raw.get("events")
    if not isinstance(items, (list, tuple)):
        raise _Reject("bad_events", f"batch needs an events list, got {_excerpt(items)}")
    if not items:
        raise _Reject("empty_batch", "batch has no events")
    if len(items) > MAX_BATCH_EVENTS:
        raise _Reject("too_many_events", f"batch has {len(items)} events, over {MAX_BATCH_EVENTS}")
    events, dropped = _each(items, lambda item: _batch_item(item, page_path))
    return CollectBatch(events, dropped)


def _batch_item(item: object, page_path: str) -> CollectItem:
    if not isinstance(item, Mapping):
        raise _Reject("bad_item", f"a batch event must be an object, got {_excerpt(item)}")
    kind = item.get("t")
    if kind == "pv":
        return PageViewItem(_item_path(item.get("p"), page_path))
    if kind == "ev":
        name = _checked(validate_event_name(item.get("n")))
        return CustomEventItem(name, _checked(validate_custom_data(item.get("d"))))
    if kind == "out":
        url, _, _ = _checked(parse_http_url(item.get("u"), "u"))
        return OutboundItem(url)
    if kind == "dl":
        url, _, _ = _checked(parse_http_url(item.get("u"), "u"))
        return DownloadItem(url, _short_text(item.get("f"), MAX_FILENAME_CHARS))
    raise _Reject("bad_event_type", f"t must be pv, ev, out or dl, got {_excerpt(kind)}")


def _item_path(value: object, page_path: str) -> str:
    """``p`` reduced as a page URL's path is; the page's own path when ``p`` is unusable."""
    if not isinstance(value, str) or not value.startswith("/"):
        return page_path
    parsed = parse_http_url(_PATH_BASE + value, "p")
    return page_path if isinstance(parsed, Rejection) else parsed[2]


# --- errors ----------------------------------------------------------------------------------


def _errors(raw: Mapping[object, object], page_path: str) -> CollectErrors:
    items = raw.get("errors")
    if not isinstance(items, (list, tuple)) or not items:
        raise _Reject("bad_errors", f"errors needs a non-empty errors list, got {_excerpt(items)}")
    if len(items) > MAX_ERRORS:
        raise _Reject("too_many_errors", f"errors has {len(items)} items, over {MAX_ERRORS}")
    errors, dropped = _each(items, _error)
    return CollectErrors(errors, dropped)


def _error(item: object) -> CollectError:
    if not isinstance(item, Mapping):
        raise _Reject("bad_item", f"an error must be an object, got {_excerpt(item)}")
    count = _number(item.get("count"))
    return CollectError(
        message=_checked(clean_error_message(item.get("msg"))),
        stack_trace=clean_stack_trace(item.get("stack")),
        source=_short_text(item.get("src"), MAX_SOURCE_CHARS),
        line=_integer(item.get("line"), 0, MAX_SOURCE_POSITION),
        column=_integer(item.get("col"), 0, MAX_SOURCE_POSITION),
        count=1 if count is None or count < 1 else min(round(count), MAX_ERROR_COUNT),
        breadcrumbs=_breadcrumbs(item.get("bc")),
    )


def _breadcrumbs(value: object) -> tuple[Breadcrumb, ...] | None:
    if not isinstance(value, (list, tuple)) or len(value) > MAX_BREADCRUMBS:
        return None
    crumbs = []
    for item in value:
        if not isinstance(item, Mapping):
            continue
        kind = _short_text(item.get("t"), MAX_BREADCRUMB_TYPE_CHARS)
        if kind is None:
            continue  # context, not data: a crumb without a type is left out, not counted
        data = validate_custom_data(item.get("d"))
        crumbs.append(
            Breadcrumb(
                type=kind,
                message=_short_text(item.get("m"), MAX_BREADCRUMB_MESSAGE_CHARS, cut=True),
                timestamp=_client_time(item.get("ts")),
                data=None if isinstance(data, Rejection) else data,
            )
        )
    return tuple(crumbs) or None


# --- exit and identify -----------------------------------------------------------------------


def _exit(raw: Mapping[object, object], page_path: str) -> CollectExit:
    duration = _number(raw.get("dur"))
    if duration is None or duration < 0:
        raise _Reject(
            "bad_duration", f"dur must be a number of seconds, got {_excerpt(raw.get('dur'))}"
        )
    return CollectExit(
        duration=min(round(duration), MAX_EXIT_SECONDS), reason=_token(raw.get("reason"), TOKEN)
    )


def _identify(raw: Mapping[object, object], page_path: str) -> CollectIdentify:
    user_id = raw.get("uid")
    if isinstance(user_id, int) and not isinstance(user_id, bool) and abs(user_id) < 10**20:
        user_id = str(user_id)
    text = _short_text(user_id, MAX_USER_ID_CHARS)
    if text is None:
        raise _Reject("bad_user_id", f"uid must be 1..255 characters, got {_excerpt(user_id)}")
    email = _short_text(raw.get("email"), MAX_EMAIL_CHARS)
    return CollectIdentify(
        user_id=text,
        name=_short_text(raw.get("name"), MAX_PERSON_NAME_CHARS, cut=True),
        email=email if email is not None and _EMAIL.fullmatch(email) else None,
        phone=_short_text(raw.get("phone"), MAX_PHONE_CHARS),
        metadata=_checked(validate_custom_data(raw.get("meta"))),
    )


_BODY_RULES: dict[str, tuple[MessageType, Callable[[Mapping[object, object], str], CollectBody]]]
_BODY_RULES = {
    "batch": ("batch", _batch),
    "errors": ("errors", _errors),
    "exit": ("exit", _exit),
    "identify": ("identify", _identify),
}
