"""Hypothesis against the whole SDK: hostile requests and payloads never hurt the host."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skopos import SkoposSDK
from skopos._admin.setup import Website
from skopos._pocketbase.client import PocketBaseClient
from tests._support.pocketbase_server import PocketBaseServer, start_sdk
from tests._support.tracking_helpers import site_events, site_sessions

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


def test_after_fuzzing_the_worker_is_alive_and_records_are_valid(
    fuzz_target: tuple[SkoposSDK, Website, PocketBaseClient],
) -> None:
    sdk, site, pb = fuzz_target
    assert sdk.flush(timeout=30)  # strict: re-raises any internal error of the worker
    stats = sdk.stats()
    assert stats.accepted == stats.written + sum(stats.dropped.values())
    assert "internal_error" not in stats.dropped
    for session in site_sessions(pb, site.id):
        assert session["website"] == site.id
        assert len(session["entryPath"]) <= 2048
    for event in site_events(pb, site.id):
        assert event["type"] in ("pageView", "custom")
        assert event["type"] == "pageView" or 0 < len(event["eventName"]) <= 100
        assert event["path"].startswith("/") or event["type"] == "custom"
