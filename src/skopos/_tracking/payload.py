"""Validate and sanitise one payload sent by the browser script.

Runs in the background worker, never on the request path. :func:`validate_payload` takes
whatever the host app handed over (a parsed JSON object, or the raw ``bytes``/``str`` body
that ``navigator.sendBeacon`` sends as text/plain) and returns either a :class:`ValidPayload`
whose every field is within bounds, or a :class:`Rejection` whose ``reason`` is a stable code
from :data:`REJECTION_REASONS` for the dropped-events counter. It never raises.

Decisions where the browser script leaves room:

- Required fields that are wrong reject the event; optional fields that are wrong
  (``referrer``, ``screenWidth``/``screenHeight``, ``language``, ``stackTrace``, a jsError's
  ``name``) are dropped to None and the event kept.
- ``customData`` over any bound is rejected, never truncated: a silently cut object would
  be stored as if it were what the page sent. Its size is measured as an upper bound of both
  Python's and Go's (PocketBase's) compact JSON encodings, so a payload that passes here is
  never refused by a PocketBase json field of :data:`MAX_CUSTOM_DATA_BYTES` -- one refused
  record would roll back its whole batch. An empty object becomes None.
- ``errorMessage`` over 1,000 characters is truncated, not rejected, like ``stackTrace``:
  long messages are common (serialised objects) and the error is still worth counting.
- ``path`` keeps hash routes: a fragment starting with ``/`` or ``!/`` (``/#/users/42``,
  ``/#!/users/42``) is part of the path, minus any ``?query`` inside it, because hash-routed
  SPAs have no other path. Any other fragment (an in-page anchor) is dropped.
- Credentials in a URL (``https://user:pass@host/``) are removed from ``url`` and
  ``referrer``; the rest of the URL is kept as sent, except that characters beyond ASCII
  are percent-encoded (UTF-8), as browsers do (an IDN host becomes punycode), so ``url``,
  ``path`` and ``referrer`` are ASCII, at most 2,048 bytes, wherever they are held.
- Hosts are lowercased, stripped of port and trailing dot, IDN hosts converted to
  punycode with the standard library's IDNA 2003 codec (browsers already send punycode).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, TypeAlias, TypeVar, get_args
from urllib.parse import quote, urlsplit, urlunsplit

from skopos._tracking.hosts import normalize_hostname, split_host_port

__all__ = [
    "EVENT_TYPES",
    "MAX_CUSTOM_DATA_BYTES",
    "MAX_RAW_BYTES",
    "REJECTION_REASONS",
    "EventType",
    "JsonValue",
    "Rejection",
    "RejectionReason",
    "ValidPayload",
    "clean_error_message",
    "clean_language",
    "clean_referrer",
    "clean_screen_dimension",
    "clean_stack_trace",
    "clean_text",
    "load_json_object",
    "parse_http_url",
    "validate_custom_data",
    "validate_event_name",
    "validate_payload",
]

EventType = Literal["pageView", "custom", "click", "jsError"]
EVENT_TYPES: frozenset[str] = frozenset(get_args(EventType))
_EVENT_TYPE_BY_NAME: dict[str, EventType] = {
    "pageView": "pageView",
    "custom": "custom",
    "click": "click",
    "jsError": "jsError",
}

RejectionReason = Literal[
    "too_large",  # raw body over MAX_RAW_BYTES
    "invalid_utf8",  # raw bytes are not UTF-8
    "invalid_json",  # not JSON, or NaN/Infinity, or an over-long number
    "json_too_deep",  # raw JSON nested deeper than MAX_JSON_DEPTH
    "not_object",  # the payload is not a JSON object (or not bytes/str/mapping)
    "bad_type",  # type missing or not pageView/custom/click/jsError
    "bad_url",  # url missing, not http(s), no valid host, control characters
    "url_too_long",  # url over MAX_URL_CHARS
    "missing_name",  # custom or click event without a usable name
    "name_too_long",  # custom event name over MAX_NAME_CHARS after cleaning
    "missing_error_message",  # jsError without a usable errorMessage
    "custom_data_not_object",  # customData present but not an object
    "custom_data_too_large",  # customData serialises to more than MAX_CUSTOM_DATA_BYTES
    "custom_data_too_deep",  # customData nested deeper than MAX_CUSTOM_DATA_DEPTH
    "custom_data_too_many_keys",  # more than MAX_CUSTOM_DATA_KEYS keys in all
    "custom_data_string_too_long",  # a key or string value over its cap
    "custom_data_bad_value",  # not JSON: non-str key, NaN, huge int, lone surrogate, other type
    "internal_error",  # the validator itself failed; a bug, never expected
]
REJECTION_REASONS: frozenset[str] = frozenset(get_args(RejectionReason))

JsonValue: TypeAlias = bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"] | None

MAX_RAW_BYTES = 16 * 1024
MAX_JSON_DEPTH = 20
MAX_URL_CHARS = 2048
MAX_NAME_CHARS = 100
MAX_ERROR_MESSAGE_CHARS = 1000
MAX_STACK_TRACE_CHARS = 8000
MAX_LANGUAGE_CHARS = 35
MAX_SCREEN_PIXELS = 20_000
MAX_CUSTOM_DATA_BYTES = 8 * 1024
MAX_CUSTOM_DATA_DEPTH = 5  # the customData object itself is depth 1
MAX_CUSTOM_DATA_KEYS = 50  # counted over every nested object
MAX_CUSTOM_DATA_KEY_CHARS = 100
MAX_CUSTOM_DATA_STRING_CHARS = 1000
MAX_SAFE_INTEGER = 2**53 - 1  # beyond this PocketBase (float64) would change the number

_T = TypeVar("_T")
_EXCERPT_CHARS = 24
# Removed from names and messages: C0/C1 controls, line/paragraph separators, bidi
# embeddings/overrides/isolates (they can disguise text on the dashboard), lone surrogates.
_UNSAFE_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_UNSAFE_TEXT_KEEP_LINES = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
_URL_FORBIDDEN = re.compile(r"[\x00-\x20\x7f-\x9f]|\s|[\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_NON_ASCII = re.compile("[^\x00-\x7f]+")
_JSON_PLAIN_ASCII = re.compile(r'[^\x00-\x1f"\\<>&]*')
_JSON_CONTROL = re.compile(r"[\x00-\x1f]")
_JSON_STRUCTURE = re.compile(r'[\[\]{}"\\]')
_LANGUAGE = re.compile(r"[A-Za-z0-9\-_,;.=* ]+")
_NUMBER_TEXT = re.compile(r"[+-]?[0-9]{1,15}(?:\.[0-9]{0,15})?")


@dataclass(frozen=True, slots=True)
class ValidPayload:
    """A payload that passed validation; every field is within its documented bound.

    ``url`` is the page URL as sent (http/https, at most 2,048 characters, credentials
    removed), ``host`` its lowercase hostname without port (punycode for IDNs, no brackets
    for IPv6), ``path`` its path without query (``/`` when empty; hash routes kept, see the
    module docs). ``name`` is set for custom events (1..100 characters) and, when usable,
    for jsError. ``custom_data`` is a fresh copy made only of dicts, lists and JSON scalars.

    Example::

        >>> p = validate_payload({"type": "pageView", "url": "https://Example.com/a?b=1"})
        >>> (p.type, p.host, p.path)
        ('pageView', 'example.com', '/a')
    """

    type: EventType
    url: str
    host: str
    path: str
    referrer: str | None = None
    name: str | None = None
    screen_width: int | None = None
    screen_height: int | None = None
    language: str | None = None
    custom_data: dict[str, JsonValue] | None = None
    error_message: str | None = None
    stack_trace: str | None = None
    device_model: str | None = None  # clientHints.model: skopos.js, when the site opts in


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a payload was dropped.

    ``reason`` is one of :data:`REJECTION_REASONS`, stable across releases (it names a
    counter); ``detail`` is for humans and quotes at most a short excerpt of the payload.

    Example::

        >>> validate_payload(b"{not json")
        Rejection(reason='invalid_json', detail='body is not valid JSON')
    """

    reason: RejectionReason
    detail: str


