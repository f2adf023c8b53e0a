"""PocketBase goes away and comes back: every accepted call lands once, none twice.

Each test runs a private PocketBase (``pocketbase_factory``) and replays a trace of
several visitors (page views, browser custom events, server events, JS errors)
while the server is stopped for most of a minute, restarted twice in a stream, or
restarted with every superuser token revoked. What is checked is what PocketBase
holds afterwards, counted exactly, plus ``stats()``.
"""

from __future__ import annotations

import itertools
import json
import secrets
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from skopos import SkoposSDK
from skopos._admin.setup import Website, ensure_website
from skopos._pocketbase.client import PocketBaseClient
from tests._support.fault_proxy import FaultProxy
from tests._support.pocketbase_server import PocketBaseServer, start_sdk
from tests._support.tracking_helpers import (
    CHROME,
    FIREFOX,
    IPHONE,
    custom,
    environ,
    js_error,
    page_view,
    records,
    site_events,
    site_sessions,
)

pytestmark = pytest.mark.pocketbase

MakeSdk = Callable[..., SkoposSDK]
AGENTS = (CHROME, FIREFOX, IPHONE)
LOGIN_PATH = "/api/collections/_superusers/auth-with-password"


@pytest.fixture
def make_sdk() -> Iterator[MakeSdk]:
    """Strict SDKs without realtime for a server and site; shut down after the test."""
    made: list[SkoposSDK] = []

    def make(url: str, server: PocketBaseServer, site: Website, **options: Any) -> SkoposSDK:
        sdk = start_sdk(server, site, url=url, **options)
        made.append(sdk)
        return sdk

    yield make
    for sdk in made:
        sdk.shutdown(timeout=5)


def private_site(
    factory: Callable[..., PocketBaseServer], name: str
) -> tuple[PocketBaseServer, Website]:
    server = factory()
    with server.client() as admin:
        site = ensure_website(admin, name, f"{name}.example.test")
    return server, site


@dataclass
class Trace:
    """A replayable mix of tracking calls, and what PocketBase must hold after it.

    Visitor ``v`` is one IP and one user agent; every path names its visitor
    (``/p/<v>/<n>``) so a misattributed event is caught. Every tenth call is a JS
    error, one of five messages; cron events (no request) go to the site's
    "server" visitor.
    """

    sdk: SkoposSDK
    domain: str
    sent: int = 0
    events: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    activity: dict[int, list[float]] = field(default_factory=dict)
    cron_events: int = 0

    def call(self, visitor: int) -> None:
        """One tracking call by ``visitor``, its kind chosen by the call number."""
        n = self.sent
        self.sent += 1
        ip = f"198.51.{100 + visitor // 200}.{visitor % 200 + 1}"
        request = environ(ip, AGENTS[visitor % len(AGENTS)])
        self.activity.setdefault(visitor, []).append(time.monotonic())
        kind = n % 10
        if kind < 6:
            path = f"/p/{visitor}/{n}"
            self.sdk.track_api_event(request, page_view(self.domain, path))
            self.events["pageView", "", path] += 1
        elif kind < 8:
            path = f"/c/{visitor}/{n}"
            data = {"n": n, "plan": "pro"}
            self.sdk.track_api_event(request, custom(self.domain, path, "signup-click", data))
            self.events["custom", "signup-click", path] += 1
        elif kind == 8:
            path = f"/webhook/{visitor}/{n}"
            server_request = environ(ip, AGENTS[visitor % len(AGENTS)], path=path)
            self.sdk.track_server_event(server_request, "payment-received", {"n": n})
            self.events["custom", "payment-received", path] += 1
        else:
            message = f"TypeError {n % 5}"
            self.sdk.track_api_event(request, js_error(self.domain, message))
            self.errors[message] += 1

    def cron(self) -> None:
        """A server event without a request (a job): the site's "server" visitor."""
        self.sent += 1
        self.cron_events += 1
        self.activity.setdefault(-1, []).append(time.monotonic())
        self.sdk.track_server_event(None, "nightly-report", {"run": self.cron_events})
        self.events["custom", "nightly-report", ""] += 1

    def round(self, visitors: range) -> None:
        for visitor in visitors:
            self.call(visitor)

    def sessions_expected(self, timeout: float) -> Counter[int]:
        """Sessions per visitor number (-1: the server visitor) for this session timeout.

        Refuses to guess: a gap too close to the timeout fails the test setup.
        """
        expected: Counter[int] = Counter()
        for visitor, times in self.activity.items():
            gaps = [b - a for a, b in itertools.pairwise(times)]
            ambiguous = [g for g in gaps if timeout * 0.5 < g < timeout * 1.2]
            assert not ambiguous, f"visitor {visitor}: gaps {ambiguous} too near {timeout}s"
            expected[visitor] = 1 + sum(1 for g in gaps if g > timeout)
        return expected


