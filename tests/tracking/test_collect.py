"""The /collect decoder: the ``_d`` codec, every field's bounds and rejection reasons, the
mapping onto the dashboard's records, and fuzzing with hostile bodies."""

from __future__ import annotations

import base64
import contextlib
import json
import math
import re
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skopos._tracking.collect import (
    COLLECT_REJECTION_REASONS,
    MAX_BATCH_EVENTS,
    MAX_BREADCRUMBS,
    MAX_ERRORS,
    CollectMessage,
    CollectRejection,
    decode_collect,
)
from skopos._tracking.collect_codec import OBFUSCATION_KEY, decode_body, xor_code_units
from skopos._tracking.collect_message import (
    Breadcrumb,
    CollectBatch,
    CollectError,
    CollectErrors,
    CollectExit,
    CollectIdentify,
    CustomEventItem,
    DownloadItem,
    OutboundItem,
    PageViewItem,
)
from skopos._tracking.collect_records import (
    CollectEvent,
    CollectJsError,
    CollectVisitor,
    collect_records,
)
from skopos._tracking.payload import MAX_RAW_BYTES, REJECTION_REASONS
from tests._support.collect_client import (
    KEY,
    PAGE_URL,
    SITE_ID,
    batch,
    breadcrumb,
    custom_event,
    download,
    encode_message,
    envelope,
    error,
    errors,
    exit_message,
    identify,
    json_stringify,
    obfuscate,
    outbound,
    page_view,
)

# --- helpers ---------------------------------------------------------------------------------

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def plain(message: dict[str, Any]) -> bytes:
    """The same message sent unencoded (also accepted)."""
    return json.dumps(message).encode()


def accepted(raw: object) -> CollectMessage:
    result = decode_collect(raw)
    assert isinstance(result, CollectMessage), result
    assert_within_bounds(result)
    return result


def rejected(raw: object, reason: str) -> CollectRejection:
    result = decode_collect(raw)
    assert isinstance(result, CollectRejection), result
    assert result.reason == reason, result
    assert_good_rejection(result)
    return result


def dropped_reasons(raw: object) -> list[str]:
    body = accepted(raw).body
    assert isinstance(body, (CollectBatch, CollectErrors))
    return [rejection.reason for rejection in body.dropped]


def batch_events(*items: Any, **fields: Any) -> tuple[Any, ...]:
    body = accepted(encode_message(batch(*items, **fields))).body
    assert isinstance(body, CollectBatch)
    return body.events


def first_error(item: dict[str, Any]) -> CollectError:
    body = accepted(encode_message(errors(item))).body
    assert isinstance(body, CollectErrors)
    assert len(body.errors) == 1, body
    return body.errors[0]


def identity(**fields: Any) -> CollectIdentify | CollectRejection:
    result = decode_collect(encode_message(identify("u-1", **fields)))
    if isinstance(result, CollectRejection):
        return result
    assert isinstance(result.body, CollectIdentify)
    return result.body


def assert_good_rejection(rejection: CollectRejection) -> None:
    assert rejection.reason in COLLECT_REJECTION_REASONS
    assert rejection.reason != "internal_error", rejection
    assert isinstance(rejection.detail, str)
    assert 0 < len(rejection.detail) <= 160


def assert_url(url: str) -> None:
    assert 0 < len(url) <= 2048
    assert url.lower().startswith(("http://", "https://"))
    assert not _UNSAFE.search(url)
    assert not any(char.isspace() for char in url)


def assert_path(path: str) -> None:
    assert path.startswith("/")
    assert "?" not in path
    assert len(path) <= 2048
    if "#" in path:
        assert path.partition("#")[2].startswith(("/", "!/"))


def assert_text(text: str | None, limit: int, *, lines: bool = False) -> None:
    if text is None:
        return
    assert 1 <= len(text) <= limit
    assert text == text.strip()
    assert not _UNSAFE.search(text.replace("\n", "").replace("\t", "") if lines else text)


def assert_data(data: dict[str, Any] | None) -> None:
    if data is None:
        return
    assert type(data) is dict
    assert data
    keys = 0
    stack: list[tuple[object, int]] = [(data, 1)]
    while stack:
        item, depth = stack.pop()
        if type(item) is dict:
            assert depth <= 5
            keys += len(item)
            assert all(type(key) is str and len(key) <= 100 for key in item)
            stack.extend((value, depth + 1) for value in item.values())
        elif type(item) is list:
            assert depth <= 5
            stack.extend((value, depth + 1) for value in item)
        elif type(item) is str:
            assert len(item) <= 1000
            item.encode("utf-8")  # no lone surrogate
        elif type(item) is int:
            assert abs(item) <= 2**53 - 1
        elif type(item) is float:
            assert math.isfinite(item)
        else:
            assert item is None or type(item) is bool, item
    assert keys <= 50
    assert len(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()) <= 8192


def assert_within_bounds(m: CollectMessage) -> None:
    assert m.type in ("batch", "errors", "exit", "identify")
    assert re.fullmatch(r"[A-Za-z0-9._:~-]{1,128}", m.site_id)
    assert_url(m.url)
    assert m.host
    assert m.host == m.host.lower()
    assert m.host.isascii()
    assert len(m.host) <= 253
    assert_path(m.path)
    for client_id in (m.visitor_id, m.session_id):
        assert client_id is None or re.fullmatch(r"[A-Za-z0-9._:~-]{1,128}", client_id)
    if m.referrer is not None:
        assert_url(m.referrer)
    for size in (m.screen_width, m.screen_height, m.viewport_width, m.viewport_height):
        assert size is None or (type(size) is int and 0 <= size <= 20_000)
    assert m.device_pixel_ratio is None or 0 < m.device_pixel_ratio <= 20
    assert m.connection_type is None or re.fullmatch(r"[A-Za-z0-9_-]{1,32}", m.connection_type)
    assert m.language is None or re.fullmatch(r"[A-Za-z0-9\-_,;.=* ]{1,35}", m.language)
    assert m.time_zone is None or re.fullmatch(r"[A-Za-z0-9_+/-]{1,64}", m.time_zone)
    assert m.client_time is None or 946_684_800_000 <= m.client_time <= 4_102_444_800_000
    assert m.script_version is None or re.fullmatch(r"[A-Za-z0-9.+_-]{1,32}", m.script_version)
    body = m.body
    if isinstance(body, CollectBatch):
        assert m.type == "batch"
        assert len(body.events) + len(body.dropped) <= MAX_BATCH_EVENTS
        for event in body.events:
            if isinstance(event, PageViewItem):
                assert_path(event.path)
            elif isinstance(event, CustomEventItem):
                assert_text(event.name, 100)
                assert_data(event.data)
            elif isinstance(event, OutboundItem):
                assert_url(event.url)
            else:
                assert isinstance(event, DownloadItem)
                assert_url(event.url)
                assert_text(event.filename, 255)
        for rejection in body.dropped:
            assert_good_rejection(rejection)
    elif isinstance(body, CollectErrors):
        assert m.type == "errors"
        assert len(body.errors) + len(body.dropped) <= MAX_ERRORS
        for item in body.errors:
            assert item.message
            assert_text(item.message, 1000, lines=True)
            assert_text(item.stack_trace, 8000, lines=True)
            assert_text(item.source, 2048)
            for position in (item.line, item.column):
                assert position is None or 0 <= position <= 10_000_000
            assert 1 <= item.count <= 1000
            assert item.breadcrumbs is None or 1 <= len(item.breadcrumbs) <= MAX_BREADCRUMBS
            for crumb in item.breadcrumbs or ():
                assert_text(crumb.type, 50)
                assert_text(crumb.message, 500)
                ts = crumb.timestamp
                assert ts is None or 946_684_800_000 <= ts <= 4_102_444_800_000
                assert_data(crumb.data)
        for rejection in body.dropped:
            assert_good_rejection(rejection)
    elif isinstance(body, CollectExit):
        assert m.type == "exit"
        assert type(body.duration) is int
        assert 0 <= body.duration <= 86_400
        assert body.reason is None or re.fullmatch(r"[A-Za-z0-9_-]{1,32}", body.reason)
    else:
        assert isinstance(body, CollectIdentify)
        assert m.type == "identify"
        assert_text(body.user_id, 255)
        assert_text(body.name, 255)
        assert_text(body.email, 254)
        assert body.email is None or "@" in body.email
        assert_text(body.phone, 50)
        assert_data(body.metadata)
    # The mapping accepts every valid message.
    collect_records(m)


