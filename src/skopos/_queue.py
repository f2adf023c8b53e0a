"""The bounded hand-off between request threads and the background worker.

Our own deque + Condition rather than ``queue.Queue``: the request path needs a
non-blocking put that reports "full" without raising, and the worker needs to
take everything available in one call.

Bounded twice: by count (``maxsize``) and by the bytes its items hold (``max_bytes``; each
``put`` says what its item holds), so a flood of large calls cannot take more memory than
the budget while the worker cannot keep up (PocketBase away, not connected yet).
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

__all__ = ["POLL_AFTER_CALLS", "TAKE_AT_ONCE", "WorkQueue"]

T = TypeVar("T")

# For this long after its last call a consumer polls (``take`` with a short timeout and a high
# ``wake_at``) rather than let the next call wake it: the wake-up (a futex wake, often a context
# switch on the caller's core) costs that call ~8 µs, as much as the rest of a call after a
# pause (a put 2 ms after the last: 17-19 µs median with the wake-up, 9-11 µs without).
# A consumer idle for longer sleeps until a call wakes it: an idle host is not woken 20
# times a second.
POLL_AFTER_CALLS = 5.0  # seconds
# The most calls a consumer takes in one ``take``: a round's work stays bounded.
TAKE_AT_ONCE = 1000


class WorkQueue(Generic[T]):
    """A FIFO of at most ``maxsize`` items holding at most ``max_bytes``; ``put`` never blocks.

    ``accepted`` and ``rejected`` count puts that succeeded and that found the
    queue full; both only change under the lock. ``bytes`` is what the queued items hold.

    Example::

        >>> queue: WorkQueue[str] = WorkQueue(10, max_bytes=100)
        >>> queue.put("a", 60), queue.put("b", 60), queue.take(10, 0.0), queue.bytes
        (True, False, ['a'], 0)
    """

    def __init__(self, maxsize: int, *, max_bytes: int = 1 << 62) -> None:
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: deque[T] = deque()
        self._sizes: deque[int] = deque()
        self._lock = threading.Lock()
        self._condition = threading.Condition(self._lock)
        self._worker_waiting = False
        self._wake_at = 1
        self._wakeup = False
        self.accepted = 0
        self.rejected = 0

    def put(self, item: T, size: int = 0) -> bool:
        """Append ``item``, which holds ``size`` bytes; False (and counted) when the queue is
        full (by count or by bytes)."""
        # The Condition's own lock, entered directly: Condition.__enter__/__exit__ are Python
        # calls, a quarter of a put. notify() only needs the lock held, whoever entered it.
        with self._lock:
            if len(self._items) >= self.maxsize or self.bytes + size > self.max_bytes:
                self.rejected += 1
                return False
            self._items.append(item)
            self._sizes.append(size)
            self.bytes += size
            self.accepted += 1
            if self._worker_waiting and len(self._items) >= self._wake_at:
                self._condition.notify()
            return True

    def take(self, max_items: int, timeout: float, *, wake_at: int = 1) -> list[T]:
        """Up to ``max_items`` items, waiting at most ``timeout`` s until ``wake_at``
        are queued (a worker that lingers to fill a batch is not woken by every put).

        Returns early, possibly empty, after ``wake()``.
        """
        with self._condition:
            if len(self._items) < wake_at and not self._wakeup and timeout > 0:
                self._worker_waiting = True
                self._wake_at = max(1, wake_at)
                try:
                    self._condition.wait(timeout)
                finally:
                    self._worker_waiting = False
            self._wakeup = False
            count = min(max_items, len(self._items))
            sizes = self._sizes
            self.bytes -= sum([sizes.popleft() for _ in range(count)])
            return [self._items.popleft() for _ in range(count)]

    def wake(self) -> None:
        """Make a waiting (or the next) ``take`` return at once."""
        with self._condition:
            self._wakeup = True
            self._condition.notify_all()

    def drain(self) -> list[T]:
        """Remove and return everything queued."""
        with self._condition:
            items = list(self._items)
            self._items.clear()
            self._sizes.clear()
            self.bytes = 0
            return items

    def __len__(self) -> int:
        return len(self._items)