def assert_landed(admin: PocketBaseClient, site: Website, trace: Trace, timeout: float) -> None:
    """PocketBase holds exactly the trace: visitors, sessions, events, JS error counts."""
    expected_sessions = trace.sessions_expected(timeout)
    visitors = records(admin, "visitors", website=site.id)
    sessions = site_sessions(admin, site.id)
    events = site_events(admin, site.id)
    assert len(visitors) == len(expected_sessions)
    assert len(sessions) == sum(expected_sessions.values())
    landed = Counter((e["type"], e.get("eventName") or "", e["path"]) for e in events)
    assert landed == trace.events
    assert sum(landed.values()) == len(events)  # no event outside the trace's keys

    # Every visitor record holds exactly one trace visitor's events, and its sessions.
    visitor_of_session = {s["id"]: s["visitor"] for s in sessions}
    owners: dict[str, set[int]] = {}
    for event in events:
        parts = event["path"].split("/")
        number = int(parts[2]) if len(parts) > 2 else -1  # "" is the server visitor
        owners.setdefault(visitor_of_session[event["session"]], set()).add(number)
    assert all(len(numbers) == 1 for numbers in owners.values()), owners
    per_record = Counter(visitor_of_session.values())
    per_visitor = Counter({next(iter(owners[record])): n for record, n in per_record.items()})
    assert per_visitor == expected_sessions

    errors = {e["errorMessage"]: e["count"] for e in records(admin, "js_errors", website=site.id)}
    assert errors == dict(trace.errors)


def assert_all_written(sdk: SkoposSDK, trace: Trace) -> None:
    stats = sdk.stats()
    assert stats.dropped == {}
    assert stats.accepted == trace.sent
    assert stats.written == stats.accepted
    assert stats.queue_depth == stats.pending == 0


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_a_minute_long_outage_during_a_trace_loses_and_duplicates_nothing(
    pocketbase_factory: Callable[..., PocketBaseServer], make_sdk: MakeSdk
) -> None:
    """PocketBase stopped for 50 s while ~3,500 calls keep coming, then started again.

    Visitors 0-15 are there before, 16-31 appear during the outage, 32-39 after it;
    visitors 40-47 come before and after only (their 50 s gap exceeds the 20 s
    session timeout: two sessions each, the second opened while the first's
    writes waited). Everyone else stays active, so has one session.
    """
    server, site = private_site(pocketbase_factory, "long-outage")
    session_timeout = 20.0
    sdk = make_sdk(
        server.url,
        server,
        site,
        session_timeout=session_timeout,
        js_error_batch_interval=1.0,
    )
    trace = Trace(sdk, site.domain)
    returning = range(40, 48)
    for _ in range(10):
        trace.round(range(16))
        trace.round(returning)
        trace.cron()
    assert sdk.flush(timeout=60)
    before = trace.sent
    assert sdk.stats().written == before

    server.process.stop()
    down_since = time.monotonic()
    rounds = 0
    while time.monotonic() - down_since < 50:
        trace.round(range(32))  # 32 calls every 0.5 s, from visitors old and new
        rounds += 1
        if rounds % 4 == 0:
            trace.cron()
        time.sleep(0.5)
    during = sdk.stats()
    assert during.written == before  # nothing written, nothing given up: all held
    assert during.pending + during.queue_depth == trace.sent - before > 3000
    assert during.dropped == {}

    server.process.start()  # same port, same data directory
    for _ in range(10):
        trace.round(range(40))
        trace.round(returning)
        trace.cron()
        time.sleep(0.05)
    assert trace.sent < 10_000  # within the default max_queue_size
    assert sdk.flush(timeout=180)
    assert_all_written(sdk, trace)
    assert sdk.stats().retries > 0
    with server.client() as admin:
        assert_landed(admin, site, trace, session_timeout)
    expected = trace.sessions_expected(session_timeout)
    assert sorted(v for v, n in expected.items() if n == 2) == list(returning)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("batch", [False, True], ids=["prompt", "batched"])