def check(raw: object) -> CollectMessage | CollectRejection:
    """The fuzz invariant: a bounded message or a known, well-formed rejection; no raise."""
    result = decode_collect(raw)
    if isinstance(result, CollectMessage):
        assert_within_bounds(result)
    else:
        assert isinstance(result, CollectRejection), result
        assert_good_rejection(result)
    return result


def body_with_d(encoded: object, version: object = 1) -> bytes:
    return json.dumps({"_d": encoded, "_v": version}).encode()


# --- documentation ---------------------------------------------------------------------------


def test_reasons_are_snake_case_and_include_the_payload_reasons() -> None:
    assert REJECTION_REASONS <= COLLECT_REJECTION_REASONS
    assert all(re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)*", r) for r in COLLECT_REJECTION_REASONS)


# --- the _d codec ----------------------------------------------------------------------------


def test_key_is_the_reference_key() -> None:
    assert OBFUSCATION_KEY == KEY == "sk0p0s_4n4lyt1cs_0bf_k3y_2026"


def test_xor_known_answers() -> None:
    # '{' ^ 's' = 0x08, '}' ^ 'k' = 0x16; the key wraps after 29 units.
    assert xor_code_units("{}") == "\x08\x16"
    assert xor_code_units("\0" * 31) == OBFUSCATION_KEY + OBFUSCATION_KEY[:2]
    # U+1F600 is D83D DE00; D83D ^ 's' = D84E, DE00 ^ 'k' = DE6B: the pair of U+23A6B.
    assert xor_code_units("😀") == "\U00023a6b"
    # One unit before it shifts it onto the key's next two units ('k' ^ D83D, '0' ^ DE00).
    assert xor_code_units("a😀")[1:] == chr(0x10000 + ((0xD83D ^ 0x6B) - 0xD800 << 10) + 0x230)


@pytest.mark.parametrize(
    "message",
    [
        {"type": "batch", "events": [{"t": "pv", "p": "/"}]},
        {"t": "ev", "n": "bars_click", "d": {"bar": "Q3 🚀", "value": 42, "tags": ["a", "ü"]}},
        {"type": "exit", "dur": 13, "reason": "leave"},
    ],
    ids=["page-view", "custom-event", "exit"],
)
def test_reference_examples_round_trip(message: dict[str, Any]) -> None:
    assert decode_body(encode_message(message)) == message


@pytest.mark.parametrize("offset", range(60))
def test_non_bmp_characters_at_every_key_position(offset: int) -> None:
    """A surrogate pair may straddle the key's wrap-around; each unit is XORed on its own."""
    name = "x" * offset + "🎉𝄞😀"
    message = batch(custom_event(name, {"emoji": "👩‍💻" + "€" * offset}))
    assert decode_body(encode_message(message)) == message
    (event,) = batch_events(custom_event(name, {"emoji": "👩‍💻"}))
    assert event == CustomEventItem(name, {"emoji": "👩‍💻"})


def test_surrogate_pair_written_as_two_python_code_points_is_one_character() -> None:
    """JavaScript sees "\\ud83d\\ude00" as one emoji; so does the client, so does the decoder."""
    assert decode_body(encode_message({"n": "\ud83d\ude00"})) == {"n": "😀"}


def test_lone_surrogates_arrive_as_json_escapes_and_are_handled_per_field() -> None:
    lone = "\ud800"
    assert "\\ud800" in json_stringify({"n": lone})
    assert decode_body(encode_message({"n": lone})) == {"n": lone}
    # Text fields lose them, as payload text does.
    assert batch_events(custom_event(f"a{lone}b")) == (CustomEventItem("ab", None),)
    crumb = first_error(error(f"boom{lone}", bc=[breadcrumb(f"c{lone}", "m")])).breadcrumbs
    assert crumb is not None
    assert crumb[0].type == "c"
    identified = identity(name=f"Zoë{lone}")
    assert isinstance(identified, CollectIdentify)
    assert identified.name == "Zoë"
    # Custom data refuses them (the writer could not encode them): the item is dropped.
    assert dropped_reasons(encode_message(batch(custom_event("e", {"k": lone})))) == [
        "custom_data_bad_value"
    ]
    # URLs refuse them.
    rejected(encode_message(batch(page_view(), url=f"https://example.com/{lone}")), "bad_url")
    assert batch_events(page_view(f"/a{lone}")) == (PageViewItem("/pricing"),)


def test_surrogates_encoded_in_utf8_are_invalid_utf8() -> None:
    """CESU-8 (a surrogate pair as two 3-byte sequences) is not what browsers send."""
    cesu = b"{}" + b"\xed\xa0\xbd\xed\xb8\x80"
    rejected(body_with_d(base64.b64encode(cesu).decode()), "invalid_utf8")


def test_plain_messages_are_accepted_in_every_form() -> None:
    message = batch(page_view("/a"), custom_event("signup", {"plan": "pro"}))
    expected = accepted(encode_message(message))
    assert accepted(plain(message)) == expected
    assert accepted(plain(message).decode()) == expected
    assert accepted(message) == expected
    assert accepted(json.loads(encode_message(message))) == expected
    assert accepted(bytearray(encode_message(message))) == expected
    assert accepted(memoryview(encode_message(message))) == expected


def test_d_takes_precedence_over_plain_fields() -> None:
    body = json.loads(encode_message(exit_message(5)))
    body.update(batch(page_view()))
    assert isinstance(accepted(body).body, CollectExit)


