"""The worker, against a real PocketBase: when it writes (batch size and interval), and that it
waits when it has nothing it can do, and only then."""

from __future__ import annotations

import threading
import time

import pytest

from skopos._admin.setup import Website
from skopos._delivery.worker import Worker
from skopos._pocketbase.client import PocketBaseClient
from tests._support.collect_client import batch, encode_message
from tests._support.collect_client import page_view as collect_page_view
from tests._support.collect_scenario import trace as collect_trace
from tests._support.fault_proxy import FaultProxy
from tests._support.pocketbase_server import MakeSdk, PocketBaseServer, start_sdk
from tests._support.tracking_helpers import (
    environ,
    page_view,
    site_events,
    site_sessions,
)
from tests._support.waiting import wait_until

pytestmark = pytest.mark.pocketbase


def test_a_full_batch_waiting_for_a_slow_write_costs_no_cpu(
    pocketbase: PocketBaseServer, website: Website
) -> None:
    # The first batch transaction hangs for 2 s; meanwhile calls keep coming and the worker
    # holds full batches it cannot send yet. It must wait for the writer, not spin on the
    # queue (it did: 1.48 s of CPU in 1.58 s, taken from the host's GIL).
    stalled = threading.Event()

    def plan(method: str, path: str, number: int) -> str:
        if path.startswith("/api/batch") and not stalled.is_set():
            stalled.set()
            return "stall"
        return "pass"

    with FaultProxy(pocketbase.url, plan) as proxy:
        proxy.stall_seconds = 2.0
        sdk = start_sdk(pocketbase, website, url=proxy.url, max_batch_size=10)
        try:
            sent = 0

            def send(count: int) -> None:
                nonlocal sent
                for _ in range(count):
                    request = environ(f"198.51.{sent // 250}.{sent % 250}")
                    sdk.track_api_event(request, page_view(website.domain, "/"))
                    sent += 1

            send(20)
            assert stalled.wait(10)  # the first batch hangs; the next one waits behind it
            cpu_before, wall_before = time.process_time(), time.monotonic()
            for _ in range(15):  # and more calls keep arriving
                send(10)
                time.sleep(0.1)
            cpu = time.process_time() - cpu_before
            wall = time.monotonic() - wall_before
            assert sdk.flush(timeout=60)
            assert sdk.stats().written == sent
        finally:
            sdk.shutdown(timeout=10)
    assert cpu < 0.2 * wall, f"{cpu:.2f} s of CPU in {wall:.2f} s while waiting for PocketBase"


def test_a_flush_of_an_idle_worker_returns_at_once(
    pocketbase: PocketBaseServer, website: Website
) -> None:
    # The flush wakes the worker out of its wait; it took the next 1 s wake-up to notice.
    sdk = start_sdk(pocketbase, website)
    try:
        sdk.track_api_event(environ("198.51.100.1"), page_view(website.domain, "/"))
        assert sdk.flush(timeout=30)
        durations = []
        for _ in range(5):
            time.sleep(0.2)  # the worker is back in its wait
            started = time.monotonic()
            assert sdk.flush(timeout=30)
            durations.append(time.monotonic() - started)
    finally:
        sdk.shutdown(timeout=10)
    assert max(durations) < 0.3, durations


def test_a_deferred_session_touch_behind_a_held_batch_costs_no_cpu(
    pb: PocketBaseClient, pocketbase: PocketBaseServer, website: Website
) -> None:
    # batch=True: a continuing session's exitPath touch is deferred while a later call waits
    # for its batch interval. Touches go out in a quiet moment (0.5 s without calls) only
    # with no activity held, but the quiet moment still counted for the worker's wait: the
    # wait was 0 from then until the held batch was due, a busy loop on the host's GIL.
    domain = website.domain
    sdk = start_sdk(pocketbase, website, batch=True, batch_interval=5.0, max_batch_size=2)
    try:
        ada = environ("198.51.100.1")
        sdk.track_api_event(ada, page_view(domain, "/one"))
        assert sdk.flush(timeout=30)  # Ada's session exists
        sdk.track_api_event(ada, page_view(domain, "/two"))  # a touch of her session, deferred
        sdk.track_api_event(environ("198.51.100.2"), page_view(domain, "/"))  # a full batch
        deadline = time.monotonic() + 10
        while sdk.stats().written < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sdk.stats().written == 3  # written at once, Ada's touch still deferred
        sdk.track_api_event(environ("198.51.100.3"), page_view(domain, "/"))  # held for 5 s
        time.sleep(0.7)  # now quiet, with a touch deferred and a batch held
        cpu_before, wall_before = time.process_time(), time.monotonic()
        time.sleep(2.5)
        cpu = time.process_time() - cpu_before
        wall = time.monotonic() - wall_before
        assert sdk.stats().written == 3  # the batch is still held: the state under test
        assert sdk.flush(timeout=30)
    finally:
        sdk.shutdown(timeout=10)
    assert cpu < 0.2 * wall, f"{cpu:.2f} s of CPU in {wall:.2f} s with a touch deferred"
    sessions = {s["entryPath"]: s for s in site_sessions(pb, website.id)}
    assert sessions["/one"]["exitPath"] == "/two"  # and the deferred touch landed
    assert len(site_events(pb, website.id)) == 4