class _Reject(Exception):
    """Raised inside the validator, turned into a Rejection at the top."""

    def __init__(self, reason: RejectionReason, detail: str) -> None:
        super().__init__(reason)
        self.reason: RejectionReason = reason
        self.detail = detail


def validate_payload(raw: object) -> ValidPayload | Rejection:
    """Validate one browser payload; never raises.

    Example::

        >>> body = b'{"type": "custom", "url": "https://shop.example/#top", "name": " buy "}'
        >>> result = validate_payload(body)
        >>> (result.type, result.host, result.path, result.name)
        ('custom', 'shop.example', '/', 'buy')
        >>> validate_payload({"type": "custom", "url": "https://shop.example/"}).reason
        'missing_name'
    """
    return _guarded(lambda: _validate(_load(raw)))


def validate_event_name(name: object) -> str | Rejection:
    """Clean an event name by the rules ``validate_payload`` applies to custom events.

    For server-side events (``track_server_event``): control and bidi characters removed,
    whitespace trimmed, 1..100 characters; never raises.

    Example::

        >>> validate_event_name("  checkout\\x07 ")
        'checkout'
        >>> validate_event_name("").reason
        'missing_name'
    """
    return _guarded(lambda: _custom_event_name(name))


def validate_custom_data(data: object) -> dict[str, JsonValue] | Rejection | None:
    """Check and copy custom data by the rules ``validate_payload`` applies to ``customData``.

    For server-side events and identify traits: None or an empty mapping gives None;
    anything over a bound, or not JSON, is a Rejection (``custom_data_*``); never raises.

    Example::

        >>> validate_custom_data({"plan": "pro", "seats": (1, 2)})
        {'plan': 'pro', 'seats': [1, 2]}
        >>> validate_custom_data({"when": object()}).reason
        'custom_data_bad_value'
    """
    return _guarded(lambda: _custom_data(data))