@pytest.mark.parametrize(
    ("encoded", "version", "reason"),
    [
        ("not base64!", 1, "bad_encoding"),
        ("YWJj", 1, "invalid_json"),  # "abc" XORed: not JSON
        ("YWJjZA", 1, "bad_encoding"),  # padding missing
        ("YWJj\nZA==", 1, "bad_encoding"),  # whitespace
        ("YW Jj", 1, "bad_encoding"),
        ("YWJj-_==", 1, "bad_encoding"),  # URL-safe alphabet
        ("ÿÿÿÿ", 1, "bad_encoding"),  # non-ASCII
        ("", 1, "invalid_json"),
        (None, 1, "bad_encoding"),
        (42, 1, "bad_encoding"),
        (["YWJj"], 1, "bad_encoding"),
        ({"a": 1}, 1, "bad_encoding"),
        ("YWJj", None, "bad_encoding"),
        ("YWJj", 2, "unsupported_version"),
        ("YWJj", 0, "unsupported_version"),
        ("YWJj", "1", "unsupported_version"),
        ("YWJj", 1.0, "unsupported_version"),
        ("YWJj", True, "unsupported_version"),
        (base64.b64encode(b"\xff\xfe\xfd").decode(), 1, "invalid_utf8"),
        (base64.b64encode(b'{"type": "exit\xc3"}').decode(), 1, "invalid_utf8"),
        (obfuscate("{not json"), 1, "invalid_json"),
        (obfuscate('{"type": "exit"} trailing'), 1, "invalid_json"),
        (obfuscate('{"dur": NaN}'), 1, "invalid_json"),
        (obfuscate('{"dur": Infinity}'), 1, "invalid_json"),
        (obfuscate('{"dur": 1e999}'), 1, "invalid_json"),
        (obfuscate('{"dur": ' + "9" * 5000 + "}"), 1, "invalid_json"),
        (obfuscate("[1, 2]"), 1, "not_object"),
        (obfuscate('"batch"'), 1, "not_object"),
        (obfuscate("null"), 1, "not_object"),
        (obfuscate("[" * 21 + "]" * 21), 1, "json_too_deep"),
        (obfuscate('{"a":' * 1500 + "1" + "}" * 1500), 1, "json_too_deep"),
        (obfuscate("{}"), 1, "bad_message_type"),
    ],
)
def test_d_rejections(encoded: object, version: object, reason: str) -> None:
    body = {"_d": encoded} if version is None else {"_d": encoded, "_v": version}
    rejected(json.dumps(body).encode(), reason)
    rejected(body, reason)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "invalid_json"),
        (b"\xff{}", "invalid_utf8"),
        (b"{not json", "invalid_json"),
        (b"[]", "not_object"),
        (None, "not_object"),
        (42, "not_object"),
        (["type", "batch"], "not_object"),
        (b"[" * 40 + b"]" * 40, "json_too_deep"),
    ],
)
def test_outer_body_rejections(raw: object, reason: str) -> None:
    rejected(raw, reason)


def test_body_size_is_checked_before_any_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("decoded an oversized body")

    message = batch(custom_event("e", {"pad": "x" * 1000}))
    body = encode_message(message)
    padded = body[:-1] + b',"pad":"' + b"x" * (MAX_RAW_BYTES - len(body) - 9) + b'"}'
    assert len(padded) == MAX_RAW_BYTES
    accepted(padded)
    monkeypatch.setattr(base64, "b64decode", forbidden)
    rejected(padded[:-2] + b'x"}', "too_large")
    rejected((padded[:-2] + b'x"}').decode(), "too_large")
    rejected({"_d": "A" * (MAX_RAW_BYTES + 4), "_v": 1}, "too_large")


# --- the envelope ----------------------------------------------------------------------------


@pytest.mark.parametrize("message_type", [None, "", "pageView", "BATCH", "event", 1, ["batch"]])
def test_bad_message_type(message_type: object) -> None:
    rejected(encode_message(batch(page_view(), type=message_type)), "bad_message_type")


def test_missing_message_type() -> None:
    message = batch(page_view())
    del message["type"]
    rejected(encode_message(message), "bad_message_type")


@pytest.mark.parametrize(
    ("sid", "expected"),
    [
        ("TRACKING_ID", "TRACKING_ID"),
        (" abc123 ", "abc123"),
        ("a" * 128, "a" * 128),
        ("site.example:1~x-y_z", "site.example:1~x-y_z"),
    ],
)
def test_site_id(sid: str, expected: str) -> None:
    assert accepted(encode_message(exit_message(1, sid=sid))).site_id == expected


@pytest.mark.parametrize(
    "sid", [None, "", "   ", "a" * 129, "a b", "abc\x00", "<script>", "ü", 123, ["abc"], True]
)
def test_bad_site_id(sid: object) -> None:
    rejected(encode_message(exit_message(1, sid=sid)), "bad_site_id")


def test_missing_site_id() -> None:
    message = exit_message(1)
    del message["sid"]
    rejected(encode_message(message), "bad_site_id")


@pytest.mark.parametrize(
    ("url", "host", "path"),
    [
        ("https://Example.COM/a/b?x=1", "example.com", "/a/b"),
        ("http://example.com", "example.com", "/"),
        ("https://example.com/app/#/users/42?tab=1", "example.com", "/app/#/users/42"),
        ("https://example.com/#!/r", "example.com", "/#!/r"),
        ("https://example.com/docs#install", "example.com", "/docs"),
        ("https://xn--bcher-kva.de:8443/", "xn--bcher-kva.de", "/"),
        ("http://[::1]:3000/x", "::1", "/x"),
    ],
)
def test_page_url(url: str, host: str, path: str) -> None:
    message = accepted(encode_message(exit_message(1, url=url)))
    assert (message.url, message.host, message.path) == (url, host, path)


def test_page_url_credentials_are_removed() -> None:
    message = accepted(encode_message(exit_message(1, url="https://u:p@example.com/a")))
    assert message.url == "https://example.com/a"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        (None, "bad_url"),
        ("", "bad_url"),
        ("/relative", "bad_url"),
        ("ftp://example.com/", "bad_url"),
        ("javascript:alert(1)", "bad_url"),
        ("https://exa mple.com/", "bad_url"),
        ("https:///nohost", "bad_url"),
        (42, "bad_url"),
        ("https://example.com/" + "a" * 2048, "url_too_long"),
    ],
)
def test_bad_page_url(url: object, reason: str) -> None:
    rejected(encode_message(exit_message(1, url=url)), reason)


def test_missing_page_url() -> None:
    message = exit_message(1)
    del message["url"]
    rejected(encode_message(message), "bad_url")


_OPTIONAL_ENVELOPE: list[tuple[str, str, object, object]] = [
    ("vid", "visitor_id", "v_abc-123", "v_abc-123"),
    (
        "vid",
        "visitor_id",
        " 5f0c1d2e-aaaa-4bbb-8ccc-123456789abc ",
        "5f0c1d2e-aaaa-4bbb-8ccc-123456789abc",
    ),
    ("vid", "visitor_id", "x" * 129, None),
    ("vid", "visitor_id", "a b", None),
    ("vid", "visitor_id", 42, None),
    ("vid", "visitor_id", "", None),
    ("ssid", "session_id", "s_1", "s_1"),
    ("ssid", "session_id", "<img>", None),
    (
        "ref",
        "referrer",
        "https://u:p@www.google.com/search?q=x",
        "https://www.google.com/search?q=x",
    ),
    ("ref", "referrer", "", None),
    ("ref", "referrer", "android-app://com.google", None),
    ("ref", "referrer", 7, None),
    ("sw", "screen_width", 1920, 1920),
    ("sw", "screen_width", 1920.6, 1921),
    ("sw", "screen_width", -4, 0),
    ("sw", "screen_width", 10**9, 20_000),
    ("sw", "screen_width", "wide", None),
    ("sh", "screen_height", True, None),
    ("vw", "viewport_width", 1280, 1280),
    ("vw", "viewport_width", "1280", 1280),
    ("vh", "viewport_height", 720, 720),
    ("vh", "viewport_height", None, None),
    ("dpr", "device_pixel_ratio", 1, 1.0),
    ("dpr", "device_pixel_ratio", 2.625, 2.625),
    ("dpr", "device_pixel_ratio", 1.100000023841858, 1.1),
    ("dpr", "device_pixel_ratio", 20, 20.0),
    ("dpr", "device_pixel_ratio", 20.5, None),
    ("dpr", "device_pixel_ratio", 0, None),
    ("dpr", "device_pixel_ratio", 0.0001, None),
    ("dpr", "device_pixel_ratio", -1, None),
    ("dpr", "device_pixel_ratio", "2", None),
    ("dpr", "device_pixel_ratio", True, None),
    ("dpr", "device_pixel_ratio", 10**400, None),
    ("cn", "connection_type", "4g", "4g"),
    ("cn", "connection_type", "slow-2g", "slow-2g"),
    ("cn", "connection_type", "wi fi", None),
    ("cn", "connection_type", "x" * 33, None),
    ("cn", "connection_type", {"type": "wifi"}, None),
    ("lang", "language", "de-CH", "de-CH"),
    ("lang", "language", "<b>", None),
    ("lang", "language", "x" * 36, None),
    ("tz", "time_zone", "America/Argentina/Buenos_Aires", "America/Argentina/Buenos_Aires"),
    ("tz", "time_zone", "Etc/GMT+3", "Etc/GMT+3"),
    ("tz", "time_zone", "Europe/Berlin; drop", None),
    ("tz", "time_zone", "x" * 65, None),
    ("ts", "client_time", 1_767_225_600_000, 1_767_225_600_000),
    ("ts", "client_time", 1_767_225_600_000.7, 1_767_225_600_001),
    ("ts", "client_time", 946_684_800_000, 946_684_800_000),
    ("ts", "client_time", 946_684_799_999, None),
    ("ts", "client_time", 4_102_444_800_001, None),
    ("ts", "client_time", 1_767_225_600, None),  # seconds, not ms
    ("ts", "client_time", "1767225600000", None),
    ("ts", "client_time", 10**4000, None),
    ("sv", "script_version", "1.3.0", "1.3.0"),
    ("sv", "script_version", "1.3.0-beta+5", "1.3.0-beta+5"),
    ("sv", "script_version", "1.3 0", None),
    ("sv", "script_version", 1.3, None),
]


