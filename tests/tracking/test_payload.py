"""Payload validation: every field of what the browser script sends, bounded or rejected.

Host/domain matching and localhost detection are tested in ``test_hosts.py``."""

from __future__ import annotations

import ipaddress
import json
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skopos._tracking.hosts import host_matches_domain, is_localhost
from skopos._tracking.payload import (
    EVENT_TYPES,
    MAX_CUSTOM_DATA_BYTES,
    MAX_RAW_BYTES,
    REJECTION_REASONS,
    Rejection,
    ValidPayload,
    validate_custom_data,
    validate_event_name,
    validate_payload,
)

URL = "https://example.com/"


def page(**fields: Any) -> dict[str, Any]:
    """A valid pageView payload with some fields replaced."""
    return {"type": "pageView", "url": URL, **fields}


def custom(**fields: Any) -> dict[str, Any]:
    """A valid custom-event payload with some fields replaced."""
    return {"type": "custom", "url": URL, "name": "signup", **fields}


def js_error(**fields: Any) -> dict[str, Any]:
    """A valid jsError payload with some fields replaced."""
    return {"type": "jsError", "url": URL, "errorMessage": "x is undefined", **fields}


def valid(raw: object) -> ValidPayload:
    result = validate_payload(raw)
    assert isinstance(result, ValidPayload), result
    assert_within_bounds(result)
    return result


def rejected(raw: object, reason: str) -> Rejection:
    result = validate_payload(raw)
    assert isinstance(result, Rejection), result
    assert result.reason == reason, result
    assert_good_rejection(result)
    return result


def nested_lists(depth: int) -> list[Any]:
    root: list[Any] = []
    current = root
    for _ in range(depth - 1):
        child: list[Any] = []
        current.append(child)
        current = child
    return root


def nested_dicts(depth: int) -> dict[str, Any]:
    root: dict[str, Any] = {}
    current = root
    for _ in range(depth - 1):
        child: dict[str, Any] = {}
        current["k"] = child
        current = child
    return root


# --- the invariants every result must satisfy ------------------------------------------------

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_LANGUAGE = re.compile(r"[A-Za-z0-9\-_,;.=* ]{1,35}")


def go_json_size(value: object) -> int:
    """Size as Go's encoding/json (PocketBase) writes it: HTML-safe escapes, raw UTF-8."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for char, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escaped)
    return len(text.encode("utf-8"))


def go_float_text(number: float) -> str:
    """How Go's encoding/json formats a float64 (positional between 1e-6 and 1e21)."""
    if number != 0 and (abs(number) < 1e-6 or abs(number) >= 1e21):
        return repr(number)
    from decimal import Decimal

    text = format(Decimal(repr(number)), "f")
    return text.removesuffix(".0") if "." in text else text


def go_json_size_with_floats(value: object) -> int:
    """Go's size, counting floats the way Go prints them."""
    extra = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, float):
            extra += max(0, len(go_float_text(item)) - len(repr(item)))
    return go_json_size(value) + extra


def assert_url_within_bounds(url: str) -> None:
    assert 0 < len(url) <= 2048
    assert url.lower().startswith(("http://", "https://"))
    assert not any(char.isspace() for char in url)
    assert not _CONTROL.search(url)
    url.encode("utf-8")  # no lone surrogates