@pytest.mark.parametrize("graceful", [False, True], ids=["sigkill", "sigterm"])
def test_two_quick_restarts_in_a_stream_lose_and_duplicate_nothing(
    pocketbase_factory: Callable[..., PocketBaseServer],
    make_sdk: MakeSdk,
    batch: bool,
    graceful: bool,
) -> None:
    """Calls flow every few milliseconds while PocketBase is stopped (SIGTERM, or
    SIGKILL: writes in flight, answers lost) and started again, twice, a second
    apart, each time down for 0.6 s. (A stop timed to hit a batch: the next test.)"""
    server, site = private_site(pocketbase_factory, f"restarts-{int(batch)}{int(graceful)}")
    sdk = make_sdk(
        server.url,
        server,
        site,
        js_error_batch_interval=0.3,
        batch=batch,
        batch_interval=0.2,
        max_batch_size=50,
    )
    trace = Trace(sdk, site.domain)
    restarts_done = threading.Event()
    failures: list[BaseException] = []

    def restart_twice() -> None:
        try:
            for _ in range(2):
                time.sleep(1.0)
                if graceful:
                    server.process.stop()
                else:
                    server.process.kill()
                time.sleep(0.6)  # long enough for a write (every 0.2 s) to find it down
                server.process.start()
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)
        finally:
            restarts_done.set()

    restarter = threading.Thread(target=restart_twice, daemon=True)
    restarter.start()
    visitor = 0
    while not restarts_done.is_set():
        trace.call(visitor % 12)
        visitor += 1
        if visitor % 50 == 0:
            trace.cron()
        time.sleep(0.004)
    restarter.join()
    assert failures == []
    for _ in range(300):  # keep going after the second start
        trace.call(visitor % 12)
        visitor += 1
        time.sleep(0.004)
    assert sdk.flush(timeout=120)
    assert_all_written(sdk, trace)
    assert sdk.stats().retries > 0
    with server.client() as admin:
        assert_landed(admin, site, trace, timeout=1800.0)


@pytest.mark.timeout(300)
def test_graceful_restarts_with_a_batch_in_flight_lose_nothing(
    pocketbase_factory: Callable[..., PocketBaseServer], make_sdk: MakeSdk
) -> None:
    """A stream of calls; twice, PocketBase is stopped gracefully (SIGTERM) while a
    large batch is inside its transaction, and started again at once.

    The proxy only times the stop: when a batch passes it, PocketBase gets SIGTERM
    50 ms later, while that batch (~900 creates, some 0.3 s of work) is running.
    PocketBase then answers 400 ``{"data":{},"message":"Batch transaction failed."}``
    (no ``data.requests`` index; its log says "batch request interrupted") and
    rolls back: the same answer as a batch past ``batch.timeout``. Before cba6d78
    the writer took it for a permanent rejection and dropped the whole chunk.
    """
    server, site = private_site(pocketbase_factory, "graceful")
    armed = threading.Event()
    restarts: list[threading.Thread] = []
    failures: list[BaseException] = []

    def restart_soon() -> None:
        try:
            time.sleep(0.05)
            server.process.restart()  # SIGTERM, wait for exit, start
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    def plan(method: str, path: str, number: int) -> str:
        if path == "/api/batch" and armed.is_set():
            armed.clear()
            restarts.append(threading.Thread(target=restart_soon, daemon=True))
            restarts[-1].start()
        return "pass"

    with FaultProxy(server.url, plan) as proxy:
        sdk = make_sdk(
            proxy.url, server, site, batch=True, batch_interval=3600, max_batch_size=1000
        )
        trace = Trace(sdk, site.domain)
        trace.round(range(12))
        assert sdk.flush(timeout=60)
        for _ in range(2):
            for n in range(900):
                trace.call(n % 12)
            armed.set()
            assert sdk.flush(timeout=120)
            while restarts[-1].is_alive():  # the stream goes on meanwhile
                trace.call(trace.sent % 12)
                time.sleep(0.005)
        assert failures == []
        assert len(restarts) == 2
        assert sdk.flush(timeout=120)
        with server.client() as admin:
            interrupted = interrupted_batches(admin)
            assert interrupted >= 1, "no batch was interrupted: the test tested nothing"
            assert_all_written(sdk, trace)
            assert_landed(admin, site, trace, timeout=1800.0)


def interrupted_batches(admin: PocketBaseClient) -> int:
    """Batches PocketBase's request log says a shutdown interrupted (logs land late)."""
    query = "data.url = '/api/batch' && data.details = 'batch request interrupted'"
    deadline = time.monotonic() + 15
    while True:
        found = admin.request("GET", "/api/logs", params={"filter": query, "perPage": 50})
        count = len(found["items"])
        if count or time.monotonic() > deadline:
            return count
        time.sleep(0.5)