@pytest.mark.parametrize(("key", "attribute", "value", "expected"), _OPTIONAL_ENVELOPE)
def test_optional_envelope_fields(
    key: str, attribute: str, value: object, expected: object
) -> None:
    message = exit_message(1)
    message[key] = value
    result = accepted(message)  # a dict may hold what JSON cannot (huge ints, NaN)
    assert getattr(result, attribute) == expected
    if not (isinstance(value, int) and abs(value) > 2**64):
        assert accepted(encode_message(message)) == result


@pytest.mark.parametrize(
    "key", ["vid", "ssid", "ref", "sw", "sh", "vw", "vh", "dpr", "cn", "lang", "tz", "ts", "sv"]
)
def test_optional_envelope_fields_may_be_absent(key: str) -> None:
    message = exit_message(1)
    del message[key]
    assert accepted(encode_message(message)).body == CollectExit(1, "leave")


def test_non_finite_numbers_in_a_parsed_mapping_become_none() -> None:
    result = accepted(exit_message(1, dpr=math.nan, ts=math.inf, sw=math.nan))
    assert (result.device_pixel_ratio, result.client_time, result.screen_width) == (None,) * 3


def test_unknown_fields_are_ignored() -> None:
    message = batch(page_view(), extra={"deep": [[[1]]]}, _v=7, events_count=99)
    message["events"][0]["unknown"] = "x"
    expected = accepted(encode_message(batch(page_view())))
    assert accepted(encode_message(message)) == expected


# --- batch -----------------------------------------------------------------------------------


def test_batch_keeps_order_and_every_item_type() -> None:
    events = batch_events(
        page_view("/"),
        custom_event("bars_click", {"bar": 3}),
        outbound("https://u:p@other.example/x?y=1"),
        download("report.pdf", "https://example.com/files/report.pdf"),
        page_view(),
    )
    assert events == (
        PageViewItem("/"),
        CustomEventItem("bars_click", {"bar": 3}),
        OutboundItem("https://other.example/x?y=1"),
        DownloadItem("https://example.com/files/report.pdf", "report.pdf"),
        PageViewItem("/pricing"),
    )


@pytest.mark.parametrize(
    ("events", "reason"),
    [(None, "bad_events"), ("pv", "bad_events"), ({"t": "pv"}, "bad_events"), ([], "empty_batch")],
)
def test_bad_events_list(events: object, reason: str) -> None:
    rejected(encode_message(envelope("batch", events=events)), reason)


def test_missing_events_list() -> None:
    rejected(encode_message(envelope("batch")), "bad_events")


def test_batch_size_limit_is_inclusive() -> None:
    assert len(batch_events(*[page_view()] * MAX_BATCH_EVENTS)) == MAX_BATCH_EVENTS
    rejected(encode_message(batch(*[page_view()] * (MAX_BATCH_EVENTS + 1))), "too_many_events")
    rejected(batch(*[page_view()] * 1_000_000), "too_many_events")


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        ("/", "/"),
        ("/a/b?x=1", "/a/b"),
        ("/app/#/users/42?tab=2", "/app/#/users/42"),
        ("/docs#install", "/docs"),
        ("//evil.example/x", "//evil.example/x"),
        ("/%E2%82%AC", "/%E2%82%AC"),
        ("/ü", "/%C3%BC"),  # percent-encoded, as browsers send it
        (None, "/pricing"),
        ("", "/pricing"),
        ("relative", "/pricing"),
        ("https://other.example/x", "/pricing"),
        ("/a b", "/pricing"),
        ("/a\x00", "/pricing"),
        ("/" + "a" * 3000, "/pricing"),
        (42, "/pricing"),
        (["/"], "/pricing"),
    ],
)
def test_page_view_path(p: object, expected: str) -> None:
    assert batch_events({"t": "pv", "p": p}) == (PageViewItem(expected),)


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ({"t": "ev"}, "missing_name"),
        ({"t": "ev", "n": ""}, "missing_name"),
        ({"t": "ev", "n": " \x07 "}, "missing_name"),
        ({"t": "ev", "n": 5}, "missing_name"),
        ({"t": "ev", "n": "x" * 101}, "name_too_long"),
        ({"t": "ev", "n": "e", "d": "text"}, "custom_data_not_object"),
        ({"t": "ev", "n": "e", "d": [1]}, "custom_data_not_object"),
        ({"t": "ev", "n": "e", "d": {"k": "x" * 1001}}, "custom_data_string_too_long"),
        ({"t": "ev", "n": "e", "d": {f"k{i}": i for i in range(51)}}, "custom_data_too_many_keys"),
        ({"t": "ev", "n": "e", "d": {"a": {"b": {"c": {"d": {"e": {}}}}}}}, "custom_data_too_deep"),
        (
            {"t": "ev", "n": "e", "d": {f"k{i}": "x" * 900 for i in range(10)}},
            "custom_data_too_large",
        ),
        ({"t": "ev", "n": "e", "d": {"n": 2**53}}, "custom_data_bad_value"),
        ({"t": "out"}, "bad_url"),
        ({"t": "out", "u": "mailto:a@b.c"}, "bad_url"),
        ({"t": "out", "u": "https://example.com/" + "a" * 2048}, "url_too_long"),
        ({"t": "dl", "f": "a.pdf"}, "bad_url"),
        ({"t": "dl", "f": "a.pdf", "u": "file:///etc/passwd"}, "bad_url"),
        ({"t": "click"}, "bad_event_type"),
        ({"t": None}, "bad_event_type"),
        ({}, "bad_event_type"),
        ({"t": "PV"}, "bad_event_type"),
        ("pv", "bad_item"),
        (["t", "pv"], "bad_item"),
        (None, "bad_item"),
    ],
)
def test_bad_batch_item_is_dropped_alone(item: object, reason: str) -> None:
    message = encode_message(batch(page_view("/a"), item, page_view("/b")))
    assert dropped_reasons(message) == [reason]
    assert batch_events(page_view("/a"), item, page_view("/b")) == (
        PageViewItem("/a"),
        PageViewItem("/b"),
    )