def assert_within_bounds(p: ValidPayload) -> None:
    assert p.type in EVENT_TYPES
    assert_url_within_bounds(p.url)
    assert p.host
    assert p.host == p.host.lower()
    assert p.host.isascii()
    assert len(p.host) <= 253
    if ":" in p.host:
        assert isinstance(ipaddress.ip_address(p.host), ipaddress.IPv6Address)
    else:
        assert re.fullmatch(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*", p.host), p.host
    assert p.path.startswith("/")
    assert "?" not in p.path
    assert len(p.path) <= 2048
    if "#" in p.path:
        assert p.path.partition("#")[2].startswith(("/", "!/"))
    if p.referrer is not None:
        assert_url_within_bounds(p.referrer)
    if p.type == "custom":
        assert p.name is not None
    if p.type == "pageView":
        assert p.name is None
    if p.name is not None:
        assert 1 <= len(p.name) <= 100
        assert p.name == p.name.strip()
        assert not _CONTROL.search(p.name)
    for dimension in (p.screen_width, p.screen_height):
        assert dimension is None or (type(dimension) is int and 0 <= dimension <= 20_000)
    assert p.language is None or _LANGUAGE.fullmatch(p.language)
    if p.type == "jsError":
        assert p.error_message is not None
        assert 1 <= len(p.error_message) <= 1000
        assert p.error_message == p.error_message.strip()
        assert not _CONTROL.search(p.error_message.replace("\n", "").replace("\t", ""))
    else:
        assert p.error_message is None
        assert p.stack_trace is None
    if p.stack_trace is not None:
        assert 1 <= len(p.stack_trace) <= 8000
        assert not _CONTROL.search(p.stack_trace.replace("\n", "").replace("\t", ""))
    if p.custom_data is not None:
        assert_custom_data_within_bounds(p.custom_data)


def assert_custom_data_within_bounds(data: dict[str, Any]) -> None:
    assert type(data) is dict
    assert data
    keys = 0
    stack: list[tuple[object, int]] = [(data, 1)]
    while stack:
        item, depth = stack.pop()
        if type(item) is dict:
            assert depth <= 5
            keys += len(item)
            for key, value in item.items():
                assert type(key) is str
                assert len(key) <= 100
                stack.append((value, depth + 1))
        elif type(item) is list:
            assert depth <= 5
            stack.extend((value, depth + 1) for value in item)
        elif type(item) is str:
            assert len(item) <= 1000
        elif type(item) is int:
            assert abs(item) <= 2**53 - 1
        elif type(item) is float:
            assert math.isfinite(item)
        else:
            assert item is None or type(item) is bool, item
    assert keys <= 50
    compact = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    assert len(compact.encode("utf-8")) <= MAX_CUSTOM_DATA_BYTES
    assert go_json_size_with_floats(data) <= MAX_CUSTOM_DATA_BYTES


def assert_good_rejection(r: Rejection) -> None:
    assert r.reason in REJECTION_REASONS
    assert r.reason != "internal_error", r
    assert isinstance(r.detail, str)
    assert 0 < len(r.detail) <= 160


def check(raw: object) -> ValidPayload | Rejection:
    result = validate_payload(raw)
    if isinstance(result, ValidPayload):
        assert_within_bounds(result)
    else:
        assert isinstance(result, Rejection)
        assert_good_rejection(result)
    return result


# --- raw bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "convert",
    [
        lambda text: text,
        lambda text: text.encode(),
        lambda text: bytearray(text.encode()),
        lambda text: memoryview(text.encode()),
        lambda text: "\ufeff" + text,
        lambda text: ("\ufeff" + text).encode(),
        lambda text: json.loads(text),
        lambda text: OrderedDict(json.loads(text)),
    ],
    ids=["str", "bytes", "bytearray", "memoryview", "bom-str", "bom-bytes", "dict", "mapping"],
)
def test_raw_body_forms(convert: Callable[[str], object]) -> None:
    body = json.dumps(custom(customData={"plan": "pro"}, screenWidth=1280))
    result = valid(convert(body))
    assert (result.type, result.name, result.custom_data, result.screen_width) == (
        "custom",
        "signup",
        {"plan": "pro"},
        1280,
    )


def test_raw_body_size_limit_is_inclusive() -> None:
    base = json.dumps(page(pad=""))
    exact = json.dumps(page(pad="x" * (MAX_RAW_BYTES - len(base))))
    assert len(exact) == MAX_RAW_BYTES
    valid(exact)
    valid(exact.encode())
    rejected(exact[:-2] + 'x"}', "too_large")
    rejected((exact[:-2] + 'x"}').encode(), "too_large")


