"""One SDK per process for the integrations that start it lazily (Flask, Django).

The SDK starts on first use, not at import or app creation, so CLI commands
(``flask routes``, ``manage.py migrate``) never connect to PocketBase and a
``gunicorn --preload`` master starts no threads its workers would inherit.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import TypeVar

from skopos._sdk import SkoposSDK

__all__ = ["RETRY_INTERVAL", "LazySdk"]

logger = logging.getLogger("skopos")

# After a failed start, the endpoint answers 503 for this long before trying again: a
# PocketBase that is down must not cost every beacon a connection attempt.
RETRY_INTERVAL = 30.0
_T = TypeVar("_T")


class _TicketLock:
    """A lock that lets waiting threads in in the order they came (``threading.Lock`` does not)."""

    def __init__(self) -> None:
        self._reset()
        _TICKET_LOCKS.add(self)

    def _reset(self) -> None:
        self._condition = threading.Condition()
        self._issued = 0
        self._admitted = 0

    @property
    def idle(self) -> bool:
        return self._admitted == self._issued

    def __enter__(self) -> None:
        with self._condition:
            ticket = self._issued
            self._issued += 1
            while self._admitted != ticket:
                self._condition.wait()

    def __exit__(self, *exc_info: object) -> None:
        with self._condition:
            self._admitted += 1
            self._condition.notify_all()


# After fork(), the child has none of the threads that held or awaited these locks: without a
# reset, its first request would wait forever for a turn that never comes.
_TICKET_LOCKS: weakref.WeakSet[_TicketLock] = weakref.WeakSet()


def _reset_ticket_locks() -> None:
    for lock in list(_TICKET_LOCKS):
        lock._reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_ticket_locks)


class LazySdk:
    """One SDK per process, started by ``factory`` on first use; a failure is remembered.

    Requests that arrive while the SDK starts wait for it and are then tracked one at a time,
    in the order they arrived: a visitor's first page views must reach the queue in order
    (the sessionizer takes the last one as the session's exit page).
    """

    def __init__(self, factory: Callable[[], SkoposSDK], sdk: SkoposSDK | None = None) -> None:
        self._factory = factory
        self._sdk = sdk
        self._turns = _TicketLock()
        # (error, its traceback, when): raised again, without a new attempt, for a while.
        self._failure: tuple[Exception, TracebackType | None, float] | None = None

    def peek(self) -> SkoposSDK | None:
        """The SDK if it runs and nobody waits for it (then using it keeps the order)."""
        sdk = self._sdk
        return sdk if sdk is not None and self._turns.idle else None

    def get(self) -> SkoposSDK:
        """The SDK, started now if need be; raises why it cannot start."""
        sdk = self._sdk
        if sdk is not None:
            return sdk
        with self._turns:
            return self._start()

    def run(self, action: Callable[[SkoposSDK | None], _T]) -> _T:
        """``action(sdk)``, or ``action(None)`` when it cannot start (logged)."""
        sdk = self.peek()
        if sdk is not None:
            return action(sdk)
        with self._turns:
            try:
                sdk = self._start()
            except Exception:  # logged by _start; the endpoint answers 503
                sdk = None
            return action(sdk)

    def _start(self) -> SkoposSDK:
        if self._sdk is not None:
            return self._sdk
        if self._failure is not None:
            error, traceback, failed_at = self._failure
            if time.monotonic() - failed_at < RETRY_INTERVAL:
                # Reset the traceback: re-raising the same error would otherwise grow it.
                raise error.with_traceback(traceback)
        try:
            self._sdk = self._factory()
        except Exception as exc:
            self._failure = (exc, exc.__traceback__, time.monotonic())
            logger.error(
                "skopos: the SDK could not start (%s: %s); next attempt in %.0f s at the earliest",
                type(exc).__name__,
                exc,
                RETRY_INTERVAL,
            )
            raise
        self._failure = None
        return self._sdk

    def shutdown(self, timeout: float) -> None:
        with self._turns:
            sdk, self._sdk, self._failure = self._sdk, None, None  # the next use starts anew
        if sdk is not None:
            sdk.shutdown(timeout)