def test_batch_of_only_bad_items_is_kept_with_its_reasons() -> None:
    body = accepted(encode_message(batch({"t": "ev"}, {"t": "x"}))).body
    assert isinstance(body, CollectBatch)
    assert body.events == ()
    assert dropped_reasons(encode_message(batch({"t": "ev"}, {"t": "x"}))) == [
        "missing_name",
        "bad_event_type",
    ]


@pytest.mark.parametrize(
    ("name", "expected"),
    [(" buy ", "buy"), ("a\u202eb", "ab"), ("x" * 100, "x" * 100), ("🎉 launch", "🎉 launch")],
)
def test_custom_event_name(name: str, expected: str) -> None:
    assert batch_events(custom_event(name)) == (CustomEventItem(expected, None),)


@pytest.mark.parametrize(
    ("data", "expected"),
    [(None, None), ({}, None), ({"a": [1, {"b": None}]}, {"a": [1, {"b": None}]})],
)
def test_custom_event_data(data: object, expected: dict[str, Any] | None) -> None:
    assert batch_events({"t": "ev", "n": "e", "d": data}) == (CustomEventItem("e", expected),)


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("report.pdf", "report.pdf"),
        (" a\x00b.zip ", "ab.zip"),
        ("x" * 255, "x" * 255),
        ("x" * 256, None),
        ("", None),
        (None, None),
        (42, None),
    ],
)
def test_download_filename(filename: object, expected: str | None) -> None:
    item = {"t": "dl", "f": filename, "u": "https://example.com/f"}
    assert batch_events(item) == (DownloadItem("https://example.com/f", expected),)


# --- errors ----------------------------------------------------------------------------------


def test_error_fields() -> None:
    item = error(
        "TypeError: x is undefined",
        stack="TypeError: x is undefined\n    at f (https://example.com/app.js:1:2)",
        count=3,
        bc=[
            breadcrumb("navigation", "Navigated to /", data={"from": "/a", "to": "/"}),
            breadcrumb("click", "button#buy"),
        ],
    )
    assert first_error(item) == CollectError(
        message="TypeError: x is undefined",
        stack_trace="TypeError: x is undefined\n    at f (https://example.com/app.js:1:2)",
        source="https://example.com/static/app.js",
        line=42,
        column=13,
        count=3,
        breadcrumbs=(
            Breadcrumb(
                "navigation", "Navigated to /", 1_767_225_600_000, {"from": "/a", "to": "/"}
            ),
            Breadcrumb("click", "button#buy", 1_767_225_600_000, None),
        ),
    )


@pytest.mark.parametrize(
    ("errors_value", "reason"),
    [
        (None, "bad_errors"),
        ([], "bad_errors"),
        ("boom", "bad_errors"),
        ({"msg": "x"}, "bad_errors"),
    ],
)
def test_bad_errors_list(errors_value: object, reason: str) -> None:
    rejected(encode_message(envelope("errors", errors=errors_value)), reason)


def test_error_count_limit_is_inclusive() -> None:
    body = accepted(encode_message(errors(*[error("e")] * MAX_ERRORS))).body
    assert isinstance(body, CollectErrors)
    assert len(body.errors) == MAX_ERRORS
    rejected(encode_message(errors(*[error("e")] * (MAX_ERRORS + 1))), "too_many_errors")


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ({"stack": "at f"}, "missing_error_message"),
        ({"msg": ""}, "missing_error_message"),
        ({"msg": " \n\x00 "}, "missing_error_message"),
        ({"msg": 42}, "missing_error_message"),
        ("boom", "bad_item"),
        (None, "bad_item"),
    ],
)
def test_bad_error_is_dropped_alone(item: object, reason: str) -> None:
    message = encode_message(errors(error("kept"), item))
    assert dropped_reasons(message) == [reason]
    body = accepted(message).body
    assert isinstance(body, CollectErrors)
    assert [e.message for e in body.errors] == ["kept"]


@pytest.mark.parametrize(
    ("field", "value", "attribute", "expected"),
    [
        ("msg", "  x\r\ny\u202e  ", "message", "x\ny"),
        ("msg", "m" * 5000, "message", "m" * 1000),
        ("stack", "s" * 9000, "stack_trace", "s" * 8000),
        ("stack", 42, "stack_trace", None),
        ("stack", "  ", "stack_trace", None),
        ("src", "inline", "source", "inline"),
        ("src", "chrome-extension://abc/x.js", "source", "chrome-extension://abc/x.js"),
        ("src", "x" * 2049, "source", None),
        ("src", ["a"], "source", None),
        ("line", 0, "line", 0),
        ("line", 10_000_000, "line", 10_000_000),
        ("line", 10_000_001, "line", None),
        ("line", -1, "line", None),
        ("line", "42", "line", None),
        ("col", 7.4, "column", 7),
        ("col", True, "column", None),
        ("count", 1, "count", 1),
        ("count", 999.6, "count", 1000),
        ("count", 5000, "count", 1000),
        ("count", 10**30, "count", 1000),
        ("count", 0.4, "count", 1),
        ("count", 0, "count", 1),
        ("count", -3, "count", 1),
        ("count", "3", "count", 1),
        ("count", None, "count", 1),
    ],
)
def test_error_optional_fields(field: str, value: object, attribute: str, expected: object) -> None:
    item: dict[str, Any] = {"msg": "boom", field: value} if field != "msg" else {field: value}
    assert getattr(first_error(item), attribute) == expected


@pytest.mark.parametrize(
    ("crumbs", "expected"),
    [
        (None, None),
        ([], None),
        ("navigation", None),
        ([breadcrumb("click", "b")] * (MAX_BREADCRUMBS + 1), None),
        (
            [breadcrumb("click", "b")] * MAX_BREADCRUMBS,
            (Breadcrumb("click", "b", 1_767_225_600_000, None),) * 10,
        ),
        (["x", {"m": "no type"}, {"t": ""}, {"t": "x" * 51}], None),
        ([{"t": "t", "m": "m" * 600}], (Breadcrumb("t", "m" * 500, None, None),)),
        ([{"t": "t", "m": 5, "ts": 12, "d": "data"}], (Breadcrumb("t", None, None, None),)),
        ([{"t": "t", "d": {"k": "x" * 2000}}], (Breadcrumb("t", None, None, None),)),
        (
            [{"t": " console\x00 ", "m": "line1\nline2", "ts": 1_767_225_600_000.4}],
            (Breadcrumb("console", "line1line2", 1_767_225_600_000, None),),
        ),
    ],
)
def test_breadcrumbs(crumbs: object, expected: object) -> None:
    assert first_error({"msg": "boom", "bc": crumbs}).breadcrumbs == expected


# --- exit and identify -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dur", "expected"),
    [
        (13, 13),
        (0, 0),
        (12.4, 12),
        (12.5, 12),
        (0.6, 1),
        (86_400, 86_400),
        (10**7, 86_400),
        (1e300, 86_400),
        (10**30, 86_400),
    ],
)
def test_exit_duration(dur: float, expected: int) -> None:
    assert accepted(exit_message(dur)).body == CollectExit(expected, "leave")
    assert accepted(encode_message(exit_message(dur))).body == CollectExit(expected, "leave")


@pytest.mark.parametrize("dur", [None, -1, -0.5, "13", True, [13], {"s": 13}, math.nan, math.inf])
def test_bad_exit_duration(dur: object) -> None:
    rejected(exit_message(dur), "bad_duration")