def test_raw_size_counts_utf8_bytes_not_characters() -> None:
    body = json.dumps(page(pad="é" * (MAX_RAW_BYTES // 2)), ensure_ascii=False)
    assert len(body) < MAX_RAW_BYTES < len(body.encode())
    rejected(body, "too_large")
    rejected(body.encode(), "too_large")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe{}", "invalid_utf8"),
        (b'{"type": "pageView", "url": "https://example.com/\xc3"}', "invalid_utf8"),
        (b"", "invalid_json"),
        ("", "invalid_json"),
        ("   ", "invalid_json"),
        ("{not json", "invalid_json"),
        ('{"type": "pageView"} trailing', "invalid_json"),
        ("{'type': 'pageView'}", "invalid_json"),
        ('{"type": "pageView", "url": "https://example.com/", "x": NaN}', "invalid_json"),
        ('{"type": "pageView", "url": "https://example.com/", "x": Infinity}', "invalid_json"),
        ('{"type": "pageView", "url": "https://example.com/", "x": -Infinity}', "invalid_json"),
        ('{"type": "pageView", "url": "https://example.com/", "x": 1e999}', "invalid_json"),
        ('{"screenWidth": ' + "9" * 5000 + "}", "invalid_json"),
        ("[]", "not_object"),
        ('"pageView"', "not_object"),
        ("42", "not_object"),
        ("null", "not_object"),
        (None, "not_object"),
        (42, "not_object"),
        (4.2, "not_object"),
        (["type", "pageView"], "not_object"),
        ({"type", "pageView"}, "not_object"),
        (object(), "not_object"),
        ("[" * 21 + "]" * 21, "json_too_deep"),
        ('{"a":' * 30 + "1" + "}" * 30, "json_too_deep"),
        ("[" * 8000 + "]" * 8000, "json_too_deep"),
        ("[" * 8000, "json_too_deep"),
        ("[" * 20_000 + "]" * 20_000, "too_large"),
    ],
)
def test_raw_body_rejections(raw: object, reason: str) -> None:
    rejected(raw, reason)


def test_brackets_inside_strings_do_not_count_as_depth() -> None:
    result = valid(json.dumps(custom(customData={"s": "[[[[{{{{" * 100 + '\\"]]' * 50})))
    assert result.custom_data is not None


def test_json_depth_twenty_is_fine_when_the_deep_part_is_ignored() -> None:
    payload = page(extra=nested_lists(17))
    assert valid(json.dumps(payload)).custom_data is None


def test_validation_on_a_small_stack_thread() -> None:
    """Hostile nesting must not reach json's C recursion on a thread with a small stack
    (musl's default is 128 KiB)."""
    results: list[object] = []
    bodies = ["[" * 8000 + "]" * 8000, '{"a":' * 2500 + "1" + "}" * 2500, "[" * 16_000]
    previous = threading.stack_size(128 * 1024)
    try:
        thread = threading.Thread(target=lambda: results.extend(map(validate_payload, bodies)))
        thread.start()
        thread.join(30)
    finally:
        threading.stack_size(previous)
    assert [r.reason for r in results] == ["json_too_deep"] * 3  # type: ignore[attr-defined]


# --- type ------------------------------------------------------------------------------------


def test_click_events_carry_a_name_and_data_like_custom_events() -> None:
    payload = valid({"type": "click", "url": URL, "name": "outbound", "customData": {"url": URL}})
    assert (payload.type, payload.name, payload.custom_data) == ("click", "outbound", {"url": URL})
    rejected({"type": "click", "url": URL}, "missing_name")


@pytest.mark.parametrize(
    "event_type", [None, "", "pageview", "PageView", "Click", "custom ", 1, True, ["pageView"]]
)
def test_bad_type(event_type: object) -> None:
    rejected(page(type=event_type), "bad_type")


def test_missing_type() -> None:
    rejected({"url": URL}, "bad_type")


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_each_type_is_accepted(event_type: str) -> None:
    result = valid({"type": event_type, "url": URL, "name": "n", "errorMessage": "e"})
    assert result.type == event_type


# --- url, host, path -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host", "path"),
    [
        ("https://example.com", "example.com", "/"),
        ("https://example.com/", "example.com", "/"),
        ("http://example.com/a/b/", "example.com", "/a/b/"),
        ("https://Example.COM/Path", "example.com", "/Path"),
        ("HTTPS://example.com/x", "example.com", "/x"),
        ("https://example.com:8443/x", "example.com", "/x"),
        ("https://example.com:/x", "example.com", "/x"),
        ("https://example.com./x", "example.com", "/x"),
        ("https://example.com/a?b=1&c=2", "example.com", "/a"),
        ("https://example.com?b=1", "example.com", "/"),
        ("https://example.com/a#section", "example.com", "/a"),
        ("https://example.com/a?q=1#section", "example.com", "/a"),
        ("https://example.com/#/users/42", "example.com", "/#/users/42"),
        ("https://example.com/app#/users/42?tab=2", "example.com", "/app#/users/42"),
        ("https://example.com/?utm=x#!/users/42", "example.com", "/#!/users/42"),
        ("https://example.com/#", "example.com", "/"),
        ("https://example.com/#!", "example.com", "/"),
        ("https://example.com/a%20b/%E2%9C%93", "example.com", "/a%20b/%E2%9C%93"),
        ("https://example.com/ünïcode", "example.com", "/%C3%BCn%C3%AFcode"),
        ("https://blog.example.co.uk/", "blog.example.co.uk", "/"),
        ("https://xn--bcher-kva.de/", "xn--bcher-kva.de", "/"),
        ("https://bücher.de/", "xn--bcher-kva.de", "/"),
        ("https://BÜCHER.de/", "xn--bcher-kva.de", "/"),
        ("http://localhost:3000/", "localhost", "/"),
        ("http://127.0.0.1:8000/x", "127.0.0.1", "/x"),
        ("http://[::1]:8000/x", "::1", "/x"),
        ("http://[2001:DB8::1]/", "2001:db8::1", "/"),
        ("http://my_host.internal/", "my_host.internal", "/"),
        ("https://" + "a" * 63 + ".com/", "a" * 63 + ".com", "/"),
    ],
)
def test_url_host_and_path(url: str, host: str, path: str) -> None:
    result = valid(page(url=url))
    assert (result.host, result.path) == (host, path)
    assert result.url == url if url.isascii() else result.url.isascii()


