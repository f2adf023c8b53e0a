"""Fast paths and caches of the request path and the worker give the slow paths' answers."""

from __future__ import annotations

import threading
import time

from skopos._queue import WorkQueue
from skopos._snapshot import MAX_HEADER_LENGTH, snapshot_from_scope

# -- ASGI snapshot ---------------------------------------------------------------------------


def test_scope_snapshot_decodes_values_as_latin1_and_cuts_long_ones() -> None:
    exact = b"a" * MAX_HEADER_LENGTH
    scope = {
        "type": "http",
        "headers": [
            (b"user-agent", exact),
            (b"accept-language", b"x" * (MAX_HEADER_LENGTH + 5)),
            (b"sec-ch-ua", bytearray(b"\xe9t\xe9")),
            (b"sec-fetch-mode", memoryview(b"cors")),  # not bytes: ignored, as before
        ],
    }
    snap = snapshot_from_scope(scope)
    assert snap.user_agent == exact.decode()
    assert snap.accept_language == "x" * MAX_HEADER_LENGTH
    assert snap.sec_ch_ua == "\xe9t\xe9"
    assert snap.sec_fetch_mode is None


def test_scope_snapshot_header_names_in_any_case_and_shape() -> None:
    scope = {
        "type": "http",
        "headers": [
            (b"X-Forwarded-For", b"1.1.1.1"),
            (bytearray(b"x-forwarded-for"), b"9.9.9.9"),  # unhashable: skipped
            (b"x-forwarded-for", b"2.2.2.2"),
            (b"X-REAL-IP", b"3.3.3.3"),
            ("user-agent", b"str names are not ASGI"),
            ("User-Agent", b"nor in upper case"),
            (b"Host", b"example.com"),
            (b"cf-connecting-ip", "not bytes"),
            None,
            (b"forwarded", b"for=4.4.4.4", b"extra"),
            [b"cf-ipcountry", b"DE"],
        ],
    }
    snap = snapshot_from_scope(scope)
    assert snap.x_forwarded_for == "1.1.1.1, 2.2.2.2"
    assert snap.x_real_ip == "3.3.3.3"
    assert snap.user_agent is None
    assert snap.cf_connecting_ip is None
    assert snap.forwarded is None
    assert snap.cf_ipcountry == "DE"


def test_scope_snapshot_joined_repeats_stay_bounded() -> None:
    half = b"b" * (MAX_HEADER_LENGTH - 10)
    snap = snapshot_from_scope({"type": "http", "headers": [(b"x-real-ip", half)] * 3})
    assert snap.x_real_ip is not None
    assert len(snap.x_real_ip) == MAX_HEADER_LENGTH
    assert snap.x_real_ip.startswith(half.decode() + ", bbb")


# -- the queue -------------------------------------------------------------------------------


def test_put_on_the_raw_lock_wakes_a_waiting_take_every_time() -> None:
    queue: WorkQueue[int] = WorkQueue(maxsize=100)
    got: list[int] = []

    def consume() -> None:
        while len(got) < 20:
            got.extend(queue.take(100, timeout=10))

    consumer = threading.Thread(target=consume)
    consumer.start()
    started = time.monotonic()
    for number in range(20):
        time.sleep(0.005)  # the consumer is waiting again before each put
        assert queue.put(number)
    consumer.join(10)
    assert got == list(range(20))
    assert time.monotonic() - started < 5
    assert (queue.accepted, queue.rejected) == (20, 0)


def test_put_keeps_the_lock_usable_after_a_full_queue() -> None:
    queue: WorkQueue[int] = WorkQueue(maxsize=1)
    assert queue.put(1)
    assert not queue.put(2)
    assert queue.take(5, timeout=0) == [1]
    assert queue.put(3)
    assert queue.drain() == [3]