# --- the field rules, one by one, for other message formats (the /collect protocol) ----------
# Each applies exactly the rule validate_payload applies to the field named; none raises.


def load_json_object(raw: object) -> Mapping[object, object] | Rejection:
    """A body as a JSON object, by the rules ``validate_payload`` applies to raw bodies.

    A mapping is passed through; ``bytes``/``str`` must be at most :data:`MAX_RAW_BYTES`
    UTF-8 bytes of JSON (a BOM allowed), nested at most :data:`MAX_JSON_DEPTH` levels, with
    no NaN, Infinity or over-long numbers, and an object at the top.

    Example::

        >>> load_json_object(b'{"a": [1, 2]}')
        {'a': [1, 2]}
        >>> load_json_object("[" * 30).reason
        'json_too_deep'
    """
    return _guarded(lambda: _load(raw))


def parse_http_url(value: object, field: str = "url") -> tuple[str, str, str] | Rejection:
    """``(url, host, path)`` of a page URL by the rules ``validate_payload`` applies to ``url``.

    ``field`` names the field in a rejection's detail.

    Example::

        >>> parse_http_url("https://user:pw@Example.com:8080/a/?q=1#/route?x=2")
        ('https://Example.com:8080/a/?q=1#/route?x=2', 'example.com', '/a/#/route')
        >>> parse_http_url("javascript:alert(1)").reason
        'bad_url'
    """
    return _guarded(lambda: _parse_http_url(value, field))


def clean_referrer(value: object) -> str | None:
    """A referrer URL (credentials removed), or None when absent or not a valid http(s) URL.

    Example::

        >>> clean_referrer("https://a:b@search.example/?q=x"), clean_referrer("android-app://x")
        ('https://search.example/?q=x', None)
    """
    return _referrer(value)