@pytest.mark.parametrize(
    ("url", "encoded"),
    [
        (
            "https://example.com/ünïcode?q=é#/rüte",
            "https://example.com/%C3%BCn%C3%AFcode?q=%C3%A9#/r%C3%BCte",
        ),
        ("https://BÜCHER.de:8080/x", "https://xn--bcher-kva.de:8080/x"),
        ("https://example.com/\U0001f600", "https://example.com/%F0%9F%98%80"),
    ],
)
def test_urls_beyond_ascii_are_percent_encoded_as_browsers_do(url: str, encoded: str) -> None:
    # Held in queues, caches and the journal: 4 bytes a character for emoji, and PocketBase
    # sees ASCII from browsers anyway. The length limit applies to the encoded form.
    result = valid(page(url=url, referrer=url))
    assert (result.url, result.referrer) == (encoded, encoded)
    assert result.path.isascii()


def test_the_url_length_limit_applies_once_encoded() -> None:
    prefix = "https://example.com/"
    valid(page(url=prefix + "é" * ((2048 - len(prefix)) // 6)))
    rejected(page(url=prefix + "\U0001f600" * 200), "url_too_long")  # 200 characters, 2,420 bytes


def test_url_credentials_are_removed() -> None:
    result = valid(page(url="https://alice:s3cret@example.com:8443/p?q=1#f"))
    assert result.url == "https://example.com:8443/p?q=1#f"
    assert "s3cret" not in repr(result)
    assert valid(page(url="https://@example.com/")).url == "https://example.com/"


@pytest.mark.parametrize(
    "url",
    [
        None,
        "",
        42,
        ["https://example.com/"],
        "example.com",
        "/relative/path",
        "//example.com/",
        "ftp://example.com/",
        "javascript:alert(1)",
        "data:text/html,hi",
        "file:///etc/passwd",
        "ws://example.com/",
        "http://",
        "http:///path",
        "http:example.com",
        "https://exa mple.com/",
        "https://example.com/a b",
        " https://example.com/",
        "https://example.com/\n",
        "https://example.com/\x00",
        "https://example.com/\x85",
        "https://example.com/\u2028",
        "https://example.com/\ud800",
        "https://example.com:99999/",
        "https://example.com:8o/",
        "https://example.com:-1/",
        "https://[::1/",
        "https://[example.com]/",
        "https://[fe80::1%25eth0]/",
        "https://exa%6dple.com/",
        "https://evil.com\\@example.com/",
        "https://exa<mple.com/",
        "https://-/",
        "https://a..b/",
        "https://.example.com/",
        "https://" + "a" * 64 + ".com/",
        "https://" + ".".join(["a" * 60] * 5) + "/",
        "https://1.2.3/",
        "https://999.1.1.1/",
        "https://☃☃☃" + "☃" * 80 + ".com/",
    ],
)
def test_bad_url(url: object) -> None:
    rejected(page(url=url), "bad_url")


def test_missing_url() -> None:
    rejected({"type": "pageView"}, "bad_url")


def test_url_length_limit() -> None:
    prefix = "https://example.com/"
    valid(page(url=prefix + "a" * (2048 - len(prefix))))
    rejected(page(url=prefix + "a" * (2049 - len(prefix))), "url_too_long")
    rejected(page(url=prefix + "a" * 1_000_000), "url_too_long")


# --- referrer --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("referrer", "expected"),
    [
        ("https://www.google.com/", "https://www.google.com/"),
        ("http://news.example.org/a?b=c", "http://news.example.org/a?b=c"),
        ("https://user:pw@ref.example/x", "https://ref.example/x"),
        (None, None),
        ("", None),
        ("android-app://com.google.android.gm/", None),
        ("ftp://example.com/", None),
        ("not a url", None),
        ("https://", None),
        ("https://example.com/\x00", None),
        ("https://example.com/" + "a" * 2048, None),
        (42, None),
        ({"url": "https://example.com/"}, None),
    ],
)
def test_referrer(referrer: object, expected: str | None) -> None:
    assert valid(page(referrer=referrer)).referrer == expected


# --- name ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("signup", "signup"),
        ("  signup\t", "signup"),
        ("sign\x00up\x07", "signup"),
        ("Sign Up \u2013 Step 2 \u2713", "Sign Up \u2013 Step 2 \u2713"),
        ("\u202eevil\u202c", "evil"),
        ("line\nbreak", "linebreak"),
        ("n" * 100, "n" * 100),
        ("\x00" * 150 + "ok", "ok"),
        ("x", "x"),
    ],
)
def test_custom_event_name(name: str, expected: str) -> None:
    assert valid(custom(name=name)).name == expected
    assert validate_event_name(name) == expected  # the same rules for server-side events


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        (None, "missing_name"),
        ("", "missing_name"),
        ("   ", "missing_name"),
        ("\x00\x01\n", "missing_name"),
        (42, "missing_name"),
        (["signup"], "missing_name"),
        ("n" * 101, "name_too_long"),
        (" " + "n" * 101 + " ", "name_too_long"),
        ("n" * 1_000_000, "name_too_long"),
    ],
)
def test_custom_event_name_rejections(name: object, reason: str) -> None:
    rejected(custom(name=name), reason)
    direct = validate_event_name(name)
    assert isinstance(direct, Rejection)
    assert direct.reason == reason


