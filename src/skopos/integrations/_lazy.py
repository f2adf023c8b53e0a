"""One SDK per process for the integrations that start it lazily (Flask, Django).

The SDK starts on first use, not at import or app creation, so CLI commands
(``flask routes``, ``manage.py migrate``) never start its threads and a
``gunicorn --preload`` master starts no threads its workers would inherit.

Starting takes milliseconds and never fails because of PocketBase: the SDK connects in the
background (calls wait in its queue meanwhile). What can fail is the configuration (a
missing or bad option), which no retry can fix while the process runs: the error is logged
once and kept, and raised again at each use without a new attempt.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import TypeVar

from skopos._sdk import SkoposSDK

__all__ = ["LazySdk"]

logger = logging.getLogger("skopos")

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
        # (error, its traceback): raised again, without a new attempt, until ``shutdown``.
        self._failure: tuple[Exception, TracebackType | None] | None = None

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
            except Exception:  # a configuration error, logged once by _start: 503
                sdk = None
            return action(sdk)

    def _start(self) -> SkoposSDK:
        if self._sdk is not None:
            return self._sdk
        if self._failure is not None:
            error, traceback = self._failure
            # Reset the traceback: re-raising the same error would otherwise grow it.
            raise error.with_traceback(traceback)
        try:
            self._sdk = self._factory()
        except Exception as exc:
            self._failure = (exc, exc.__traceback__)
            logger.error(
                "skopos: the SDK cannot start (%s: %s); tracking is off in this process until"
                " the configuration is fixed",
                type(exc).__name__,
                exc,
            )
            raise
        return self._sdk

    def shutdown(self, timeout: float) -> None:
        with self._turns:
            sdk, self._sdk, self._failure = self._sdk, None, None  # the next use starts anew
        if sdk is not None:
            sdk.shutdown(timeout)