def clean_text(value: str, *, keep_lines: bool) -> str:
    """``value`` without control, bidi and lone surrogate characters (line breaks kept as
    ``\\n`` when ``keep_lines``); neither trimmed nor truncated.

    Example::

        >>> clean_text("a\\u202eb\\r\\nc\\x00", keep_lines=True)
        'ab\\nc'
    """
    return _clean_text(value, keep_lines=keep_lines)


def clean_screen_dimension(value: object) -> int | None:
    """A pixel count (int, float or numeric text) rounded and clamped to 0..20,000, or None.

    Example::

        >>> [clean_screen_dimension(value) for value in (1920.4, "-5", True)]
        [1920, 0, None]
    """
    return _screen_dimension(value)


def clean_language(value: object) -> str | None:
    """A language tag (or an Accept-Language-like list) of at most 35 characters, or None.

    Example::

        >>> clean_language(" en-US "), clean_language("<script>")
        ('en-US', None)
    """
    return _language(value)


def clean_error_message(value: object) -> str | Rejection:
    """An error message, cleaned (line breaks kept), trimmed, cut to 1,000 characters.

    Example::

        >>> clean_error_message("  TypeError: x\\x00 is undefined ")
        'TypeError: x is undefined'
        >>> clean_error_message(" ").reason
        'missing_error_message'
    """
    return _guarded(lambda: _error_message(value))


def clean_stack_trace(value: object) -> str | None:
    """A stack trace, cleaned (line breaks kept), trimmed, cut to 8,000 characters; or None.

    Example::

        >>> clean_stack_trace("at f (app.js:1:2)\\r\\n"), clean_stack_trace(42)
        ('at f (app.js:1:2)', None)
    """
    return _stack_trace(value)


def _guarded(validate: Callable[[], _T]) -> _T | Rejection:
    try:
        return validate()
    except _Reject as reject:
        return Rejection(reject.reason, reject.detail)
    except Exception as exc:  # the worker must survive any input, however strange
        return Rejection("internal_error", f"validator failed with {type(exc).__name__}")


def _excerpt(value: object) -> str:
    if isinstance(value, str):
        text = _UNSAFE_TEXT.sub("", value[: _EXCERPT_CHARS * 2])
        return repr(text[:_EXCERPT_CHARS] + ("..." if len(value) > _EXCERPT_CHARS else ""))
    return f"<{type(value).__name__}>"


# --- raw body -> mapping -----------------------------------------------------------------