def test_batch_mode_writes_on_size_and_interval(
    make_sdk: MakeSdk, pb: PocketBaseClient, website: Website
) -> None:
    sdk = make_sdk(batch=True, batch_interval=1.0, max_batch_size=5)
    request = environ("203.0.113.80")
    for n in range(4):
        sdk.track_api_event(request, page_view(website.domain, f"/b{n}"))
    time.sleep(0.3)
    assert site_events(pb, website.id) == []  # held: below size, before the interval
    wait_until(lambda: len(site_events(pb, website.id)) == 4, timeout=5)
    for n in range(5):
        sdk.track_api_event(request, page_view(website.domain, f"/c{n}"))
    wait_until(lambda: len(site_events(pb, website.id)) == 9, timeout=0.9)  # size reached


def test_collect_calls_of_many_events_keep_memory_bounded_and_land_exactly(
    pocketbase: PocketBaseServer, pb: PocketBaseClient, website: Website
) -> None:
    # 40 /collect calls of 100 events each while the first batch keeps failing and the second
    # waits behind it: the worker holds at most its read-ahead (1,000 activities) and one
    # call's worth more, the rest stays queued as calls; then every event lands once and
    # every call is written once.
    down = threading.Event()
    down.set()

    def plan(method: str, path: str, number: int) -> str:
        return "error" if down.is_set() and path.startswith("/api/batch") else "pass"

    pages = [collect_page_view(f"/p{n}") for n in range(100)]
    url = f"https://{website.domain}/"
    body = encode_message(batch(*pages, sid=website.tracking_id, url=url))
    requests = [environ(f"198.51.100.{number + 1}") for number in range(40)]
    with FaultProxy(pocketbase.url, plan) as proxy:
        sdk = start_sdk(pocketbase, website, url=proxy.url)
        worker = sdk._runtime.worker
        assert isinstance(worker, Worker)
        try:
            sdk.track_collect(requests[0], body)
            wait_until(lambda: proxy.actions["error"] > 0)  # the first batch is in flight
            sdk.track_collect(requests[1], body)
            time.sleep(0.3)  # the second waits behind it: the writer takes no more
            for request in requests[2:]:  # faster than the worker takes them
                sdk.track_collect(request, body)
            most = 0
            for _ in range(50):
                time.sleep(0.02)
                most = max(most, len(worker._activities))
            down.clear()
            assert sdk.flush(timeout=60)
            stats = sdk.stats()
        finally:
            sdk.shutdown(timeout=10)
    assert 900 <= most <= 1000 + 100, most
    assert (stats.accepted, stats.written, stats.dropped) == (40, 40, {})
    assert len(site_events(pb, website.id)) == 4000
    assert len(site_sessions(pb, website.id)) == 40


def test_collect_calls_undelivered_at_the_deadline_count_once_each(
    pocketbase: PocketBaseServer, website: Website
) -> None:
    sent = collect_trace(website.tracking_id, website.domain, 30)

    def batches_fail(method: str, path: str, number: int) -> str:
        return "error" if path == "/api/batch" else "pass"

    with FaultProxy(pocketbase.url, batches_fail) as proxy:
        sdk = start_sdk(pocketbase, website, url=proxy.url, js_error_batch_interval=0.2)
        for request, body in sent.calls:
            sdk.track_collect(request, body)
        sdk.shutdown(timeout=1.5)
    stats = sdk.stats()
    assert (stats.accepted, stats.written) == (30, 0)
    assert stats.dropped == {"undelivered_at_shutdown": 30}


def test_flushes_in_quick_succession_complete_once_the_work_is_done(
    pocketbase: PocketBaseServer, website: Website
) -> None:
    # Short flushes one after the other while the writer retries: each flush's number must be
    # served by the round that its wake-up ends. The worker used to remember requests in a
    # flag that it cleared after serving the previous one, and served the number it read
    # before waiting: every new request ended a wait that served the one before it, and
    # flush() kept returning False long after everything was written.
    down = threading.Event()
    down.set()

    def plan(method: str, path: str, number: int) -> str:
        return "error" if down.is_set() and path.startswith("/api/batch") else "pass"

    with FaultProxy(pocketbase.url, plan) as proxy:
        sdk = start_sdk(pocketbase, website, url=proxy.url)
        try:
            for number in range(20):
                sdk.track_api_event(
                    environ(f"198.51.100.{number + 1}"), page_view(website.domain, "/")
                )
            threading.Timer(1.0, down.clear).start()
            deadline = time.monotonic() + 30
            while not sdk.flush(timeout=0.02):
                assert time.monotonic() < deadline, "flush never completed"
            assert sdk.stats().written == 20
        finally:
            sdk.shutdown(timeout=10)
