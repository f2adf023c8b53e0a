"""Realtime subscriptions against a real PocketBase, including a server restart."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable

import pytest

from skopos._pocketbase.realtime import RealtimeEvent, RealtimeSubscription
from tests._support.pocketbase_server import PocketBaseServer

pytestmark = pytest.mark.pocketbase


def next_event(
    events: queue.Queue[RealtimeEvent], record_id: str, timeout: float = 10
) -> RealtimeEvent:
    deadline = time.monotonic() + timeout
    while True:
        event = events.get(timeout=max(0.01, deadline - time.monotonic()))
        if event.record.get("id") == record_id:
            return event


def wait_for_connections(subscription: RealtimeSubscription, count: int) -> None:
    deadline = time.monotonic() + 15
    while subscription.connections < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert subscription.connections == count


def test_subscription_sees_updates_and_survives_a_restart(
    pocketbase_factory: Callable[..., PocketBaseServer],
) -> None:
    server = pocketbase_factory()
    events: queue.Queue[RealtimeEvent] = queue.Queue()
    connects: list[float] = []
    with server.client() as client:
        site = client.create_record("websites", {"name": "rt", "domain": "rt.example.test"})
        subscription = RealtimeSubscription(
            client,
            [f"websites/{site['id']}"],
            events.put,
            on_connect=lambda: connects.append(time.monotonic()),
            max_backoff=0.5,
        )
        subscription.start()
        try:
            assert subscription.wait_connected(10)
            client.update_record("websites", site["id"], {"isArchived": True})
            event = next_event(events, site["id"])
            assert (event.action, event.record["isArchived"]) == ("update", True)

            server.process.restart()
            wait_for_connections(subscription, 2)
            client.update_record("websites", site["id"], {"isArchived": False})
            event = next_event(events, site["id"])
            assert (event.action, event.record["isArchived"]) == ("update", False)

            # A password change revokes the token the stream subscribed with; after
            # the next reconnect it must log in again, not listen as a guest.
            with server.client() as admin:
                [superuser] = admin.list_records("_superusers").items
                password = server.password
                admin.update_record(
                    "_superusers",
                    superuser["id"],
                    {"password": password, "passwordConfirm": password},
                )
            server.process.restart()
            wait_for_connections(subscription, 3)
            with server.client() as admin:
                admin.update_record("websites", site["id"], {"name": "renamed"})
            event = next_event(events, site["id"])
            assert event.record["name"] == "renamed"
            assert len(connects) == 3
        finally:
            started = time.monotonic()
            subscription.stop(timeout=5)
            assert time.monotonic() - started < 2, "stop() must not wait for a blocked read"
            assert not subscription.connected
