"""Privacy that can be proven: what is stored, what can be recomputed, whom the SDK talks to."""

from __future__ import annotations

import hashlib
import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from skopos import SkoposSDK
from skopos._admin.setup import Website
from skopos._pocketbase.client import PocketBaseClient
from skopos._tracking.activity import TrackCall
from skopos._tracking.identity import VisitorHasher
from skopos._tracking.salt import peppered
from skopos._tracking.snapshot import capture_request
from tests._support.pocketbase_server import MakeSdk, PocketBaseServer
from tests._support.tracking_helpers import (
    CHROME,
    FIREFOX,
    custom,
    environ,
    js_error,
    page_view,
    records,
    site_events,
    site_sessions,
)

pytestmark = pytest.mark.pocketbase

CLIENT_IP = "81.2.69.142"


def everything_stored(pb: PocketBaseClient, website: Website) -> str:
    """Every record the site's traffic wrote, as one JSON text."""
    return json.dumps(
        {
            "visitors": records(pb, "visitors", website=website.id),
            "sessions": site_sessions(pb, website.id),
            "events": site_events(pb, website.id),
            "js_errors": records(pb, "js_errors", website=website.id),
        }
    )


def send_a_visit(sdk: Any, domain: str) -> None:
    request = environ(CLIENT_IP)
    sdk.track_api_event(request, page_view(domain, "/"))
    sdk.track_api_event(request, custom(domain, "/", "signup", {"plan": "pro"}))
    sdk.track_api_event(request, js_error(domain, "boom"))
    sdk.track_server_event(request, "paid", {"amount": 3})


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every address a socket of this process connects to while the test runs."""
    seen: list[tuple[str, int]] = []
    original = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            seen.append((str(address[0]), int(address[1])))
        return original(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return seen


def test_the_sdk_connects_to_nothing_but_pocketbase(
    pocketbase: PocketBaseServer,
    website: Website,
    make_sdk: MakeSdk,
    connections: list[tuple[str, int]],
) -> None:
    sdk = make_sdk(realtime=True, trusted_proxies="cloudflare")
    send_a_visit(sdk, website.domain)
    assert sdk.flush(timeout=10)
    sdk.shutdown(timeout=10)
    port = int(pocketbase.url.rsplit(":", 1)[1])
    assert connections, "the guard saw no connection at all"
    assert set(connections) == {("127.0.0.1", port)}


def test_no_record_and_no_spool_line_holds_the_client_ip_unless_the_site_asks(
    pb: PocketBaseClient, website: Website, make_sdk: MakeSdk, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    sdk = make_sdk(spool_dir=str(spool))
    send_a_visit(sdk, website.domain)
    assert sdk.flush(timeout=10)
    journaled = b"".join(path.read_bytes() for path in spool.glob("*") if path.is_file())
    sdk.shutdown(timeout=10)
    assert CLIENT_IP not in everything_stored(pb, website)
    assert CLIENT_IP.encode() not in journaled

    pb.update_record("websites", website.id, {"storeRawIp": True})
    sdk = make_sdk()
    sdk.track_api_event(environ(CLIENT_IP, FIREFOX), page_view(website.domain, "/again"))
    assert sdk.flush(timeout=10)
    sessions = {s["entryPath"]: s for s in site_sessions(pb, website.id)}
    assert sessions["/again"]["ipAddress"] == CLIENT_IP  # stored because the site asks


def test_the_visitor_id_is_no_unkeyed_hash_of_what_the_request_shows(
    pb: PocketBaseClient, website: Website, make_sdk: MakeSdk
) -> None:
    sdk = make_sdk()
    sdk.track_api_event(environ(CLIENT_IP), page_view(website.domain, "/"))
    assert sdk.flush(timeout=10)
    [visitor] = records(pb, "visitors", website=website.id)
    stored = visitor["visitorId"]
    guesses = set()
    for site in (website.id, website.tracking_id, website.domain):
        for separator in ("", "|", ":", "\x1f", "-"):
            text = separator.join((site, CLIENT_IP, CHROME))
            for digest in (hashlib.sha256, hashlib.md5, hashlib.sha1):
                full = digest(text.encode()).hexdigest()
                guesses.update({full, full[:32], full[:16]})
    assert stored not in guesses


# -- identifier modes, consent signals, scrubbing, campaigns -----------------------------------

DAY = 86400.0
# A day to come: real pruning (which keeps today's and yesterday's salts) leaves it alone.
FUTURE_NOON = (int(time.time() // DAY) + 400) * DAY + 12 * 3600


def track_at(sdk: SkoposSDK, at: float, request: dict[str, Any], payload: dict[str, Any]) -> None:
    """A tracking call stamped ``at`` (a day to come), queued as the request path would."""
    call = TrackCall("api", sdk.options.site_id, capture_request(request), payload)
    call.at = at
    assert sdk._runtime.queue.put(call)


def test_daily_ids_differ_across_days_and_a_session_goes_on_over_midnight(
    pb: PocketBaseClient, website: Website, make_sdk: MakeSdk
) -> None:
    sdk = make_sdk(visitor_id="daily", session_timeout=1800)
    request = environ(CLIENT_IP)
    track_at(sdk, FUTURE_NOON, request, page_view(website.domain, "/day-one"))
    track_at(sdk, FUTURE_NOON + DAY, request, page_view(website.domain, "/day-two"))
    before_midnight = FUTURE_NOON + DAY + 11.9 * 3600  # 23:54 on day two
    track_at(sdk, before_midnight, request, page_view(website.domain, "/late"))
    track_at(sdk, before_midnight + 600, request, page_view(website.domain, "/after-midnight"))
    assert sdk.flush(timeout=20)
    visitors = records(pb, "visitors", website=website.id)
    assert len(visitors) == 2  # day one's visitor and day two's: never linked
    sessions = site_sessions(pb, website.id)
    by_entry = {s["entryPath"]: s for s in sessions}
    assert set(by_entry) == {"/day-one", "/day-two", "/late"}
    assert by_entry["/late"]["exitPath"] == "/after-midnight"  # over midnight: one session
    assert by_entry["/late"]["visitor"] == by_entry["/day-two"]["visitor"]
    assert by_entry["/day-one"]["visitor"] != by_entry["/day-two"]["visitor"]


def test_with_a_salt_file_the_database_alone_cannot_recompute_ids(
    pb: PocketBaseClient, website: Website, make_sdk: MakeSdk, tmp_path: Path
) -> None:
    secret = tmp_path / "salt"
    secret.write_text("an outside secret of enough bytes\n")
    sdk = make_sdk(salt_file=str(secret))
    sdk.track_api_event(environ(CLIENT_IP), page_view(website.domain, "/"))
    assert sdk.flush(timeout=10)
    [visitor] = records(pb, "visitors", website=website.id)
    stored_salt = bytes.fromhex(records(pb, "skopos_config", key="visitor_salt")[0]["value"])
    from_database = VisitorHasher(stored_salt).visitor_id(website.id, CLIENT_IP, CHROME)
    with_secret = VisitorHasher(peppered(stored_salt, secret.read_bytes().strip()))
    assert visitor["visitorId"] != from_database
    assert visitor["visitorId"] == with_secret.visitor_id(website.id, CLIENT_IP, CHROME)


@pytest.mark.parametrize("signal", ["HTTP_SEC_GPC", "HTTP_DNT"])
def test_privacy_signals_count_without_identification(
    pb: PocketBaseClient, website: Website, make_sdk: MakeSdk, signal: str
) -> None:
    sdk = make_sdk(respect_privacy_signals=True, respect_dnt=True)
    request = {**environ(CLIENT_IP), signal: "1"}
    sdk.track_api_event(request, page_view(website.domain, "/a"))
    sdk.track_api_event(request, page_view(website.domain, "/b"))
    sdk.identify(request, "user-1", {"email": "ada@example.com"})
    assert sdk.flush(timeout=10)
    assert records(pb, "visitors", website=website.id) == []
    sessions = site_sessions(pb, website.id)
    assert len(sessions) == 2  # each page view in a session of its own
    assert {s["visitor"] for s in sessions} == {""}
    assert len(site_events(pb, website.id)) == 2
    stats = sdk.stats()
    assert stats.anonymous == 2
    assert stats.dropped == {"privacy_signal": 1}  # identify is not counted anonymously


def test_privacy_signals_can_drop_instead(
    pb: PocketBaseClient, website: Website, make_sdk: MakeSdk
) -> None:
    sdk = make_sdk(respect_privacy_signals=True, privacy_signal_action="drop")
    sdk.track_api_event({**environ(CLIENT_IP), "HTTP_SEC_GPC": "1"}, page_view(website.domain, "/"))
    sdk.track_api_event({**environ(CLIENT_IP), "HTTP_DNT": "1"}, page_view(website.domain, "/dnt"))
    assert sdk.flush(timeout=10)
    assert [s["entryPath"] for s in site_sessions(pb, website.id)] == ["/dnt"]  # DNT: off
    assert sdk.stats().dropped == {"privacy_signal": 1}


def test_paths_referrers_properties_and_traces_are_scrubbed(
    pb: PocketBaseClient, website: Website, make_sdk: MakeSdk
) -> None:
    sdk = make_sdk(scrub_ids=True)
    request = environ(CLIENT_IP)
    url = f"https://{website.domain}/users/123?token=s3cret&utm_source=news"
    referrer = "https://other.example/search?q=ada%40example.com"
    sdk.track_api_event(request, {"type": "pageView", "url": url, "referrer": referrer})
    sdk.track_api_event(
        request, custom(website.domain, "/users/123", "signup", {"contact": "ada@example.com"})
    )
    sdk.track_api_event(request, js_error(website.domain, "no user ada@example.com"))
    assert sdk.flush(timeout=10)
    stored = everything_stored(pb, website)
    assert "ada@example.com" not in stored
    assert "s3cret" not in stored
    assert "123" not in stored.replace("1234", "")
    [session] = site_sessions(pb, website.id)
    assert (session["entryPath"], session["referrer"]) == (
        "/users/:id",
        "https://other.example/search",
    )
    events = {e["type"]: e for e in site_events(pb, website.id)}
    assert events["custom"]["eventData"] == {"contact": "[email]"}
    [error] = records(pb, "js_errors", website=website.id)
    assert error["errorMessage"] == "no user [email]"


def test_campaigns_and_channels_land_on_the_first_page_only(
    pb: PocketBaseClient, website: Website, make_sdk: MakeSdk
) -> None:
    sdk = make_sdk()
    request = environ(CLIENT_IP)
    first = (
        f"https://{website.domain}/?utm_source=newsletter&utm_medium=email"
        "&utm_campaign=spring&gclid=abc123"
    )
    sdk.track_api_event(request, {"type": "pageView", "url": first})
    later = f"https://{website.domain}/pricing?utm_source=other&utm_campaign=autumn"
    sdk.track_api_event(request, {"type": "pageView", "url": later})
    assert sdk.flush(timeout=10)
    [session] = site_sessions(pb, website.id)
    assert {k: session[k] for k in ("source", "channel", "utmSource", "utmMedium")} == {
        "source": "newsletter",
        "channel": "paid",  # a click id wins: the visit was paid for
        "utmSource": "newsletter",
        "utmMedium": "email",
    }
    assert (session["utmCampaign"], session["clickId"]) == ("spring", "gclid")
    assert "abc123" not in everything_stored(pb, website)


def drop_admin_pages(fields: dict[str, Any]) -> dict[str, Any] | None:
    if fields["path"].startswith("/admin"):
        return None
    if fields["data"]:
        fields["data"] = {"kept": True}
    return fields


def test_before_send_changes_or_drops_and_its_failures_are_contained(
    pb: PocketBaseClient, website: Website, make_sdk: MakeSdk
) -> None:
    sdk = make_sdk(before_send=drop_admin_pages, strict=False)
    request = environ(CLIENT_IP)
    sdk.track_api_event(request, page_view(website.domain, "/admin/users"))
    sdk.track_api_event(request, custom(website.domain, "/", "signup", {"plan": "pro"}))
    assert sdk.flush(timeout=10)
    assert [e["eventData"] for e in site_events(pb, website.id)] == [{"kept": True}]
    assert sdk.stats().dropped == {"before_send": 1}

    def broken(fields: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("the hook's own bug")

    other = make_sdk(before_send=broken, strict=False)
    other.track_api_event(environ("198.51.100.9"), page_view(website.domain, "/x"))
    assert other.flush(timeout=10)
    assert other.stats().dropped == {"before_send_error": 1}
