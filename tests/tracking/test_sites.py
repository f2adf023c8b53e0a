"""Site rules by tracking id, kept current with what the dashboard edits (realtime and polling)."""

from __future__ import annotations

import pytest

from skopos._admin.setup import Website
from skopos._pocketbase.client import PocketBaseClient
from tests._support.pocketbase_server import MakeSdk
from tests._support.tracking_helpers import (
    environ,
    page_view,
    site_events,
)
from tests._support.waiting import wait_until

pytestmark = pytest.mark.pocketbase


@pytest.mark.parametrize("mode", ["realtime", "polling"])
def test_archiving_at_runtime_is_followed(
    make_sdk: MakeSdk, pb: PocketBaseClient, website: Website, mode: str
) -> None:
    if mode == "realtime":
        sdk = make_sdk(realtime=True, config_refresh_interval=3600)
        wait_until(lambda: sdk.stats().realtime_connected)
    else:
        sdk = make_sdk(realtime=False, config_refresh_interval=0.5)
    request = environ("203.0.113.70")
    sent = 0

    def send_is_dropped() -> bool:
        nonlocal sent
        sent += 1
        before = sdk.stats().dropped.get("site_archived", 0)
        sdk.track_api_event(request, page_view(website.domain, f"/p{sent}"))
        assert sdk.flush(timeout=10)
        return sdk.stats().dropped.get("site_archived", 0) > before

    assert not send_is_dropped()
    pb.update_record("websites", website.id, {"isArchived": True})
    wait_until(send_is_dropped)
    archived_from = sent
    pb.update_record("websites", website.id, {"isArchived": False})
    wait_until(lambda: not send_is_dropped())
    landed = {e["path"] for e in site_events(pb, website.id)}
    assert "/p1" in landed
    assert f"/p{sent}" in landed
    assert f"/p{archived_from}" not in landed
    assert len(landed) == sent - sdk.stats().dropped["site_archived"]
