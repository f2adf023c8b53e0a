"""Sessions: when a continuing one is touched (pure logic), then against a real PocketBase:
continued across restarts and processes, and the bulk lookups with more ids than one OR-filter
holds (every chunk's filter must be one the server accepts; ``pocketbase/test_filter.py``
measures the limit).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest

from skopos import SkoposSDK
from skopos._admin.setup import Website
from skopos._pocketbase.client import PocketBaseClient
from skopos._pocketbase.filter import pb_filter
from skopos._tracking.activity import Activity
from skopos._tracking.ip_rules import IpBlacklist
from skopos._tracking.site_rules import SiteRules
from tests._support.paths import subprocess_env
from tests._support.pocketbase_server import MakeSdk, PocketBaseServer, start_sdk
from tests._support.tracking_helpers import (
    environ,
    page_view,
    records,
    site_events,
    site_sessions,
)


def test_continuing_sessions_are_touched_at_most_every_touch_interval() -> None:
    from skopos._delivery.sessions import Sessionizer

    rules = SiteRules("site", "t", None, False, False, False, IpBlacklist(None))
    sessions = Sessionizer(None, session_timeout=1800)  # type: ignore[arg-type]
    assert sessions.touch_interval == 30.0
    start = 1_700_000_000.0

    def view(path: str, at: float) -> Activity:
        return Activity("pageView", rules, "v", "vrec", at, path=path)

    def session_writes(at: float, path: str) -> list[str]:
        writes = sessions.assign([view(path, at)])
        return [w.request.method for w in writes if w.collection == "sessions"]

    assert session_writes(start, "/a") == ["POST"]  # a new session: created at once
    assert session_writes(start + 1, "/b") == []  # continuing: deferred
    assert session_writes(start + 2, "/c") == []
    assert sessions.has_deferred
    assert sessions.deferred_touches(start + 3) == []  # not due yet
    (touch,) = sessions.deferred_touches(start + 3, everything=True)  # flush: all of them
    assert touch.request.method == "PATCH"
    assert touch.request.body == {"exitPath": "/c"}
    assert not sessions.has_deferred
    assert session_writes(start + 40, "/d") == ["PATCH"]  # lagging by 30 s: touched at once
    assert session_writes(start + 41, "/e") == []
    (due,) = sessions.deferred_touches(start + 71)  # due by time
    assert due.request.body == {"exitPath": "/e"}


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
