"""The bounded hand-off between request threads and the worker: counts, wake-ups, the lock."""

from __future__ import annotations

import threading
import time

from skopos._queue import WorkQueue


def test_queue_is_bounded_and_counts() -> None:
    queue: WorkQueue[int] = WorkQueue(maxsize=3)
    assert [queue.put(n) for n in range(5)] == [True, True, True, False, False]
    assert (queue.accepted, queue.rejected, len(queue)) == (3, 2, 3)
    assert queue.take(2, timeout=0) == [0, 1]
    assert queue.drain() == [2]
    assert queue.take(10, timeout=0) == []


def test_queue_take_wakes_on_put_and_on_wake() -> None:
    queue: WorkQueue[str] = WorkQueue(maxsize=10)
    threading.Timer(0.05, lambda: queue.put("hello")).start()
    started = time.monotonic()
    assert queue.take(10, timeout=5) == ["hello"]
    threading.Timer(0.05, queue.wake).start()
    assert queue.take(10, timeout=5) == []
    assert time.monotonic() - started < 2


# -- put enters the Condition's own lock directly (the fast path) -----------------------------


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


def test_queue_is_bounded_by_bytes_too() -> None:
    queue: WorkQueue[str] = WorkQueue(maxsize=100, max_bytes=1000)
    assert [queue.put(name, 400) for name in "abc"] == [True, True, False]
    assert (queue.bytes, queue.rejected) == (800, 1)
    assert queue.put("small", 200)  # what fits still fits
    assert queue.take(1, timeout=0) == ["a"]
    assert queue.bytes == 600
    assert queue.put("d", 400)
    assert queue.drain() == ["b", "small", "d"]
    assert queue.bytes == 0