def test_custom_event_without_name_key() -> None:
    rejected({"type": "custom", "url": URL}, "missing_name")


def test_page_view_ignores_name() -> None:
    assert valid(page(name="whatever")).name is None
    assert valid(page(name="n" * 5000)).name is None


def test_js_error_name_is_optional() -> None:
    assert valid(js_error(name="TypeError")).name == "TypeError"
    assert valid(js_error(name="n" * 500)).name is None
    assert valid(js_error(name=7)).name is None
    assert valid(js_error()).name is None


# --- jsError ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("x is undefined", "x is undefined"),
        ("  padded \n", "padded"),
        ("line1\r\nline2\rline3", "line1\nline2\nline3"),
        ("tab\there", "tab\there"),
        ("nul\x00 bell\x07 esc\x1b[31m", "nul bell esc[31m"),
        ("m" * 1000, "m" * 1000),
        ("m" * 1001, "m" * 1000),
        ("m" * 100_000, "m" * 1000),
    ],
)
def test_error_message(message: str, expected: str) -> None:
    assert valid(js_error(errorMessage=message)).error_message == expected


@pytest.mark.parametrize("message", [None, "", "  \n\t ", "\x00\x01", 42, ["e"]])
def test_error_message_required(message: object) -> None:
    rejected(js_error(errorMessage=message), "missing_error_message")


def test_error_message_missing_key() -> None:
    rejected({"type": "jsError", "url": URL}, "missing_error_message")


@pytest.mark.parametrize(
    ("trace", "expected"),
    [
        ("at f (app.js:1:2)\n  at g (app.js:3:4)", "at f (app.js:1:2)\n  at g (app.js:3:4)"),
        ("s" * 8000, "s" * 8000),
        ("s" * 8001, "s" * 8000),
        ("s" * 1_000_000, "s" * 8000),
        ("\r\n", None),
        ("", None),
        (None, None),
        (123, None),
        ("a\x00b\r\nc", "ab\nc"),
    ],
)
def test_stack_trace(trace: object, expected: str | None) -> None:
    assert valid(js_error(stackTrace=trace)).stack_trace == expected


def test_error_fields_ignored_for_other_types() -> None:
    result = valid(page(errorMessage="boom", stackTrace="trace"))
    assert (result.error_message, result.stack_trace) == (None, None)


# --- screen size and language -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1920, 1920),
        (0, 0),
        (20_000, 20_000),
        (20_001, 20_000),
        (-5, 0),
        (10**100, 20_000),
        (1920.0, 1920),
        (1366.4, 1366),
        (-0.0, 0),
        (1e308, 20_000),
        ("1920", 1920),
        (" 1080 ", 1080),
        ("1920.0", 1920),
        ("+800", 800),
        ("-800", 0),
        ("99999999", 20_000),
        (True, None),
        (False, None),
        (None, None),
        (math.nan, None),
        (math.inf, None),
        (-math.inf, None),
        ("", None),
        ("abc", None),
        ("1_920", None),
        ("１９２０", None),  # noqa: RUF001
        ("1e3", None),
        ("nan", None),
        ("inf", None),
        ("0x10", None),
        ("9" * 5000, None),
        ([1920], None),
        ({"w": 1}, None),
    ],
)
def test_screen_dimensions(value: object, expected: int | None) -> None:
    result = valid(page(screenWidth=value, screenHeight=value))
    assert result.screen_width == expected
    assert result.screen_height == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("en-US", "en-US"),
        (" de ", "de"),
        ("en-US,en;q=0.9", "en-US,en;q=0.9"),
        ("zh-Hant-TW", "zh-Hant-TW"),
        ("*", "*"),
        ("x" * 35, "x" * 35),
        ("x" * 36, None),
        ("", None),
        ("en<script>", None),
        ("en\n", "en"),
        ("en\x00", None),
        ("français", None),
        (42, None),
        (None, None),
    ],
)
def test_language(value: object, expected: str | None) -> None:
    assert valid(page(language=value)).language == expected