def set_superusers_token_secret_offline(data_dir: Path, secret: str) -> None:
    """Rewrite ``_superusers``' auth token secret in the stopped server's database.

    PocketBase keeps it in ``_collections.options`` (``authToken.secret``; the API
    never shows it) and reads it at start, so the server comes back with a new
    secret, as after restoring another instance's settings.
    """
    db = sqlite3.connect(data_dir / "data.db")
    try:
        [(raw,)] = db.execute("SELECT options FROM _collections WHERE name = '_superusers'")
        options = json.loads(raw)
        assert options["authToken"]["secret"] != secret
        options["authToken"]["secret"] = secret
        db.execute(
            "UPDATE _collections SET options = ? WHERE name = '_superusers'",
            (json.dumps(options),),
        )
        db.commit()
    finally:
        db.close()


def login(server: PocketBaseServer) -> str:
    answer = httpx.post(
        server.url + LOGIN_PATH, json={"identity": server.email, "password": server.password}
    )
    answer.raise_for_status()
    token: str = answer.json()["token"]
    return token


def token_accepted(server: PocketBaseServer, token: str) -> bool:
    """Whether PocketBase still honours ``token`` (auth-refresh: 200, or 401 when revoked)."""
    answer = httpx.post(
        f"{server.url}/api/collections/_superusers/auth-refresh", headers={"Authorization": token}
    )
    assert answer.status_code in (200, 401), answer.text
    return answer.status_code == 200


def patch_token_secret(server: PocketBaseServer) -> None:
    # PATCH accepts authToken.secret (GET never shows it): every superuser token dies.
    answer = httpx.patch(
        f"{server.url}/api/collections/_superusers",
        headers={"Authorization": login(server)},
        json={"authToken": {"secret": secrets.token_hex(25)}},
    )
    assert answer.status_code == 200, answer.text


def patch_token_key(server: PocketBaseServer) -> None:
    # A new tokenKey on the superuser record revokes that superuser's tokens only.
    headers = {"Authorization": login(server)}
    refreshed = httpx.post(
        f"{server.url}/api/collections/_superusers/auth-refresh", headers=headers
    )
    me = refreshed.json()["record"]
    answer = httpx.patch(
        f"{server.url}/api/collections/_superusers/records/{me['id']}",
        headers=headers,
        json={"tokenKey": secrets.token_hex(25)},
    )
    assert answer.status_code == 200, answer.text


@pytest.mark.timeout(300)
@pytest.mark.parametrize("how", ["secret-changed-while-stopped", "secret-patched", "token-key"])
def test_auth_is_reestablished_after_every_token_is_revoked(
    pocketbase_factory: Callable[..., PocketBaseServer], make_sdk: MakeSdk, how: str
) -> None:
    """The SDK's token stops working while calls keep coming; it logs in again and
    delivers everything.

    - ``secret-changed-while-stopped``: PocketBase is stopped (nothing in flight),
      calls come in while it is down, its ``_superusers`` token secret is changed in
      the database, and it starts again with the new secret;
    - ``secret-patched``: the secret is changed live through the API, mid-stream;
    - ``token-key``: the superuser record's ``tokenKey`` is changed live, mid-stream.

    The SDK talks through a pass-through proxy only so the test can count its logins.
    """
    server, site = private_site(pocketbase_factory, "revoked")
    logins: Counter[str] = Counter()

    def count_logins(method: str, path: str, number: int) -> str:
        if path.startswith(LOGIN_PATH):
            logins["password"] += 1
        return "pass"

    with FaultProxy(server.url, count_logins) as proxy:
        sdk = make_sdk(proxy.url, server, site, js_error_batch_interval=0.3)
        trace = Trace(sdk, site.domain)
        for _ in range(5):
            trace.round(range(10))
            trace.cron()
        assert sdk.flush(timeout=60)
        logins_before = logins["password"]
        assert logins_before >= 1
        old_token = login(server)  # signed with the same secret and key as the SDK's

        if how == "secret-changed-while-stopped":
            server.process.stop()
            for n in range(150):  # visitors 10-13 are new
                trace.call(n % 14)
                time.sleep(0.005)
            set_superusers_token_secret_offline(server.process.data_dir, secrets.token_hex(25))
            server.process.start()
        else:
            for n in range(300):
                trace.call(n % 14)
                time.sleep(0.005)
                if n == 150:
                    (patch_token_secret if how == "secret-patched" else patch_token_key)(server)
        assert not token_accepted(server, old_token)  # the revocation took effect
        for _ in range(20):
            trace.round(range(16))
            trace.cron()
            time.sleep(0.02)
        assert sdk.flush(timeout=120)
        assert_all_written(sdk, trace)
        assert logins["password"] > logins_before  # it did log in again
    with server.client() as admin:
        assert_landed(admin, site, trace, timeout=1800.0)
