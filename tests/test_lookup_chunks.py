"""The sessionizer's bulk lookups against a real PocketBase, with more ids than one OR-filter
holds: every chunk's filter must be one the server accepts.

PocketBase (measured on 0.40.6) refuses a filter longer than about 3,500 characters: 134 ids in
the visitors lookup, 111 in the sessions lookup (which also filters on ``updated``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from skopos import SkoposSDK
from skopos._admin.setup import Website
from skopos._pocketbase.client import PocketBaseClient
from skopos._pocketbase.filter import pb_filter
from tests._support.pocketbase_server import PocketBaseServer, start_sdk
from tests._support.tracking_helpers import environ, page_view, site_sessions

pytestmark = pytest.mark.pocketbase

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