# --- customData ------------------------------------------------------------------------------


def test_custom_data_is_copied_into_plain_json() -> None:
    source: dict[str, Any] = OrderedDict(
        a=1, b=2.5, c="s", d=True, e=None, f=(1, [2, {"g": False}]), h={"i": []}
    )
    result = valid(custom(customData=source))
    assert result.custom_data == {
        "a": 1,
        "b": 2.5,
        "c": "s",
        "d": True,
        "e": None,
        "f": [1, [2, {"g": False}]],
        "h": {"i": []},
    }
    assert type(result.custom_data) is dict
    assert list(result.custom_data) == ["a", "b", "c", "d", "e", "f", "h"]
    source["h"]["i"].append("mutated later")
    assert result.custom_data["h"] == {"i": []}


def test_custom_data_types_are_exact() -> None:
    class MyStr(str):
        pass

    class MyInt(int):
        pass

    result = valid(custom(customData={MyStr("k"): MyStr("v"), "n": MyInt(3)}))
    assert result.custom_data == {"k": "v", "n": 3}
    assert result.custom_data is not None
    assert [type(k) for k in result.custom_data] == [str, str]
    assert [type(v) for v in result.custom_data.values()] == [str, int]


@pytest.mark.parametrize("data", [None, {}])
def test_custom_data_absent_or_empty(data: object) -> None:
    assert valid(custom(customData=data)).custom_data is None
    assert validate_custom_data(data) is None


def test_validate_custom_data_copies() -> None:
    source = {"a": [1, {"b": (2, 3)}], "c": None}
    result = validate_custom_data(source)
    assert result == {"a": [1, {"b": [2, 3]}], "c": None}
    assert result is not source


def test_server_side_validators_never_raise() -> None:
    class Exploding(dict[str, Any]):
        def items(self) -> Any:
            raise RuntimeError("boom")

    assert validate_custom_data(Exploding(a=1)) == Rejection(
        "internal_error", "validator failed with RuntimeError"
    )


def test_custom_data_allowed_on_every_type() -> None:
    assert valid(page(customData={"a": 1})).custom_data == {"a": 1}
    assert valid(js_error(customData={"a": 1})).custom_data == {"a": 1}


def test_custom_data_limits_are_inclusive() -> None:
    at_limits = {
        "deep": nested_dicts(4),  # depth 5 counting customData itself
        "list": nested_lists(4),
        "string": "s" * 1000,
        "k" * 100: 1,
        **{f"key{i}": i for i in range(50 - 3 - 6)},  # 50 keys in total
        "big": 2**53 - 1,
        "small": -(2**53 - 1),
    }
    result = valid(custom(customData=at_limits))
    assert result.custom_data == at_limits


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ([1, 2], "custom_data_not_object"),
        ("a=1", "custom_data_not_object"),
        (42, "custom_data_not_object"),
        (True, "custom_data_not_object"),
        ({"deep": nested_dicts(5)}, "custom_data_too_deep"),
        ({"deep": nested_lists(5)}, "custom_data_too_deep"),
        ({"deep": nested_lists(10_000)}, "custom_data_too_deep"),
        ({"deep": nested_dicts(10_000)}, "custom_data_too_deep"),
        ({f"k{i}": i for i in range(51)}, "custom_data_too_many_keys"),
        ({"a": {f"k{i}": i for i in range(50)}}, "custom_data_too_many_keys"),
        ({f"k{i}": i for i in range(100_000)}, "custom_data_too_many_keys"),
        ({"s": "s" * 1001}, "custom_data_string_too_long"),
        ({"s": ["s" * 1001]}, "custom_data_string_too_long"),
        ({"k" * 101: 1}, "custom_data_string_too_long"),
        ({"list": list(range(100_000))}, "custom_data_too_large"),
        ({f"k{i}": "x" * 999 for i in range(9)}, "custom_data_too_large"),
        ({"l": ["x" * 1000] * 9}, "custom_data_too_large"),
        ({"l": ["<&>" * 300] * 5}, "custom_data_too_large"),  # Go escapes these: 6 bytes each
        ({"l": [1e20] * 400}, "custom_data_too_large"),  # Go prints 1e20 with 21 digits
        ({1: "x"}, "custom_data_bad_value"),
        ({None: "x"}, "custom_data_bad_value"),
        ({("a",): "x"}, "custom_data_bad_value"),
        ({"n": math.nan}, "custom_data_bad_value"),
        ({"n": math.inf}, "custom_data_bad_value"),
        ({"n": [-math.inf]}, "custom_data_bad_value"),
        ({"n": 2**53}, "custom_data_bad_value"),
        ({"n": -(2**53)}, "custom_data_bad_value"),
        ({"n": 10**5000}, "custom_data_bad_value"),
        ({"s": {1, 2}}, "custom_data_bad_value"),
        ({"b": b"bytes"}, "custom_data_bad_value"),
        ({"o": object()}, "custom_data_bad_value"),
        ({"s": "lone \ud800 surrogate"}, "custom_data_bad_value"),
        ({"lone \udfff": 1}, "custom_data_bad_value"),
    ],
)
def test_custom_data_rejections(data: object, reason: str) -> None:
    rejected(custom(customData=data), reason)
    direct = validate_custom_data(data)  # the same rules for server-side events
    assert isinstance(direct, Rejection)
    assert direct.reason == reason