def _load(raw: object) -> Mapping[object, object]:
    if isinstance(raw, Mapping):
        return raw
    if isinstance(raw, (bytes, bytearray, memoryview)):
        size = raw.nbytes if isinstance(raw, memoryview) else len(raw)
        if size > MAX_RAW_BYTES:
            raise _Reject("too_large", f"body is {size} bytes, over {MAX_RAW_BYTES}")
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise _Reject("invalid_utf8", "body is not valid UTF-8") from None
    elif isinstance(raw, str):
        # Characters never outnumber UTF-8 bytes, so the cheap check comes first.
        if len(raw) > MAX_RAW_BYTES or len(raw.encode("utf-8", "surrogatepass")) > MAX_RAW_BYTES:
            raise _Reject("too_large", f"body is over {MAX_RAW_BYTES} bytes")
        text = raw
    else:
        raise _Reject("not_object", f"payload is {_excerpt(raw)}, not a JSON object or body")
    text = text.removeprefix("\ufeff")
    if _json_too_deep(text, MAX_JSON_DEPTH):
        raise _Reject("json_too_deep", f"body nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        parsed: object = _DECODER.decode(text)
    except (ValueError, RecursionError):
        raise _Reject("invalid_json", "body is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise _Reject("not_object", f"body is JSON {type(parsed).__name__}, not an object")
    return parsed


def _json_too_deep(text: str, limit: int) -> bool:
    """Whether JSON text nests deeper than ``limit``, in one linear pass.

    ``json.loads`` recurses in C for every level; checking first keeps a hostile body from
    reaching the interpreter's recursion limit, or the C stack of a small worker thread.
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    in_string = False
    escaped_at = -1
    for match in _JSON_STRUCTURE.finditer(text):
        char = match.group()
        position = match.start()
        if in_string:
            if position == escaped_at:
                continue
            if char == "\\":
                escaped_at = position + 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError("number out of range")
    return number


# One decoder for every body: json.loads with hooks builds a new JSONDecoder per call. A BOM
# left after removeprefix is refused by both alike (as invalid JSON).
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)


# --- the fields ----------------------------------------------------------------------------


def _validate(raw: Mapping[object, object]) -> ValidPayload:
    raw_type = raw.get("type")
    event_type = _EVENT_TYPE_BY_NAME.get(raw_type) if isinstance(raw_type, str) else None
    if event_type is None:
        raise _Reject(
            "bad_type",
            f"type must be pageView, custom, click or jsError, got {_excerpt(raw_type)}",
        )
    url, host, path = _parse_http_url(raw.get("url"), "url")

    name: str | None = None
    error_message: str | None = None
    stack_trace: str | None = None
    if event_type in ("custom", "click"):
        name = _custom_event_name(raw.get("name"))
    elif event_type == "jsError":
        try:
            name = _custom_event_name(raw.get("name"))
        except _Reject:
            name = None
        error_message = _error_message(raw.get("errorMessage"))
        stack_trace = _stack_trace(raw.get("stackTrace"))

    return ValidPayload(
        type=event_type,
        url=url,
        host=host,
        path=path,
        referrer=_referrer(raw.get("referrer")),
        name=name,
        screen_width=_screen_dimension(raw.get("screenWidth")),
        screen_height=_screen_dimension(raw.get("screenHeight")),
        language=_language(raw.get("language")),
        custom_data=_custom_data(raw.get("customData")),
        error_message=error_message,
        stack_trace=stack_trace,
        device_model=_device_model(raw.get("clientHints")),
    )


def _parse_http_url(value: object, field: str) -> tuple[str, str, str]:
    """Check an http(s) URL; return (url without credentials, host, path)."""
    if not isinstance(value, str) or not value:
        raise _Reject("bad_url", f"{field} must be a non-empty string, got {_excerpt(value)}")
    if len(value) > MAX_URL_CHARS:
        raise _Reject("url_too_long", f"{field} is {len(value)} characters, over {MAX_URL_CHARS}")
    if _URL_FORBIDDEN.search(value):
        raise _Reject("bad_url", f"{field} contains whitespace or control characters")
    try:
        parts = urlsplit(value)
    except ValueError:
        raise _Reject("bad_url", f"{field} is not a parseable URL") from None
    if parts.scheme not in ("http", "https"):
        raise _Reject(
            "bad_url", f"{field} scheme must be http or https, got {_excerpt(parts.scheme)}"
        )
    _, at, hostport = parts.netloc.rpartition("@")
    host_text = split_host_port(hostport) if "\\" not in parts.netloc else None
    host = normalize_hostname(host_text) if host_text is not None else None
    if host is None:
        raise _Reject("bad_url", f"{field} has no valid host")
    url = urlunsplit(parts._replace(netloc=hostport)) if at else value
    path = parts.path or "/"
    fragment = parts.fragment
    if fragment.startswith(("/", "!/")):
        path = f"{path}#{fragment.partition('?')[0]}"
    if not url.isascii():
        if not hostport.isascii():  # an IDN host as sent: its punycode form, as browsers send
            assert host_text is not None
            url = url.replace(hostport, hostport.replace(host_text, host, 1), 1)
        url = _percent_encode(url)
        path = _percent_encode(path)
        if len(url) > MAX_URL_CHARS:
            raise _Reject(
                "url_too_long", f"{field} is {len(url)} characters encoded, over {MAX_URL_CHARS}"
            )
    return url, host, path


def _percent_encode(text: str) -> str:
    """``text`` with every run of non-ASCII characters percent-encoded as UTF-8."""
    return _NON_ASCII.sub(lambda match: quote(match.group(), safe=""), text)


def _referrer(value: object) -> str | None:
    if value is None or value == "":
        return None
    try:
        url, _, _ = _parse_http_url(value, "referrer")
    except _Reject:
        return None
    return url


def _clean_text(value: str, *, keep_lines: bool) -> str:
    if keep_lines:
        value = value.replace("\r\n", "\n").replace("\r", "\n")
        return _UNSAFE_TEXT_KEEP_LINES.sub("", value)
    return _UNSAFE_TEXT.sub("", value)


def _custom_event_name(value: object) -> str:
    if not isinstance(value, str):
        raise _Reject("missing_name", f"custom event needs a string name, got {_excerpt(value)}")
    # Cleaning only removes characters, so a far longer input can never come under the cap.
    if len(value) > MAX_NAME_CHARS * 20:
        raise _Reject("name_too_long", f"name is {len(value)} characters, over {MAX_NAME_CHARS}")
    name = _clean_text(value, keep_lines=False).strip()
    if not name:
        raise _Reject("missing_name", "custom event name is empty")
    if len(name) > MAX_NAME_CHARS:
        raise _Reject("name_too_long", f"name is {len(name)} characters, over {MAX_NAME_CHARS}")
    return name


def _error_message(value: object) -> str:
    message = (
        _clean_text(value[: MAX_ERROR_MESSAGE_CHARS * 4], keep_lines=True).strip()
        if isinstance(value, str)
        else ""
    )
    if not message:
        raise _Reject("missing_error_message", "jsError needs a non-empty errorMessage")
    return message[:MAX_ERROR_MESSAGE_CHARS]


def _stack_trace(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    trace = _clean_text(value[: MAX_STACK_TRACE_CHARS * 4], keep_lines=True).strip()
    return trace[:MAX_STACK_TRACE_CHARS] or None


def _screen_dimension(value: object) -> int | None:
    number: int
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = int(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            return None
        number = round(value)
    elif isinstance(value, str):
        text = value.strip()
        if not _NUMBER_TEXT.fullmatch(text):
            return None
        number = round(float(text))
    else:
        return None
    return min(max(number, 0), MAX_SCREEN_PIXELS)


def _device_model(hints: object) -> str | None:
    """``clientHints.model`` (a device model, ``navigator.userAgentData``), or None."""
    model = hints.get("model") if isinstance(hints, Mapping) else None
    if not isinstance(model, str):
        return None
    text = _clean_text(model[:64], keep_lines=False).strip()
    return text or None


def _language(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.strip()
    if len(text) > MAX_LANGUAGE_CHARS or not _LANGUAGE.fullmatch(text):
        return None
    return text


# --- customData ------------------------------------------------------------------------------


def _custom_data(value: object) -> dict[str, JsonValue] | None:
    """Copy customData into plain JSON containers, enforcing every bound, without recursion.

    The walk keeps an explicit stack, charges the size budget for a container's brackets
    and commas before visiting its items, and stops at the first violation, so its work
    is bounded by the limits, not by the input (a million-item list costs one check; a
    cyclic or 10,000-deep structure stops at depth 6).
    """
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _Reject(
            "custom_data_not_object", f"customData must be an object, got {_excerpt(value)}"
        )
    root: dict[str, JsonValue] = {}
    stack: list[tuple[object, dict[str, JsonValue] | list[JsonValue], int]] = [(value, root, 1)]
    size = 0
    keys = 0
    while stack:
        source, target, depth = stack.pop()
        if isinstance(target, dict):
            assert isinstance(source, Mapping)
            count = len(source)
            keys += count
            if keys > MAX_CUSTOM_DATA_KEYS:
                raise _Reject(
                    "custom_data_too_many_keys", f"customData has over {MAX_CUSTOM_DATA_KEYS} keys"
                )
            size += 2 + max(count - 1, 0)
            for key, item in source.items():
                if not isinstance(key, str):
                    raise _Reject("custom_data_bad_value", "customData keys must be strings")
                if len(key) > MAX_CUSTOM_DATA_KEY_CHARS:
                    raise _Reject(
                        "custom_data_string_too_long",
                        f"a customData key is over {MAX_CUSTOM_DATA_KEY_CHARS} characters",
                    )
                converted, item_size = _custom_data_item(item, depth, stack)
                size += _json_string_size(str.__str__(key)) + 1 + item_size
                if size > MAX_CUSTOM_DATA_BYTES:
                    break
                target[str.__str__(key)] = converted
        else:
            assert isinstance(source, (list, tuple))
            size += 2 + max(len(source) - 1, 0)
            for item in source if size <= MAX_CUSTOM_DATA_BYTES else ():
                converted, item_size = _custom_data_item(item, depth, stack)
                size += item_size
                if size > MAX_CUSTOM_DATA_BYTES:
                    break
                target.append(converted)
        if size > MAX_CUSTOM_DATA_BYTES:
            raise _Reject(
                "custom_data_too_large", f"customData is over {MAX_CUSTOM_DATA_BYTES} bytes as JSON"
            )
    return root or None


def _custom_data_item(
    item: object,
    depth: int,
    stack: list[tuple[object, dict[str, JsonValue] | list[JsonValue], int]],
) -> tuple[JsonValue, int]:
    """Convert one value; containers come back empty and are queued for filling."""
    if item is None:
        return None, 4
    if isinstance(item, bool):
        return bool(item), 4 if item else 5
    if isinstance(item, int):
        number = int(item)
        if abs(number) > MAX_SAFE_INTEGER:
            raise _Reject("custom_data_bad_value", "customData integer outside +/-(2**53 - 1)")
        return number, len(str(number))
    if isinstance(item, float):
        real = float(item)
        if not math.isfinite(real):
            raise _Reject("custom_data_bad_value", "customData number is NaN or infinite")
        return real, _json_float_size(real)
    if isinstance(item, str):
        if len(item) > MAX_CUSTOM_DATA_STRING_CHARS:
            raise _Reject(
                "custom_data_string_too_long",
                f"a customData string is over {MAX_CUSTOM_DATA_STRING_CHARS} characters",
            )
        text = str.__str__(item)
        return text, _json_string_size(text)
    if isinstance(item, (Mapping, list, tuple)):
        if depth + 1 > MAX_CUSTOM_DATA_DEPTH:
            raise _Reject(
                "custom_data_too_deep", f"customData nests deeper than {MAX_CUSTOM_DATA_DEPTH}"
            )
        container: dict[str, JsonValue] | list[JsonValue] = {} if isinstance(item, Mapping) else []
        stack.append((item, container, depth + 1))
        return container, 0  # its own size is charged when it is visited
    raise _Reject("custom_data_bad_value", f"customData holds {_excerpt(item)}, not JSON")


def _json_string_size(text: str) -> int:
    """Bytes of ``text`` as a JSON string, the larger of Python's and Go's encodings.

    Go escapes ``<``, ``>``, ``&`` (6 bytes each) and U+2028/2029; both escape quotes,
    backslashes and control characters (at most 6 bytes each).
    """
    if text.isascii() and _JSON_PLAIN_ASCII.fullmatch(text):
        return len(text) + 2
    if _SURROGATE.search(text):
        raise _Reject("custom_data_bad_value", "customData string holds a lone surrogate")
    return (
        len(text.encode("utf-8"))
        + 2
        + text.count('"')
        + text.count("\\")
        + 5 * (text.count("<") + text.count(">") + text.count("&"))
        + 3 * (text.count("\u2028") + text.count("\u2029"))
        + 5 * len(_JSON_CONTROL.findall(text))
    )


def _json_float_size(number: float) -> int:
    """Characters of a finite float in JSON, the larger of Python's and Go's encodings.

    Python writes 1e+16 where Go writes 10000000000000000 (Go switches to exponents only
    below 1e-6 and from 1e21 on), so the positional form is measured in that range.
    """
    text = repr(number)
    if "e" in text and 1e-6 <= abs(number) < 1e21:
        return max(len(text), len(format(Decimal(text), "f")))
    return len(text)
