"""Hypothesis against the whole SDK: hostile requests and payloads never hurt the host, our own
script's payloads and the official client script's ``/collect`` bodies alike."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skopos import SkoposSDK
from skopos._admin.setup import Website
from skopos._pocketbase.client import PocketBaseClient
from tests._support.collect_client import obfuscate
from tests._support.pocketbase_server import PocketBaseServer, start_sdk
from tests._support.tracking_helpers import environ, site_events, site_sessions

pytestmark = pytest.mark.pocketbase

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=30,
)
header_text = st.text(max_size=300) | st.sampled_from(
    ["", "\x00", "a" * 5000, "1.2.3.4, ::1, garbage"]
)


def payloads(domain: str) -> st.SearchStrategy[Any]:
    field_values = {
        "type": st.sampled_from(["pageView", "custom", "jsError", "PAGEVIEW", ""]) | json_values,
        "url": st.sampled_from([f"https://{domain}/x", f"https://{domain}", "javascript:x", ""])
        | st.text(max_size=100)
        | json_values,
        "name": st.text(max_size=200) | json_values,
        "referrer": st.text(max_size=100) | json_values,
        "screenWidth": json_values,
        "screenHeight": json_values,
        "language": st.text(max_size=60) | json_values,
        "customData": json_values,
        "errorMessage": st.text(max_size=300) | json_values,
        "stackTrace": st.text(max_size=300) | json_values,
    }
    dicts = st.fixed_dictionaries({}, optional=field_values)
    return dicts | json_values | st.binary(max_size=300) | st.text(max_size=300)


def collect_bodies(site: Website) -> st.SearchStrategy[Any]:
    """``/collect`` bodies: messages of every type with hostile fields, encoded as the script
    does, and malformed ``_d`` values (bad base64, bad UTF-8, bad JSON after the XOR, huge
    arrays, deep objects, characters outside the BMP)."""
    page = f"https://{site.domain}"
    text = st.text(max_size=60) | st.sampled_from(["🙂 naïve", "\ud83d", "a\u2028b", ""])
    url = st.sampled_from([f"{page}/a?b=1", page, f"{page}/#/x", "javascript:x", ""]) | text
    deep: Any = {"d": 1}
    for _ in range(30):
        deep = {"d": deep}
    item = st.fixed_dictionaries(
        {"t": st.sampled_from(["pv", "ev", "out", "dl", "x"]) | json_values},
        optional={
            "p": st.sampled_from(["/a", "/b?c#d", "x"]) | text | json_values,
            "n": text | json_values,
            "d": json_values | st.just(deep),
            "u": url | json_values,
            "f": text | json_values,
        },
    )
    error = st.fixed_dictionaries(
        {"msg": text | json_values},
        optional={
            "stack": text | json_values,
            "count": json_values,
            "bc": st.lists(
                st.fixed_dictionaries({"t": text, "m": text, "ts": json_values, "d": json_values}),
                max_size=12,
            )
            | json_values,
        },
    )
    message = st.fixed_dictionaries(
        {
            "type": st.sampled_from(["batch", "errors", "exit", "identify"]) | json_values,
            "sid": st.just(site.tracking_id) | text | json_values,
            "url": url | json_values,
        },
        optional={
            "events": st.lists(item, max_size=12) | st.lists(item, min_size=101, max_size=150),
            "errors": st.lists(error, max_size=12),
            "dur": json_values,
            "uid": text | json_values,
            "email": text | json_values,
            "meta": json_values | st.just(deep),
            "vid": text | json_values,
            "ssid": text | json_values,
            "ref": url | json_values,
            "sw": json_values,
            "dpr": json_values,
            "cn": text | json_values,
            "lang": text | json_values,
            "tz": text | json_values,
            "ts": json_values,
            "sv": text | json_values,
        },
    )

    finite = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text
    safe = st.recursive(
        finite, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4)
    )
    plausible = st.fixed_dictionaries(
        {
            "type": st.sampled_from(["batch", "errors", "exit", "identify"]),
            "sid": st.just(site.tracking_id),
            "url": st.sampled_from([f"{page}/a?b=1", f"{page}/#/x"]),
            "events": st.lists(
                st.sampled_from([{"t": "pv"}, {"t": "ev", "n": "x"}, {"t": "dl", "u": page}])
                | st.fixed_dictionaries({"t": st.sampled_from(["pv", "ev", "out", "dl", "x"])}),
                min_size=1,
                max_size=8,
            ),
            "errors": st.lists(
                st.fixed_dictionaries({"msg": text}, optional={"count": safe, "bc": safe}),
                min_size=1,
                max_size=4,
            ),
            "dur": st.integers(0, 100) | safe,
            "uid": st.just("u1") | text,
        },
        optional={"meta": safe, "dpr": safe, "sw": safe, "ref": url, "cn": text, "sv": text},
    )

    def encoded(value: Any) -> bytes:
        # json.dumps writes NaN and Infinity, which JSON.parse refuses: bad JSON after the XOR.
        return json.dumps(
            {"_d": obfuscate(json.dumps(value, ensure_ascii=False)), "_v": 1}
        ).encode()

    def wrapped(d: Any, v: Any = 1) -> bytes:
        return json.dumps({"_d": d, "_v": v}).encode()

    return st.one_of(
        plausible.map(encoded),
        message.map(encoded),
        message,  # plain messages are accepted too (here: already parsed)
        message.map(lambda m: json.dumps(m)),
        text.map(wrapped),  # not base64
        st.binary(max_size=200).map(lambda b: wrapped(base64.b64encode(b).decode())),  # not UTF-8
        text.map(lambda t: wrapped(obfuscate(t))),  # not JSON once decoded
        st.builds(wrapped, st.just("e30="), json_values),  # another _v
        json_values.map(lambda v: wrapped(v)),
        st.binary(max_size=300),
    )


def requests() -> st.SearchStrategy[Any]:
    environ = st.fixed_dictionaries(
        {},
        optional={
            "REMOTE_ADDR": header_text | json_values,
            "PATH_INFO": header_text | json_values,
            "HTTP_USER_AGENT": header_text | json_values,
            "HTTP_ACCEPT_LANGUAGE": header_text,
            "HTTP_X_FORWARDED_FOR": header_text,
            "HTTP_FORWARDED": header_text,
        },
    )
    scope = st.fixed_dictionaries(
        {
            "type": st.just("http"),
            "headers": st.lists(
                st.tuples(st.binary(max_size=20), st.binary(max_size=200)), max_size=8
            ),
        },
        optional={
            "client": st.none() | st.tuples(header_text, st.integers()) | json_values,
            "path": json_values,
        },
    )
    return st.none() | environ | scope | json_values


@pytest.fixture(scope="module", params=["memory", "spool"])
def fuzz_target(
    request: pytest.FixtureRequest,
    pocketbase: PocketBaseServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[SkoposSDK, Website, PocketBaseClient]]:
    from skopos._admin.setup import ensure_website

    spool_dir = tmp_path_factory.mktemp("fuzz-spool") if request.param == "spool" else None
    with pocketbase.client() as client:
        site = ensure_website(client, f"fuzz {request.param}", f"{request.param}.fuzz.example.test")
        # strict: an internal error anywhere fails the test
        sdk = start_sdk(pocketbase, site, spool_dir=spool_dir, js_error_batch_interval=0.5)
        yield sdk, site, client
        sdk.shutdown(timeout=10)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_hostile_calls_never_raise_and_only_valid_records_land(
    fuzz_target: tuple[SkoposSDK, Website, PocketBaseClient], data: st.DataObject
) -> None:
    sdk, site, _ = fuzz_target
    request = data.draw(requests())
    sdk.track_api_event(request, data.draw(payloads(site.domain)))
    # Any: hostile calls break the annotations on purpose, as an untyped caller would.
    event_name: Any = data.draw(st.text(max_size=120) | json_values)
    custom_data: Any = data.draw(json_values)
    sdk.track_server_event(request, event_name, custom_data)
    user_id: Any = data.draw(st.text(max_size=300) | json_values)
    traits: Any = data.draw(json_values)
    sdk.identify(request, user_id, traits)
    browser = environ(f"198.51.100.{data.draw(st.integers(1, 20))}")
    sdk.track_collect(data.draw(st.just(browser) | requests()), data.draw(collect_bodies(site)))


def known_hostile_bodies(site: Website) -> list[bytes]:
    """One ``/collect`` body for each way the fuzzing must be seen to count, whatever
    Hypothesis drew (its CI profile draws the same examples on every run, and which ones
    depends on its version): each malformed body, and a kept message with a bad item."""

    def wrapped(d: Any, v: Any = 1) -> bytes:
        return json.dumps({"_d": d, "_v": v}).encode()

    kept_with_a_bad_item = {
        "type": "batch",
        "sid": site.tracking_id,
        "url": f"https://{site.domain}/known",
        "events": [{"t": "pv"}, {"t": "dl"}],
    }
    return [
        wrapped("not base64!"),
        wrapped(base64.b64encode(b"\xff\xfe").decode()),
        wrapped(obfuscate("{not json")),
        wrapped("e30=", 2),
        wrapped(obfuscate(json.dumps(kept_with_a_bad_item))),
    ]


def test_after_fuzzing_the_worker_is_alive_and_records_are_valid(
    fuzz_target: tuple[SkoposSDK, Website, PocketBaseClient],
) -> None:
    sdk, site, pb = fuzz_target
    for body in known_hostile_bodies(site):
        sdk.track_collect(environ("198.51.100.7"), body)
    assert sdk.flush(timeout=30)  # strict: re-raises any internal error of the worker
    stats = sdk.stats()
    assert stats.accepted == stats.written + sum(stats.dropped.values())
    assert "internal_error" not in stats.dropped
    # Malformed /collect bodies were counted, each with its reason.
    for reason in ("bad_encoding", "invalid_utf8", "invalid_json", "unsupported_version"):
        assert stats.dropped.get(f"invalid:{reason}"), reason
    assert sum(stats.dropped_items.values()) > 0  # and the bad parts of kept messages
    for session in site_sessions(pb, site.id):
        assert session["website"] == site.id
        assert len(session["entryPath"]) <= 2048
    for event in site_events(pb, site.id):
        assert event["type"] in ("pageView", "custom", "click")
        assert event["type"] == "pageView" or 0 < len(event["eventName"]) <= 100
        assert event["path"].startswith("/") or event["type"] == "custom"