def test_missing_exit_duration() -> None:
    message = exit_message(1)
    del message["dur"]
    rejected(encode_message(message), "bad_duration")


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("leave", "leave"),
        ("visibility_hidden", "visibility_hidden"),
        ("a b", None),
        (5, None),
        ("x" * 33, None),
    ],
)
def test_exit_reason(reason: object, expected: str | None) -> None:
    assert accepted(exit_message(5, reason=reason)).body == CollectExit(5, expected)


def test_identify_fields() -> None:
    body = identity(
        name=" Ada Lovelace ",
        email="ada@example.com",
        phone="+44 20 7946 0000",
        meta={"plan": "pro"},
    )
    assert body == CollectIdentify(
        "u-1", "Ada Lovelace", "ada@example.com", "+44 20 7946 0000", {"plan": "pro"}
    )


@pytest.mark.parametrize(
    ("uid", "expected"),
    [
        ("u-1", "u-1"),
        (" 42 ", "42"),
        (42, "42"),
        (-7, "-7"),
        ("x" * 255, "x" * 255),
        ("ü👩‍💻", "ü👩‍💻"),
    ],
)
def test_user_id(uid: object, expected: str) -> None:
    body = accepted(encode_message(identify(uid))).body
    assert isinstance(body, CollectIdentify)
    assert body.user_id == expected


@pytest.mark.parametrize(
    "uid", [None, "", "  ", "\x00", "x" * 256, True, 1.5, 10**20, ["u"], {"id": 1}]
)
def test_bad_user_id(uid: object) -> None:
    rejected(encode_message(identify(uid)), "bad_user_id")


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("name", "n" * 300, "n" * 255),
        ("name", "\x00", None),
        ("name", 42, None),
        ("email", "not-an-email", None),
        ("email", "a@b@c", None),
        ("email", "a b@c.d", None),
        ("email", "x" * 250 + "@b.cd", None),
        ("email", " ADA@Example.com ", "ADA@Example.com"),
        ("phone", "p" * 50, "p" * 50),
        ("phone", "p" * 51, None),
        ("phone", 5551234, None),
    ],
)
def test_identify_optional_fields(field: str, value: object, expected: str | None) -> None:
    body = identity(**{field: value})
    assert isinstance(body, CollectIdentify)
    assert getattr(body, field) == expected


@pytest.mark.parametrize(
    ("meta", "reason"),
    [
        ("pro", "custom_data_not_object"),
        ({"k": "x" * 1001}, "custom_data_string_too_long"),
        ({"a": {"b": {"c": {"d": {"e": {}}}}}}, "custom_data_too_deep"),
    ],
)
def test_bad_identify_metadata_rejects_the_message(meta: object, reason: str) -> None:
    result = identity(meta=meta)
    assert isinstance(result, CollectRejection)
    assert result.reason == reason


def test_rejection_detail_does_not_leak_message_contents() -> None:
    secret = "SECRET-" + "x" * 200
    messages: list[object] = [
        batch(page_view(), type=secret),
        exit_message(1, sid=secret),
        exit_message(1, url="https://example.com/" + secret + "a" * 3000),
        exit_message(1, url="ftp://" + secret),
        exit_message(secret),
        identify(secret * 10),
        identify("u", meta={"k": secret * 10}),
        envelope("batch", events=secret),
        {"_d": secret, "_v": 1},
        {"_d": obfuscate("{" + secret), "_v": 1},
        secret * 100,
    ]
    for message in messages:
        for raw in (message, json.dumps(message).encode()):
            result = decode_collect(raw)
            assert isinstance(result, CollectRejection)
            assert secret[:30] not in result.detail, result
    body = accepted(encode_message(batch(custom_event(secret * 10), outbound(secret)))).body
    assert isinstance(body, CollectBatch)
    assert all(secret[:30] not in rejection.detail for rejection in body.dropped)


def test_a_mapping_that_raises_becomes_internal_error() -> None:
    class Exploding(dict[str, Any]):
        def get(self, key: object, default: object = None) -> Any:
            raise RuntimeError("boom")

    result = decode_collect(Exploding(exit_message(1)))
    assert result == CollectRejection("internal_error", "validator failed with RuntimeError")
    result = decode_collect(Exploding({"_d": "e30=", "_v": 1}))
    assert result == CollectRejection("internal_error", "decoder failed with RuntimeError")


# --- round trips through the test client -----------------------------------------------------


def test_round_trip_batch() -> None:
    message = batch(
        page_view("/"),
        custom_event("bars_click", {"bar": "Q3 🚀", "value": 42.5, "tags": ["a", None, True]}),
        outbound("https://other.example/"),
        download("r.pdf", "https://example.com/r.pdf"),
    )
    assert decode_body(encode_message(message)) == message
    result = accepted(encode_message(message))
    assert result == CollectMessage(
        type="batch",
        site_id=SITE_ID,
        url=PAGE_URL,
        host="example.com",
        path="/pricing",
        body=CollectBatch(
            (
                PageViewItem("/"),
                CustomEventItem(
                    "bars_click", {"bar": "Q3 🚀", "value": 42.5, "tags": ["a", None, True]}
                ),
                OutboundItem("https://other.example/"),
                DownloadItem("https://example.com/r.pdf", "r.pdf"),
            )
        ),
        visitor_id="v_m5x2k9q1w8",
        session_id="s_m5x2l0a7c3",
        referrer="https://www.google.com/",
        screen_width=1920,
        screen_height=1080,
        viewport_width=1280,
        viewport_height=720,
        device_pixel_ratio=1.5,
        connection_type="4g",
        language="en-US",
        time_zone="Europe/Berlin",
        client_time=1_767_225_600_000,
        script_version="1.3.0",
    )


def test_round_trip_errors() -> None:
    message = errors(
        error(
            "Uncaught 💥 boom",
            stack="Error: 💥\n at a (https://example.com/a.js:1:1)",
            count=2,
            bc=[breadcrumb("navigation", "Navigated to /", data={"from": "/a", "to": "/"})],
        ),
        error("second"),
    )
    assert decode_body(encode_message(message)) == message
    body = accepted(encode_message(message)).body
    assert isinstance(body, CollectErrors)
    assert [(e.message, e.count) for e in body.errors] == [("Uncaught 💥 boom", 2), ("second", 1)]
    assert body.errors[0].breadcrumbs == (
        Breadcrumb("navigation", "Navigated to /", 1_767_225_600_000, {"from": "/a", "to": "/"}),
    )


def test_round_trip_exit() -> None:
    message = exit_message(13, reason="leave")
    assert decode_body(encode_message(message)) == message
    assert accepted(encode_message(message)).body == CollectExit(13, "leave")


def test_round_trip_identify() -> None:
    message = identify(
        "user-😀",
        name="Zoë 👩‍💻",
        email="zoe@example.com",
        phone="+1 555 0100",
        meta={"plan": "🚀"},
    )
    assert decode_body(encode_message(message)) == message
    assert accepted(encode_message(message)).body == CollectIdentify(
        "user-😀", "Zoë 👩‍💻", "zoe@example.com", "+1 555 0100", {"plan": "🚀"}
    )


# --- the mapping onto the dashboard's records ------------------------------------------------


