"""Sessions: which session an activity belongs to and what each batch writes (pure logic),
then against a real PocketBase:
continued across restarts and processes, and the bulk lookups with more ids than one OR-filter
holds (every chunk's filter must be one the server accepts; ``pocketbase/test_filter.py``
measures the limit).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest

from skopos import SkoposSDK
from skopos._admin.setup import Website, ensure_website
from skopos._delivery.sessions import Sessionizer, session_id
from skopos._pocketbase.client import PocketBaseClient
from skopos._pocketbase.dates import pb_date
from skopos._pocketbase.filter import pb_filter
from skopos._tracking.activity import Activity
from skopos._tracking.ip_rules import IpBlacklist
from skopos._tracking.site_rules import SiteRules
from tests._support.memory_probe import probe
from tests._support.paths import subprocess_env
from tests._support.pocketbase_server import MakeSdk, PocketBaseServer, start_sdk
from tests._support.tracking_helpers import (
    environ,
    page_view,
    records,
    site_events,
    site_sessions,
)

RULES = SiteRules("site", "t", None, False, False, False, IpBlacklist(None))
START = 1_700_000_000.0


def view(path: str, at: float, visitor: str = "vrec") -> Activity:
    return Activity("pageView", RULES, "v", visitor, at, path=path)


def new_sessionizer(timeout: float = 1800.0) -> Sessionizer:
    return Sessionizer(None, session_timeout=timeout)  # type: ignore[arg-type]


def session_writes(sessions: Sessionizer, *activities: Activity) -> list[tuple[str, object]]:
    writes = sessions.assign(list(activities))
    return [(w.request.method, w.request.body) for w in writes if w.collection == "sessions"]


def test_a_continuing_session_is_touched_in_the_batch_of_its_events_after_them() -> None:
    sessions = new_sessionizer()
    [(method, body)] = session_writes(sessions, view("/a", START), view("/b", START + 1))
    assert method == "POST"  # one create, with the batch's last page and activity
    assert isinstance(body, dict)
    assert (body["entryPath"], body["exitPath"]) == ("/a", "/b")
    assert (body["firstActivity"], body["lastActivity"]) == (pb_date(START), pb_date(START + 1))
    writes = sessions.assign([view("/c", START + 60), view("/d", START + 61)])
    assert [w.collection for w in writes] == ["events", "events", "sessions"]  # touch last
    assert writes[-1].request.method == "PATCH"
    assert writes[-1].request.body == {"exitPath": "/d", "lastActivity": pb_date(START + 61)}


def test_a_session_id_depends_on_the_visitor_and_the_window_it_starts_in() -> None:
    assert session_id("v", START, 1800) == session_id("v", START + 1, 1800)
    assert session_id("v", START, 1800) != session_id("w", START, 1800)
    # Two sessions of one visitor start more than a timeout apart: never the same window.
    for gap in (1800.001, 1801, 5000):
        assert session_id("v", START, 1800) != session_id("v", START + gap, 1800)


def test_after_the_timeout_a_new_session_opens_and_the_old_one_is_left_alone() -> None:
    sessions = new_sessionizer(timeout=30)
    sessions.assign([view("/a", START)])
    writes = session_writes(sessions, view("/b", START + 31))
    assert [method for method, _ in writes] == ["POST"]


def test_a_late_activity_joins_its_session_without_moving_its_end() -> None:
    sessions = new_sessionizer(timeout=30)
    sessions.assign([view("/a", START), view("/b", START + 20)])
    late = view("/late", START + 10)
    assert session_writes(sessions, late) == []  # no touch: updated must not move
    assert late.session_id == session_id("vrec", START, 30)
    older = view("/older", START - 100)  # long before that session: a session of its own
    assert [method for method, _ in session_writes(sessions, older)] == ["POST"]
    assert older.session_id == session_id("vrec", START - 100, 30)


def test_a_looked_up_session_is_joined_when_it_holds_the_activity() -> None:
    class Client:
        def list_records(self, *args: object, **kwargs: object) -> object:
            return SimpleNamespace(items=[{"id": "vrec"}])

        def request(self, method: str, path: str) -> dict[str, object]:
            fields = [{"name": "firstActivity"}, {"name": "lastActivity"}]
            return {"name": "sessions", "fields": fields}

        def iter_records(self, *args: object, **kwargs: object) -> list[dict[str, str]]:
            return [
                {
                    "id": "othersession001",
                    "visitor": "vrec",
                    "firstActivity": pb_date(START),
                    "lastActivity": pb_date(START + 50),
                    "exitPath": "/x",
                }
            ]

    sessions = Sessionizer(Client(), session_timeout=30)  # type: ignore[arg-type]
    activity = view("/y", START + 60)
    sessions.resolve([activity])
    writes = session_writes(sessions, activity)
    assert activity.session_id == "othersession001"  # another process's session, still live
    assert writes == [
        ("PATCH", {"exitPath": "/y", "lastActivity": pb_date(START + 60)}),
    ]


# -- against a real PocketBase ----------------------------------------------------------------


@pytest.mark.pocketbase
def test_a_restarted_process_continues_the_session(
    make_sdk: MakeSdk, pb: PocketBaseClient, website: Website
) -> None:
    request = environ("203.0.113.60")
    first = make_sdk()
    first.track_api_event(request, page_view(website.domain, "/one"))
    first.shutdown(timeout=10)
    second = make_sdk()
    second.track_api_event(request, page_view(website.domain, "/two"))
    assert second.flush(timeout=10)
    [session] = site_sessions(pb, website.id)
    assert (session["entryPath"], session["exitPath"]) == ("/one", "/two")
    assert len(site_events(pb, website.id)) == 2


@pytest.mark.pocketbase
@pytest.mark.parametrize("batch", [False, True])
def test_two_processes_share_the_load_without_splitting_or_duplicating(
    pocketbase: PocketBaseServer, pb: PocketBaseClient, website: Website, batch: bool
) -> None:
    import json
    import subprocess
    import sys

    visitors, views = 30, 6
    config = {
        "sdk": {
            "pocketbase_url": pocketbase.url,
            "site_id": website.tracking_id,
            "admin_email": pocketbase.email,
            "admin_password": pocketbase.password,
            "strict": True,
            "realtime": False,
            "batch": batch,
            "batch_interval": 0.1,
        },
        "domain": website.domain,
        "visitors": visitors,
        "views": views,
        "step": 0.5,
    }
    script = "tests._support.replay_process"
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", script, json.dumps(config), str(share)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=subprocess_env(),
        )
        for share in (0, 1)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == "ready"
        start_at = f"{time.time() + 0.3}\n"
        for worker in workers:  # every child gets the start time before any is waited on
            assert worker.stdin is not None
            worker.stdin.write(start_at)
            worker.stdin.close()
        results = []
        for worker in workers:
            assert worker.stdout is not None
            results.append(json.loads(worker.stdout.read()))
            worker.stdout.close()
            assert worker.wait(timeout=60) == 0
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    assert all(r["flushed"] and not r["dropped"] for r in results), results
    assert [r["written"] for r in results] == [visitors * views] * 2

    assert len(records(pb, "visitors", website=website.id)) == visitors
    sessions = site_sessions(pb, website.id)
    assert len(sessions) == visitors, "a visitor's session was split"
    events = site_events(pb, website.id)
    assert len(events) == 2 * visitors * views
    per_session = Counter(event["session"] for event in events)
    assert set(per_session.values()) == {2 * views}
    for session in sessions:
        paths = {e["path"] for e in events if e["session"] == session["id"]}
        assert len({path.split("/")[1] for path in paths}) == 1  # one visitor per session
        assert session["entryPath"].split("/")[2] == "p0"  # whichever process wrote first
        assert session["isNewVisitor"] is True


# -- bulk lookups in chunks -------------------------------------------------------------------

VISITORS = 250  # more than two chunks, whatever the chunk size up to 124


@pytest.fixture
def sdks(pocketbase: PocketBaseServer, website: Website) -> Iterator[list[SkoposSDK]]:
    made: list[SkoposSDK] = []
    yield made
    for sdk in made:
        sdk.shutdown(timeout=5)


def _sdk(pocketbase: PocketBaseServer, website: Website) -> SkoposSDK:
    # Held until flush(): all calls reach the sessionizer in one batch.
    return start_sdk(pocketbase, website, batch=True, batch_interval=3600, max_batch_size=1000)


def _ip(number: int) -> str:
    return f"198.18.{number // 200}.{number % 200 + 1}"


@pytest.mark.pocketbase
def test_a_batch_of_many_new_then_returning_visitors(
    pocketbase: PocketBaseServer, pb: PocketBaseClient, website: Website, sdks: list[SkoposSDK]
) -> None:
    first = _sdk(pocketbase, website)
    sdks.append(first)
    for number in range(VISITORS):  # new visitors: one visitors lookup per chunk
        first.track_api_event(environ(_ip(number)), page_view(website.domain, "/one"))
    assert first.flush(timeout=60)
    assert (first.stats().written, first.stats().dropped) == (VISITORS, {})

    second = _sdk(pocketbase, website)  # empty caches: both lookups, every chunk full
    sdks.append(second)
    for number in range(VISITORS):
        second.track_api_event(environ(_ip(number)), page_view(website.domain, "/two"))
    assert second.flush(timeout=60)
    assert (second.stats().written, second.stats().dropped) == (VISITORS, {})

    sessions = site_sessions(pb, website.id)
    assert len(sessions) == VISITORS  # every returning visitor continued its session
    assert {(s["entryPath"], s["exitPath"]) for s in sessions} == {("/one", "/two")}
    assert len(records_of(pb, "visitors", website.id)) == VISITORS
    events = list(
        pb.iter_records("events", filter=pb_filter("session.website = {:w}", w=website.id))
    )
    assert Counter(event["session"] for event in events) == {s["id"]: 2 for s in sessions}


def records_of(pb: PocketBaseClient, collection: str, website_id: str) -> list[object]:
    return list(pb.iter_records(collection, filter=pb_filter("website = {:w}", w=website_id)))


@pytest.mark.pocketbase
def test_a_schema_without_the_activity_fields_still_sessionizes(
    pocketbase_factory: Callable[..., PocketBaseServer],
) -> None:
    # A PocketBase set up before these fields existed: the SDK says to run `skopos setup`
    # and judges sessions by write times meanwhile, instead of failing every lookup.
    server = pocketbase_factory()
    with server.client() as client:
        collection = client.request("GET", "/api/collections/sessions")
        kept = [
            f for f in collection["fields"] if f["name"] not in ("firstActivity", "lastActivity")
        ]
        indexes = [i for i in collection["indexes"] if "lastActivity" not in i]
        client.request(
            "PATCH", "/api/collections/sessions", json_body={"fields": kept, "indexes": indexes}
        )
        site = ensure_website(client, "old schema", "old-schema.example.test")
        sdk = start_sdk(server, site, session_timeout=1.0)
        try:
            request = environ("198.51.100.50")
            sdk.track_api_event(request, page_view(site.domain, "/one"))
            assert sdk.flush(timeout=10)
            time.sleep(1.5)
            sdk.track_api_event(request, page_view(site.domain, "/two"))
            sdk.track_api_event(request, page_view(site.domain, "/three"))
            assert sdk.flush(timeout=10)
        finally:
            sdk.shutdown(timeout=10)
        sessions = site_sessions(client, site.id)
    assert sorted((s["entryPath"], s["exitPath"]) for s in sessions) == [
        ("/one", "/one"),
        ("/two", "/three"),
    ]


def test_the_session_cache_is_bounded_by_bytes() -> None:
    # 50,000 cached sessions of visitors whose exit paths are 2,048 bytes (valid, hostile):
    # ~120 MB, and 4 bytes a character before paths were percent-encoded; the cache now
    # keeps at most 32 MiB of sessions (the visitor-id cache beside it, ~12 MB here).
    found = probe("sessions")
    assert found["cached"] < 50_000
    assert found["growth"] < 64 << 20, f"{found['growth'] / 2**20:.1f} MiB for {found}"
