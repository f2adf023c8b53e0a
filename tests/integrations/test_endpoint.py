"""The framework-neutral endpoint decisions (``integrations/endpoint.py``, pure): what
``precheck`` answers from headers alone, whatever the headers hold; ``/collect``'s
configuration, CORS for the sites' own pages, and its health answer. Each adapter's own file
sends the same requests through its framework."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skopos import ConfigurationError
from skopos.integrations.endpoint import (
    EndpointConfig,
    collect_health,
    collect_precheck,
    content_length,
    origin_host,
    precheck,
)

CONFIG = EndpointConfig()
# str.isdigit() accepts all of these but the last two; int() refuses "²" and reads the rest.
MALFORMED_LENGTHS = ["²", "١٢", "٣", "-1", "+5", "1e3", "12 34", "0x10", "1" * 25, "\x00"]


@pytest.mark.parametrize("value", MALFORMED_LENGTHS)
def test_a_malformed_content_length_is_a_400(value: str) -> None:
    assert content_length({"content-length": value}) == -1
    response = precheck(CONFIG, "POST", {"content-length": value, "content-type": "text/plain"})
    assert response is not None
    assert response.status == 400


def test_content_lengths_that_are_fine() -> None:
    assert content_length({}) is None
    assert content_length({"content-length": ""}) is None
    assert content_length({"content-length": " 16384 "}) == 16384
    assert precheck(CONFIG, "POST", {"content-length": "16384"}) is None
    too_large = precheck(CONFIG, "POST", {"content-length": "16385"})
    assert too_large is not None
    assert too_large.status == 413


@given(
    st.sampled_from(["POST", "OPTIONS", "GET", "", "post"]),
    st.dictionaries(
        st.sampled_from(["content-length", "content-type", "origin"]), st.text(max_size=40)
    ),
)
def test_precheck_never_raises(method: str, headers: dict[str, str]) -> None:
    response = precheck(EndpointConfig(cors_origins=["*"]), method, headers)
    assert response is None or response.status in (204, 400, 405, 413, 415)


SITE_HOSTS = frozenset({"example.com", "www.example.com"})
PREFLIGHT = "OPTIONS"


def allowed(origin: str, config: EndpointConfig | None = None) -> str | None:
    answer = precheck(config or EndpointConfig(), PREFLIGHT, {"origin": origin}, SITE_HOSTS)
    assert answer is not None
    return dict(answer.headers).get("Access-Control-Allow-Origin")


def test_collect_path_is_validated_and_may_be_turned_off() -> None:
    assert EndpointConfig().collect_path == "/collect"
    assert EndpointConfig().health_path == "/collect/health"
    off = EndpointConfig(collect_path=None)
    assert (off.collect_path, off.health_path) == (None, None)
    for bad in ("collect", "", 3):
        with pytest.raises(ConfigurationError, match="collect_path"):
            EndpointConfig(collect_path=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="another endpoint"):
        EndpointConfig(collect_path="/api/event")


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("https://www.Example.com", "www.example.com"),
        ("http://example.com:8080", "example.com"),
        ("https://[2001:db8::1]:443", "2001:db8::1"),
        ("null", None),
        ("file://", None),
        ("https://example.com/path", None),
        ("https://[oops", None),
        ("", None),
    ],
)
def test_origin_host(origin: str, host: str | None) -> None:
    assert origin_host(origin) == host


def test_cors_allows_the_sites_pages_and_configured_origins_only() -> None:
    assert allowed("https://example.com") == "https://example.com"
    assert allowed("https://www.example.com") == "https://www.example.com"
    assert allowed("http://example.com:3000") == "http://example.com:3000"
    for refused in ("https://blog.example.com", "https://example.com.evil.net", "null"):
        assert allowed(refused) is None, refused
    configured = EndpointConfig(cors_origins=["https://shop.example.net"])
    assert allowed("https://shop.example.net", configured) == "https://shop.example.net"
    assert allowed("https://example.com", configured) == "https://example.com"
    # Our own endpoint keeps its rule: configured origins only.
    answer = precheck(EndpointConfig(), PREFLIGHT, {"origin": "https://example.com"})
    assert answer is not None
    assert not any(name.startswith("Access-Control-Allow-Origin") for name, _ in answer.headers)


def test_health_answers_ok_with_the_time_and_is_never_cached() -> None:
    answer = collect_health(EndpointConfig(), {"origin": "https://example.com"}, SITE_HOSTS)
    headers = dict(answer.headers)
    assert answer.status == 200
    assert (headers["Content-Type"], headers["Cache-Control"]) == ("application/json", "no-store")
    assert headers["Access-Control-Allow-Origin"] == "https://example.com"
    body = json.loads(answer.body)
    assert body["status"] == "ok"
    assert abs(body["timestamp"] - time.time() * 1000) < 5_000
    assert int(headers["Content-Length"]) == len(answer.body)


def test_collect_precheck_keeps_precheck_s_rules_and_gives_early_answers_cors() -> None:
    config = EndpointConfig(max_body_bytes=100)
    page = {"origin": "https://example.com"}
    json_post = {**page, "content-type": "application/json", "content-length": "50"}
    assert collect_precheck(config, "POST", json_post, SITE_HOSTS) is None
    for headers, status in (
        ({**json_post, "content-length": "101"}, 413),
        ({**json_post, "content-type": "application/xml"}, 415),
    ):
        answer = collect_precheck(config, "POST", headers, SITE_HOSTS)
        assert answer is not None
        assert answer.status == status
        assert dict(answer.headers)["Access-Control-Allow-Origin"] == "https://example.com"
    for method in ("OPTIONS", "GET"):
        assert collect_precheck(config, method, page, SITE_HOSTS) == precheck(
            config, method, page, SITE_HOSTS
        )
    stranger = {**json_post, "origin": "https://elsewhere.example", "content-length": "101"}
    answer = collect_precheck(config, "POST", stranger, SITE_HOSTS)
    assert answer is not None
    assert answer.headers == []


def test_before_the_sdk_knows_its_sites_any_page_may_post_to_collect() -> None:
    # While PocketBase is unreachable at start the sites' domains are unknown: refusing
    # every origin would make browsers hold back what the worker can judge later.
    answer = precheck(
        EndpointConfig(), PREFLIGHT, {"origin": "https://any.example"}, frozenset("*")
    )
    assert answer is not None
    assert ("Access-Control-Allow-Origin", "https://any.example") in answer.headers
    assert ("Vary", "Origin") in answer.headers