def test_mapping_of_batch_items() -> None:
    message = accepted(
        encode_message(
            batch(
                page_view("/"),
                page_view(),
                custom_event("bars_click", {"bar": 3}),
                custom_event("no_data"),
                outbound("https://other.example/x"),
                download("r.pdf", "https://example.com/r.pdf"),
                {"t": "dl", "u": "https://example.com/r2.pdf"},
                url="https://example.com/app/#/board?x=1",
            )
        )
    )
    records = collect_records(message)
    assert [event.fields() for event in records.events] == [
        {"type": "pageView", "path": "/"},
        {"type": "pageView", "path": "/app/#/board"},
        {
            "type": "custom",
            "path": "/app/#/board",
            "eventName": "bars_click",
            "eventData": {"bar": 3},
        },
        {"type": "custom", "path": "/app/#/board", "eventName": "no_data"},
        {
            "type": "click",
            "path": "/app/#/board",
            "eventName": "outbound",
            "eventData": {"url": "https://other.example/x"},
        },
        {
            "type": "click",
            "path": "/app/#/board",
            "eventName": "download",
            "eventData": {"filename": "r.pdf", "url": "https://example.com/r.pdf"},
        },
        {
            "type": "click",
            "path": "/app/#/board",
            "eventName": "download",
            "eventData": {"url": "https://example.com/r2.pdf"},
        },
    ]
    assert records.js_errors == ()
    assert records.visitor is None


def test_mapping_of_exit() -> None:
    records = collect_records(accepted(encode_message(exit_message(13))))
    assert records.events == (CollectEvent("custom", "/pricing", "exit", {"duration": 13}),)
    assert records.events[0].fields() == {
        "type": "custom",
        "path": "/pricing",
        "eventName": "exit",
        "eventData": {"duration": 13},
    }


def test_mapping_of_errors() -> None:
    message = errors(
        error(
            "boom",
            stack="Error: boom\n at f (a.js:1:2)",
            count=4,
            bc=[
                breadcrumb("navigation", "Navigated to /", data={"from": "/a", "to": "/"}),
                breadcrumb("click", "b"),
            ],
        ),
        error("plain", src=None, line=None, col=None),
    )
    records = collect_records(accepted(encode_message(message)))
    assert records.events == ()
    assert records.visitor is None
    assert records.js_errors == (
        CollectJsError(
            message="boom",
            stack_trace="Error: boom\n at f (a.js:1:2)",
            url=PAGE_URL,
            count=4,
            breadcrumbs=(
                {
                    "type": "navigation",
                    "message": "Navigated to /",
                    "timestamp": 1_767_225_600_000,
                    "data": {"from": "/a", "to": "/"},
                },
                {"type": "click", "message": "b", "timestamp": 1_767_225_600_000, "data": None},
            ),
            source="https://example.com/static/app.js",
            line=42,
            column=13,
        ),
        CollectJsError(message="plain", stack_trace=None, url=PAGE_URL, count=1),
    )
    assert records.js_errors[0].fields() == {
        "errorMessage": "boom",
        "stackTrace": "Error: boom\n at f (a.js:1:2)",
        "url": PAGE_URL,
        "breadcrumbs": list(records.js_errors[0].breadcrumbs or ()),
    }
    assert records.js_errors[1].fields() == {
        "errorMessage": "plain",
        "stackTrace": "",
        "url": PAGE_URL,
    }


def test_mapping_of_identify() -> None:
    message = identify(
        "u-1", name="Ada", email="ada@example.com", phone="+1 555", meta={"plan": "pro"}
    )
    records = collect_records(accepted(encode_message(message)))
    assert records.events == ()
    assert records.js_errors == ()
    assert records.visitor == CollectVisitor(
        "u-1", "Ada", "ada@example.com", "+1 555", {"plan": "pro"}
    )
    assert records.visitor.fields() == {
        "userId": "u-1",
        "name": "Ada",
        "email": "ada@example.com",
        "phone": "+1 555",
        "metadata": {"plan": "pro"},
    }
    bare = collect_records(accepted(encode_message(identify("u-2"))))
    assert bare.visitor is not None
    assert bare.visitor.fields() == {"userId": "u-2"}


def test_mapping_of_session_fields() -> None:
    message = exit_message(1, url="https://example.com/shop/?utm=x#/cart?step=2", dpr=2, sw=1440.2)
    session = collect_records(accepted(encode_message(message))).session
    assert session.fields() == {
        "entryPath": "/shop/#/cart",
        "exitPath": "/shop/#/cart",
        "referrer": "https://www.google.com/",
        "screenWidth": "1440",
        "screenHeight": "1080",
        "language": "en-US",
        "devicePixelRatio": "2",
        "connectionType": "4g",
        "scriptVersion": "1.3.0",
    }
    for key in ("ref", "sw", "sh", "lang", "dpr", "cn", "sv"):
        del message[key]
    session = collect_records(accepted(encode_message(message))).session
    assert session.fields() == {"entryPath": "/shop/#/cart", "exitPath": "/shop/#/cart"}
    assert (
        collect_records(accepted(encode_message(exit_message(1, dpr=1.25)))).session.fields()[
            "devicePixelRatio"
        ]
        == "1.25"
    )


# --- fuzzing ---------------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(["pv", "ev", "out", "dl", "batch", "exit", PAGE_URL, "/", "\ud800", "🎉"]),
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=6), children, max_size=5)
    ),
    max_leaves=15,
)


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.sampled_from([True] * 4 + [False]).flatmap(lambda ok: good if ok else bad)


data_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=6)
batch_items = st.one_of(
    st.builds(
        page_view, st.none() | st.sampled_from(["/", "/a?b", "/#/r", "x"]) | st.text(max_size=20)
    ),
    st.builds(
        custom_event,
        mostly(st.text(min_size=1, max_size=30), st.text(max_size=120)),
        st.none() | data_objects,
    ),
    st.builds(outbound, mostly(st.just("https://o.example/x"), st.text(max_size=30))),
    st.builds(
        download,
        st.text(max_size=30),
        mostly(st.just("https://example.com/f.zip"), st.text(max_size=30)),
    ),
    st.dictionaries(st.sampled_from(["t", "p", "n", "d", "u", "f"]), json_values, max_size=4),
    json_values,
)
error_items = st.one_of(
    st.builds(
        error,
        mostly(st.text(min_size=1, max_size=60), st.text(max_size=5)),
        stack=st.none() | st.text(max_size=80),
        src=st.none() | st.text(max_size=20),
        line=st.none() | st.integers(-5, 2 * 10**7),
        col=st.none() | st.integers(-5, 2 * 10**7),
        count=st.integers(-5, 10**6),
        bc=st.none()
        | st.lists(
            st.builds(
                breadcrumb,
                st.text(max_size=10),
                st.text(max_size=20),
                st.integers(0, 5 * 10**12),
                st.none() | data_objects,
            ),
            max_size=12,
        ),
    ),
    st.dictionaries(
        st.sampled_from(["msg", "stack", "src", "line", "col", "count", "bc"]),
        json_values,
        max_size=5,
    ),
    json_values,
)
envelope_fields = st.fixed_dictionaries(
    {
        "sid": mostly(st.sampled_from([SITE_ID, " abc "]), json_values),
        "url": mostly(
            st.sampled_from([PAGE_URL, "https://a.example/#/r?x", "http://[::1]:8000/"]),
            json_values,
        ),
    },
    optional={
        "vid": json_values,
        "ssid": json_values,
        "ref": st.sampled_from(["", "https://g.example/", "ftp://x"]) | json_values,
        "sw": json_values,
        "dpr": st.floats() | json_values,
        "cn": json_values,
        "lang": json_values,
        "tz": json_values,
        "ts": st.integers() | json_values,
        "sv": json_values,
    },
)
messages = st.one_of(
    st.builds(
        lambda fields, items: {**fields, "type": "batch", "events": items},
        envelope_fields,
        mostly(st.lists(batch_items, max_size=12), json_values),
    ),
    st.builds(
        lambda fields, items: {**fields, "type": "errors", "errors": items},
        envelope_fields,
        mostly(st.lists(error_items, max_size=12), json_values),
    ),
    st.builds(
        lambda fields, dur, reason: {**fields, "type": "exit", "dur": dur, "reason": reason},
        envelope_fields,
        st.integers() | st.floats() | json_values,
        json_values,
    ),
    st.builds(
        lambda fields, uid, traits: {**fields, "type": "identify", "uid": uid, **traits},
        envelope_fields,
        mostly(st.text(max_size=20), json_values),
        st.fixed_dictionaries(
            {},
            optional={
                "name": json_values,
                "email": json_values,
                "phone": json_values,
                "meta": mostly(data_objects, json_values),
            },
        ),
    ),
    st.dictionaries(st.text(max_size=6), json_values, max_size=6),
)


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None, max_examples=300)
@given(messages)
def test_arbitrary_messages_never_raise_and_valid_ones_are_bounded(message: dict[str, Any]) -> None:
    result = check(message)
    try:
        body = encode_message(message)
    except (ValueError, TypeError):  # NaN: JSON cannot carry it
        return
    if len(body) <= MAX_RAW_BYTES:
        # The same message, obfuscated or plain, gives the same answer.
        assert check(body) == result
        assert check(json_stringify(message)) == result