def test_custom_data_cycles_stop_at_the_depth_limit() -> None:
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    rejected(custom(customData=cyclic), "custom_data_too_deep")
    looped: list[Any] = []
    looped.append(looped)
    rejected(custom(customData={"l": looped}), "custom_data_too_deep")


def test_custom_data_size_boundary() -> None:
    # {"a":"xxx..."} is 8 bytes plus the string: find the largest string that fits.
    fits = {"a": "x" * 999, **{f"b{i}": "y" * 999 for i in range(7)}}
    size = len(json.dumps(fits, separators=(",", ":")))
    assert size <= MAX_CUSTOM_DATA_BYTES
    filler = MAX_CUSTOM_DATA_BYTES - size - len(',"c":""')
    exact = {**fits, "c": "z" * filler}
    assert len(json.dumps(exact, separators=(",", ":"))) == MAX_CUSTOM_DATA_BYTES
    assert valid(custom(customData=exact)).custom_data == exact
    rejected(custom(customData={**fits, "c": "z" * (filler + 1)}), "custom_data_too_large")


def test_custom_data_size_counts_utf8_and_escapes() -> None:
    # 8 keys of 1000 three-byte characters: 8000 characters but ~24 KB of UTF-8.
    rejected(custom(customData={f"k{i}": "€" * 1000 for i in range(8)}), "custom_data_too_large")
    rejected(custom(customData={f"k{i}": "\x00" * 1000 for i in range(2)}), "custom_data_too_large")
    valid(custom(customData={f"k{i}": "€" * 1000 for i in range(2)}))


def test_custom_data_from_raw_json() -> None:
    body = json.dumps(custom(customData={"plan": "pro", "items": [1, 2.5, None, {"x": True}]}))
    result = valid(body.encode())
    assert result.custom_data == {"plan": "pro", "items": [1, 2.5, None, {"x": True}]}


# --- other hostile inputs ---------------------------------------------------------------------


def test_ignored_keys_are_never_inspected() -> None:
    hostile = page(extra=nested_lists(50_000), other={i: object() for i in range(10)})
    valid(hostile)


def test_mapping_that_raises_becomes_internal_error() -> None:
    class Exploding(dict[str, Any]):
        def get(self, key: object, default: object = None) -> Any:
            raise RuntimeError("boom")

    result = validate_payload(Exploding(page()))
    assert result == Rejection("internal_error", "validator failed with RuntimeError")


def test_rejection_detail_does_not_leak_payload_contents() -> None:
    secret = "SECRET-" + "x" * 200
    payloads = [
        page(type=secret),
        page(url="https://example.com/" + secret + "a" * 3000),
        page(url="ftp://" + secret),
        custom(name=secret * 10),
        custom(customData={"k": secret * 10}),
        custom(customData=secret),
        {"type": "pageView", "url": secret},
        secret * 1000,
        ("{" + secret).encode(),
    ]
    for payload in payloads:
        result = validate_payload(payload)
        assert isinstance(result, Rejection)
        assert secret[:30] not in result.detail, result


def test_rejection_reasons_are_snake_case() -> None:
    assert all(re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)*", reason) for reason in REJECTION_REASONS)


