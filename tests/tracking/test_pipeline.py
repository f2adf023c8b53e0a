"""The pipeline, a tracking call → an activity or a drop reason: its memoised host verdicts and
the blacklist checked on the resolved address (pure logic), then filters and enrichment as they
land in a real PocketBase."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest

from skopos._admin.setup import Website
from skopos._pocketbase.client import PocketBaseClient
from skopos._stats import DropReason
from skopos._tracking.activity import Activity, TrackCall
from skopos._tracking.hosts import (
    host_matches_domain,
    is_localhost,
    normalize_domain,
)
from skopos._tracking.identity import VisitorHasher
from skopos._tracking.ip_rules import IpBlacklist
from skopos._tracking.payload import ValidPayload, validate_payload
from skopos._tracking.pipeline import Expanded, Pipeline
from skopos._tracking.site_rules import SiteRules
from skopos._tracking.snapshot import RequestSnapshot, capture_request
from tests._support.collect_client import (
    batch,
    breadcrumb,
    custom_event,
    encode_message,
    error,
    errors,
    exit_message,
    identify,
)
from tests._support.collect_client import (
    page_view as collect_page_view,
)
from tests._support.host_cases import HOST_MATCHES_DOMAIN, IS_LOCALHOST, NORMALIZE_DOMAIN
from tests._support.pocketbase_server import MakeSdk
from tests._support.tracking_helpers import (
    GOOGLEBOT,
    environ,
    page_view,
    records,
    scope,
    site_sessions,
)

# -- host verdicts: the memo gives the slow path's answers ------------------------------------

# The corpus: the cases of test_hosts.py.
HOSTS = [case[0] for case in IS_LOCALHOST]
HOST_DOMAINS = [case[:2] for case in HOST_MATCHES_DOMAIN]
DOMAINS = [case[0] for case in NORMALIZE_DOMAIN]


def _slow_verdict(host: str, domain: str | None) -> int:
    """What the pipeline decided before the memo, written out."""
    if is_localhost(host):
        return 0
    if domain and not host_matches_domain(host, domain):
        return 2
    return 1


def _pipeline() -> Pipeline:
    return Pipeline(SimpleNamespace(get=lambda tracking_id: None), VisitorHasher(b"s"))  # type: ignore[arg-type]


def test_memoised_host_verdicts_equal_the_slow_path_over_the_corpus() -> None:
    pipeline = _pipeline()
    hosts = [str(host) for host in HOSTS] + [str(host) for host, _ in HOST_DOMAINS]
    domains: list[str | None] = [None, ""]
    for domain in [*DOMAINS, *(domain for _, domain in HOST_DOMAINS)]:
        if isinstance(domain, str):
            domains += [domain, normalize_domain(domain)]  # site rules hold the normalised one
    for _ in range(2):  # cold, then from the memo
        for host in hosts:
            validated = validate_payload({"type": "pageView", "url": f"https://{host}/"})
            candidates = [host] + ([validated.host] if isinstance(validated, ValidPayload) else [])
            for candidate in candidates:
                for domain in domains:
                    expected = _slow_verdict(candidate, domain)
                    assert pipeline._host_verdict(candidate, domain) == expected, (host, domain)


def test_host_verdict_memo_is_bounded() -> None:
    pipeline = _pipeline()
    for number in range(pipeline._host_verdicts.maxsize + 50):
        pipeline._host_verdict(f"h{number}.example.com", "example.com")
    assert len(pipeline._host_verdicts) == pipeline._host_verdicts.maxsize


# -- the IP blacklist, checked on the resolved address ----------------------------------------


def test_blacklist_is_checked_on_the_resolved_address() -> None:
    listed = IpBlacklist(["203.0.113.7", "2001:db8::/32"])
    pipeline = _pipeline()
    for peer, blocked in [
        ("203.0.113.7", True),
        ("::ffff:203.0.113.7", True),
        ("[2001:db8::5]:443", True),
        ("203.0.113.8", False),
        ("not an address", False),
    ]:
        origin = pipeline._origin(RequestSnapshot(peer))
        site = SiteRules("r" * 15, "t", None, False, False, False, listed)
        expected = DropReason.IP_BLACKLISTED if blocked else None
        assert pipeline._blacklist_drop(site, origin) is expected, peer
        empty = SiteRules("r" * 15, "t", None, False, False, False, IpBlacklist(None))
        assert pipeline._blacklist_drop(empty, origin) is None


# -- /collect messages: the same filters, the message's own site --------------------------------

COLLECT_DOMAIN = "example.com"  # the collect client's page (https://example.com/pricing?...)


def _collect_pipeline(**sites: SiteRules) -> Pipeline:
    registry = SimpleNamespace(get=sites.get)
    return Pipeline(registry, VisitorHasher(b"s"), collect_sites=["TRACKING_ID", "OTHER"])  # type: ignore[arg-type]


def _site(tracking_id: str = "TRACKING_ID", **rules: Any) -> SiteRules:
    values: dict[str, Any] = {
        "domain": COLLECT_DOMAIN,
        "is_archived": False,
        "disable_localhost": False,
        "store_raw_ip": False,
        "blacklist": IpBlacklist(None),
        **rules,
    }
    return SiteRules(f"rec{tracking_id.lower():0<12}"[:15], tracking_id, **values)


def _collect(pipeline: Pipeline, message: Any, request: Any = None) -> Expanded | str:
    body = message if isinstance(message, bytes) else encode_message(message)
    call = TrackCall("collect", "TRACKING_ID", capture_request(request or environ("8.8.8.8")), body)
    result = pipeline.prepare(call)
    assert not isinstance(result, Activity)
    return result


def test_a_collect_batch_becomes_activities_of_our_visitor() -> None:
    pipeline = _collect_pipeline(TRACKING_ID=_site())
    message = batch(collect_page_view(), custom_event("signup", {"plan": "pro"}), {"t": "ev"})
    result = _collect(pipeline, message)
    assert isinstance(result, Expanded)
    assert [(a.type, a.path, a.name) for a in result.activities] == [
        ("pageView", "/pricing", None),
        ("custom", "/pricing", "signup"),
    ]
    assert result.left_out == ["invalid:missing_name"]
    page = {"type": "pageView", "url": "https://example.com/"}
    api = pipeline.prepare(
        TrackCall("api", "TRACKING_ID", capture_request(environ("8.8.8.8")), page)
    )
    assert isinstance(api, Activity)
    first = result.activities[0]
    # Our keyed visitor id, as for our own script's request; never the message's vid.
    assert (first.visitor_id, first.visitor_record_id) == (api.visitor_id, api.visitor_record_id)
    other_vid = _collect(pipeline, batch(collect_page_view(), vid="somebody-else"))
    assert isinstance(other_vid, Expanded)
    assert other_vid.activities[0].visitor_id == first.visitor_id
    elsewhere = _collect(pipeline, message, environ("81.2.69.142"))
    assert isinstance(elsewhere, Expanded)
    assert elsewhere.activities[0].visitor_id != first.visitor_id
    # The session's fields from the envelope; the country from the request; times are ours.
    assert (first.screen_width, first.language, first.device_pixel_ratio) == (1920, "en-US", "1.5")
    assert (first.connection_type, first.script_version) == ("4g", "1.3.0")
    assert (first.referrer, first.country) == ("https://www.google.com/", "US")
    assert all(a.at == result.activities[0].at for a in result.activities)
    assert abs(first.at - time.time()) < 60  # the call's time, not the client's ts (2026-01-01)


def test_both_scripts_referrers_are_kept_as_the_traffic_source_sessions_store() -> None:
    # One place (Pipeline._finish) makes a referrer what PocketBase stores, for our script
    # and the official one alike: no query, nothing for the site's own pages.
    pipeline = _collect_pipeline(TRACKING_ID=_site())
    for referrer, kept in [
        ("https://news.example.org/a?token=s3cret#x", "https://news.example.org/a"),
        (f"https://www.{COLLECT_DOMAIN}/pricing?q=1", None),
    ]:
        page = {"type": "pageView", "url": f"https://{COLLECT_DOMAIN}/", "referrer": referrer}
        api = pipeline.prepare(
            TrackCall("api", "TRACKING_ID", capture_request(environ("8.8.8.8")), page)
        )
        assert isinstance(api, Activity)
        collected = _collect(pipeline, batch(collect_page_view(), ref=referrer))
        assert isinstance(collected, Expanded)
        assert api.referrer == collected.activities[0].referrer == kept, referrer


def test_collect_message_types_map_onto_our_activities() -> None:
    pipeline = _collect_pipeline(TRACKING_ID=_site())
    crumbs = [breadcrumb("navigation", "Navigated to /", data={"from": "/a", "to": "/"})]
    errors_result = _collect(pipeline, errors(error("boom", count=4, bc=crumbs), error(None)))
    assert isinstance(errors_result, Expanded)
    [failure] = errors_result.activities
    assert (failure.type, failure.error_message, failure.occurrences) == ("jsError", "boom", 4)
    assert failure.url == "https://example.com/pricing"  # query scrubbed (not allowlisted)
    assert failure.breadcrumbs == [
        {
            "type": "navigation",
            "message": "Navigated to /",
            "timestamp": 1_767_225_600_000,
            "data": {"from": "/a", "to": "/"},
        }
    ]
    assert errors_result.left_out == ["invalid:missing_error_message"]
    exited = _collect(pipeline, exit_message(12.6))
    assert isinstance(exited, Expanded)
    assert [(a.type, a.name, a.data) for a in exited.activities] == [
        ("custom", "exit", {"duration": 13})
    ]
    identified = _collect(pipeline, identify("u1", email="ada@example.com", meta={"plan": "pro"}))
    assert isinstance(identified, Expanded)
    assert [(a.type, a.data) for a in identified.activities] == [
        ("identify", {"userId": "u1", "email": "ada@example.com", "metadata": {"plan": "pro"}})
    ]


def test_collect_messages_go_through_the_site_and_bot_filters() -> None:
    pipeline = _collect_pipeline(
        TRACKING_ID=_site(blacklist=IpBlacklist(["192.0.2.0/24"]), disable_localhost=True),
        OTHER=_site("OTHER", is_archived=True),
    )
    message = batch(collect_page_view())
    assert _collect(pipeline, batch(collect_page_view(), sid="NOT_OURS")) == "site_not_served"
    assert _collect(pipeline, batch(collect_page_view(), sid="OTHER")) == "site_archived"
    assert _collect(pipeline, message, environ("192.0.2.9")) == "ip_blacklisted"
    assert str(_collect(pipeline, message, environ("8.8.8.8", GOOGLEBOT))).startswith("bot:")
    off_domain = batch(collect_page_view(), url="https://evil.example.net/")
    assert _collect(pipeline, off_domain) == "off_domain"
    assert (
        _collect(pipeline, batch(collect_page_view(), url="http://localhost:3000/")) == "localhost"
    )
    assert _collect(pipeline, b'{"_d": "%%%", "_v": 1}') == "invalid:bad_encoding"
    unknown = _collect_pipeline()  # served, but no such website in PocketBase
    assert _collect(unknown, message) == "unknown_site"


# -- against a real PocketBase ----------------------------------------------------------------


@pytest.mark.pocketbase
def test_filters_drop_and_count_without_writing(
    make_sdk: MakeSdk, pb: PocketBaseClient, website: Website
) -> None:
    pb.update_record(
        "websites",
        website.id,
        {
            "ipBlacklist": ["192.0.2.1", "10.20.0.0/16", "2001:db8:bad::/48"],
            "disableLocalhostTracking": True,
        },
    )
    sdk = make_sdk()
    domain = website.domain
    calls = [
        (environ("192.0.2.1"), page_view(domain, "/")),  # exact address
        (environ("10.20.3.4"), page_view(domain, "/")),  # IPv4 range
        (scope("::ffff:10.20.9.9"), page_view(domain, "/")),  # IPv4-mapped IPv6 in the range
        (scope("2001:db8:bad::1"), page_view(domain, "/")),  # IPv6 range
        (environ("198.51.100.1", GOOGLEBOT), page_view(domain, "/")),
        (environ("198.51.100.2", ""), page_view(domain, "/")),
        (environ("198.51.100.3"), page_view("evil.example.com", "/")),
        (environ("198.51.100.4"), page_view(f"{domain}.evil.net", "/")),
        (environ("198.51.100.5"), {"type": "pageView", "url": "http://localhost:3000/"}),
    ]
    for request, payload in calls:
        sdk.track_api_event(request, payload)
    assert sdk.flush(timeout=10)
    assert site_sessions(pb, website.id) == []
    assert records(pb, "visitors", website=website.id) == []
    dropped = sdk.stats().dropped
    assert dropped.pop("ip_blacklisted") == 4
    assert dropped.pop("off_domain") == 2
    assert dropped.pop("localhost") == 1
    assert sum(dropped.values()) == 2
    assert all(reason.startswith("bot:") for reason in dropped)


@pytest.mark.pocketbase
def test_raw_ip_and_country_only_when_the_site_and_proxy_allow(
    make_sdk: MakeSdk, pb: PocketBaseClient, website: Website
) -> None:
    pb.update_record("websites", website.id, {"storeRawIp": True})
    sdk = make_sdk(trusted_proxies="cloudflare")
    via_cloudflare = environ("173.245.48.10")  # a Cloudflare edge address
    via_cloudflare.update(HTTP_CF_CONNECTING_IP="198.51.100.77", HTTP_CF_IPCOUNTRY="de")
    forged = environ("198.51.100.88")  # talks to us directly, pretends to be behind Cloudflare
    forged.update(HTTP_CF_CONNECTING_IP="192.0.2.1", HTTP_CF_IPCOUNTRY="FR")
    sdk.track_api_event(via_cloudflare, page_view(website.domain, "/cf"))
    sdk.track_api_event(forged, page_view(website.domain, "/direct"))
    assert sdk.flush(timeout=10)
    sessions = {s["entryPath"]: s for s in site_sessions(pb, website.id)}
    assert (sessions["/cf"]["ipAddress"], sessions["/cf"]["country"]) == ("198.51.100.77", "DE")
    assert (sessions["/direct"]["ipAddress"], sessions["/direct"]["country"]) == (
        "198.51.100.88",
        "",
    )
    assert sdk.stats().spoofed_forwarding_headers == 1


@pytest.mark.pocketbase
def test_countries_come_from_the_local_lookup_and_stay_empty_for_private_addresses(
    make_sdk: MakeSdk, pb: PocketBaseClient, website: Website
) -> None:
    sdk = make_sdk(trusted_proxies="cloudflare")
    via_cloudflare = environ("173.245.48.10")  # a Cloudflare edge: its country header wins
    via_cloudflare.update(HTTP_CF_CONNECTING_IP="8.8.4.4", HTTP_CF_IPCOUNTRY="CH")
    for request, path in [
        (environ("81.2.69.142"), "/gb"),
        (environ("2001:4860::1"), "/us"),
        (environ("10.1.2.3"), "/private"),
        (via_cloudflare, "/cf"),
    ]:
        sdk.track_api_event(request, page_view(website.domain, path))
    assert sdk.flush(timeout=10)
    countries = {s["entryPath"]: s["country"] for s in site_sessions(pb, website.id)}
    assert countries == {"/gb": "GB", "/us": "US", "/private": "", "/cf": "CH"}


@pytest.mark.pocketbase
def test_identify_stores_name_email_and_phone_as_visitor_fields(
    make_sdk: MakeSdk, pb: PocketBaseClient, website: Website
) -> None:
    sdk = make_sdk()
    request = environ("198.51.100.40")
    traits = {"name": "Ada", "email": "ada@example.com", "phone": "+41 44 000 00 00", "plan": "pro"}
    sdk.identify(request, "user-1", traits)
    assert sdk.flush(timeout=10)
    [visitor] = records(pb, "visitors", website=website.id)
    assert (visitor["userId"], visitor["name"], visitor["email"], visitor["phone"]) == (
        "user-1",
        "Ada",
        "ada@example.com",
        "+41 44 000 00 00",
    )
    assert visitor["metadata"] == {"plan": "pro"}