@settings(deadline=None)
@given(st.binary(max_size=3_000))
def test_any_bytes_in_d_never_raise(data: bytes) -> None:
    """Mostly bad UTF-8 after base64."""
    check(body_with_d(base64.b64encode(data).decode()))


@settings(deadline=None)
@given(st.text(max_size=3_000))
def test_any_text_in_d_never_raises(text: str) -> None:
    """Mostly bad JSON after the XOR."""
    check(body_with_d(obfuscate(text)))


@settings(deadline=None)
@given(
    st.text(
        alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ \n!é",
        max_size=500,
    )
)
def test_any_string_as_d_never_raises(encoded: str) -> None:
    """Mostly bad base64."""
    check(body_with_d(encoded))
    check({"_d": encoded, "_v": 1})


@settings(deadline=None)
@given(json_values, json_values)
def test_any_json_as_d_or_v_never_raises(encoded: object, version: object) -> None:
    check({"_d": encoded, "_v": version})
    with contextlib.suppress(ValueError):  # a lone surrogate or NaN cannot be JSON bytes
        check(json.dumps({"_d": encoded, "_v": version}).encode())


@settings(deadline=None)
@given(st.binary(max_size=2_000))
def test_any_body_never_raises(raw: bytes) -> None:
    check(raw)


@settings(deadline=None)
@given(
    st.integers(0, 5_000),
    st.sampled_from(["[", '{"a":', '{"type":"batch","sid":"s","url":"https://a.b/","events":[']),
)
def test_deep_nesting_in_d_never_raises(depth: int, opener: str) -> None:
    closer = "".join({"[": "]", "{": "}"}[c] for c in opener if c in "[{")[::-1]
    text = opener + "[" * depth + "1" + "]" * depth + closer
    for body in (body_with_d(obfuscate(text)), body_with_d(obfuscate(text[: len(text) // 2]))):
        if len(body) <= MAX_RAW_BYTES:
            check(body)
        else:
            rejected(body, "too_large")


@settings(deadline=None)
@given(
    st.integers(0, 3_000),
    st.sampled_from(
        ['{"t":"pv"}', "1", '{"t":"ev","n":"e","d":{"k":[1,2]}}', '{"msg":"m","bc":[]}']
    ),
)
def test_huge_arrays_in_d_never_raise(count: int, item: str) -> None:
    for key, kind in (("events", "batch"), ("errors", "errors")):
        text = (
            f'{{"type":"{kind}","sid":"s","url":"https://a.b/","{key}":['
            + ",".join([item] * count)
            + "]}"
        )
        body = body_with_d(obfuscate(text))
        result = check(body)
        if len(body) > MAX_RAW_BYTES:
            assert isinstance(result, CollectRejection)
            assert result.reason == "too_large"


@settings(deadline=None)
@given(st.integers(min_value=-(10**4000), max_value=10**4000) | st.floats())
def test_huge_numbers_never_raise(number: float) -> None:
    for message in (
        exit_message(number),
        exit_message(1, sw=number, dpr=number, ts=number),
        errors(error("e", line=number, col=number, count=number)),
        identify(number),
        batch(custom_event("e", {"n": number})),
    ):
        check(message)
        try:
            body = encode_message(message)
        except ValueError:
            continue
        check(body)


# --- cost ------------------------------------------------------------------------------------


def _hostile_bodies() -> dict[str, bytes]:
    """Bodies of (nearly) MAX_RAW_BYTES that make the decoder work hardest."""

    def fill(make: Any, low: int = 0, high: int = 20_000) -> bytes:
        """The largest make(n) within MAX_RAW_BYTES (binary search)."""
        while low < high:
            middle = (low + high + 1) // 2
            if len(make(middle)) <= MAX_RAW_BYTES:
                low = middle
            else:
                high = middle - 1
        body: bytes = make(low)
        return body

    def events(n: int, item: dict[str, Any]) -> bytes:
        return encode_message(batch(*[item] * n))

    def plain_batch(items: list[Any]) -> bytes:
        return json.dumps(batch(*items)).encode()

    escaped = json.dumps('{"a":' * 19 + "1" + "}" * 19)  # a string full of \" escapes
    nested: Any = 1
    for _ in range(14):  # within MAX_JSON_DEPTH, too deep for custom data
        nested = {"a": nested}
    return {
        "garbage_base64": fill(lambda n: body_with_d(base64.b64encode(b"\x01" * n).decode())),
        "json_error_at_end": fill(lambda n: body_with_d(obfuscate('{"x":"' + "y" * n + '"'))),
        "max_batch_of_custom_data": fill(
            lambda n: events(
                MAX_BATCH_EVENTS, custom_event("e", {"k": "<&>" * n, "n": [1.5e300, -2]})
            )
        ),
        "max_batch_of_pv_paths": fill(
            lambda n: events(MAX_BATCH_EVENTS, page_view("/" + "a" * n + "#/r?x"))
        ),
        "too_many_events": fill(lambda n: events(n, {"t": "pv"})),
        "errors_with_breadcrumbs": fill(
            lambda n: encode_message(
                errors(
                    *[
                        error(
                            "m" * n,
                            stack="s\n" * n,
                            bc=[breadcrumb("t", "m" * n, data={"k": "v" * min(n, 900)})] * 10,
                        )
                    ]
                    * 10
                )
            )
        ),
        "control_characters": fill(
            lambda n: encode_message(batch(*[custom_event("\x07" * n)] * 10))
        ),
        "deep_nesting": fill(lambda n: body_with_d(obfuscate("[" * n + "]" * n))),
        "deep_custom_data": fill(
            lambda n: encode_message(batch(*[custom_event("e" * n, nested)] * MAX_BATCH_EVENTS)),
            high=100,
        ),
        "long_number": fill(lambda n: encode_message(exit_message(10**n)), high=4_200),
        "escaped_quotes_plain": fill(lambda n: plain_batch([escaped] * n)),
    }


def test_hostile_16_kib_bodies_are_decoded_in_bounded_time() -> None:
    """Generous bound for noisy CI; real numbers (timeit) are in the change's notes."""
    for name, body in _hostile_bodies().items():
        assert len(body) <= MAX_RAW_BYTES, name
        check(body)
        best = min(_elapsed(body) for _ in range(3))
        assert best < 0.050, f"{name}: {best * 1000:.1f} ms"


def _elapsed(body: bytes) -> float:
    start = time.perf_counter()
    decode_collect(body)
    return time.perf_counter() - start