# --- properties ------------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**60), max_value=2**60),
    st.floats(),
    st.text(max_size=50),
    st.sampled_from(["pageView", "custom", "jsError", URL, "1920", "en-US", "<&>", "\ud800"]),
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=8), children, max_size=6)
    ),
    max_leaves=20,
)


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly ``good``, so that generated payloads often pass; ``bad`` now and then."""
    return st.sampled_from([True] * 5 + [False]).flatmap(lambda ok: good if ok else bad)


url_text = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp")), max_size=15)
hosts = mostly(
    st.sampled_from(
        ["example.com", "Example.COM.", "bücher.de", "[::1]", "127.0.0.1:8000", "a_b.c", "x:80"]
    )
    | st.from_regex(r"[a-z0-9-]{1,10}(\.[a-z0-9-]{1,10}){0,3}(:[0-9]{1,5})?", fullmatch=True),
    st.text(max_size=15),
)
urls = mostly(
    st.builds(
        lambda scheme, userinfo, host, path, query, fragment: (
            f"{scheme}://{userinfo}{host}{path}{query}{fragment}"
        ),
        mostly(st.sampled_from(["http", "https", "HTTPS"]), st.sampled_from(["ftp", "data", ""])),
        st.sampled_from(["", "", "", "user:pw@", "@"]),
        hosts,
        st.sampled_from(["", "/", "/a/b", "/%20", "/ü"]) | url_text.map(lambda t: "/" + t),
        st.sampled_from(["", "?q=1", "?"]) | url_text.map(lambda t: "?" + t),
        st.sampled_from(["", "#", "#top", "#/route?x=1", "#!/r"]) | url_text.map(lambda t: "#" + t),
    ),
    json_values | st.text(max_size=30),
)
payload_fields = st.fixed_dictionaries(
    {"type": mostly(st.sampled_from(["pageView", "custom", "jsError"]), json_values), "url": urls},
    optional={
        "name": mostly(st.text(min_size=1, max_size=110), json_values),
        "referrer": urls,
        "screenWidth": mostly(st.integers(-100, 30_000), json_values),
        "screenHeight": st.integers(-100, 30_000) | st.text(max_size=12) | st.floats(),
        "language": mostly(st.from_regex(r"[a-z]{2}(-[A-Z]{2})?", fullmatch=True), json_values),
        "customData": mostly(
            st.dictionaries(st.text(max_size=8), json_values, max_size=8), json_values
        ),
        "errorMessage": mostly(st.text(min_size=1, max_size=300), json_values),
        "stackTrace": st.text(max_size=200) | json_values,
        "extra": json_values,
    },
)


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(payload_fields)
def test_structured_payloads_never_raise_and_valid_ones_are_bounded(
    payload: dict[str, Any],
) -> None:
    result = check(payload)
    try:
        body = json.dumps(payload, allow_nan=False)
    except (ValueError, TypeError):
        return
    if len(body.encode()) <= MAX_RAW_BYTES and "\\ud" not in body:
        # The same payload as a raw body gives the same answer.
        assert check(body.encode()) == result


@settings(deadline=None)
@given(json_values)
def test_any_json_like_value_never_raises(value: object) -> None:
    check(value)
    check({"type": "custom", "url": URL, "name": "n", "customData": value})
    try:
        body = json.dumps(value)
    except (ValueError, TypeError):
        return
    check(body)


@given(st.binary(max_size=2_000))
def test_any_bytes_never_raise(raw: bytes) -> None:
    check(raw)


@given(st.text(max_size=2_000))
def test_any_text_never_raises(raw: str) -> None:
    check(raw)


@given(st.integers(min_value=0, max_value=3000), st.sampled_from(["[", '{"a":', '[{"a":']))
def test_any_nesting_depth_never_raises(depth: int, opener: str) -> None:
    closer = "".join({"[": "]", "{": "}"}[c] for c in opener if c in "[{")[::-1]
    body = opener * depth + "1" + closer * depth
    check(body)
    check(body[: len(body) // 2])


@given(st.integers(min_value=-(10**6000), max_value=10**6000) | st.floats())
def test_huge_numbers_never_raise(number: int | float) -> None:
    check(page(screenWidth=number, screenHeight=number))
    check(custom(customData={"n": number}))


@given(
    st.dictionaries(
        st.text(max_size=30),
        st.one_of(
            st.text(max_size=1000),
            st.floats(allow_nan=False, allow_infinity=False),
            st.integers(-(2**53) + 1, 2**53 - 1),
        ),
        max_size=50,
    )
)
def test_accepted_custom_data_fits_both_encoders(data: dict[str, Any]) -> None:
    result = check(custom(customData=data))
    if isinstance(result, ValidPayload):
        assert result.custom_data == (data or None)
    else:
        assert result.reason in {"custom_data_too_large", "custom_data_bad_value"}


def test_hosts_from_validated_urls_feed_the_domain_checks() -> None:
    result = valid(page(url="http://LocalHost:3000/dashboard"))
    assert is_localhost(result.host)
    result = valid(page(url="https://Shop.Example.com./cart"))
    assert host_matches_domain(result.host, "https://www.example.com/")
