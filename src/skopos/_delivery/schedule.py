"""When the worker takes calls, writes, and sleeps: pure decisions over a snapshot of its state.

The worker loop (``worker.py``) does the I/O. Each round it describes where it stands in a
``Situation`` and asks ``plan_take`` how to wait for calls, then, once the calls are
prepared, ``plan_writes`` what to write. Nothing here reads a clock, a lock or a socket,
so every choice is unit-tested on its own (``tests/delivery/test_schedule.py``).

The rules, in short:

- a round never waits while it has work it can do now (held calls, a spool backlog with
  room to read it, a batch that is due and a writer ready to take it);
- otherwise it sleeps until the next thing falls due (a batch, JS errors), at most
  ``IDLE_WAKEUP``;
- while a batch waits for the writer, only the writer (or a flush, or a full batch's worth
  of new calls) ends the sleep: waking for anything less would spin on the queue for as
  long as PocketBase takes to commit, taking the host's GIL all along;
- for ``POLL_AFTER_CALLS`` after a call, new calls are found by polling every ``LINGER``
  rather than by letting each call wake the worker (a wake-up costs the calling request
  thread ~8 µs); an idle worker sleeps until a call wakes it.
"""

from __future__ import annotations

from dataclasses import dataclass

from skopos._config import SkoposOptions
from skopos._queue import POLL_AFTER_CALLS, TAKE_AT_ONCE

__all__ = [
    "IDLE_WAKEUP",
    "LINGER",
    "Policy",
    "Situation",
    "Take",
    "Writes",
    "is_idle",
    "plan_take",
    "plan_writes",
    "seconds_until_due",
    "write_due",
]

# batch=False: a write waits this long for company (or for max_batch_size calls), so a busy
# host hands the worker batches instead of one call at a time, each a GIL hand-off.
LINGER = 0.05
IDLE_WAKEUP = 1.0  # the longest a round sleeps without a reason


@dataclass(frozen=True, slots=True)
class Policy:
    """The options that shape the schedule."""

    batch: bool = False
    batch_interval: float = 10.0
    max_batch_size: int = 100
    max_queue_size: int = 10_000

    @classmethod
    def of(cls, options: SkoposOptions) -> Policy:
        """The policy of an SDK's options."""
        return cls(
            options.batch, options.batch_interval, options.max_batch_size, options.max_queue_size
        )

    @property
    def hold_for(self) -> float:
        """How long the oldest activity may wait for company before it is written."""
        return self.batch_interval if self.batch else LINGER


@dataclass(frozen=True, slots=True)
class Situation:
    """Where the worker stands (times are the worker's monotonic clock)."""

    now: float
    flushing: bool = False  # a flush or a stop asks to write everything now
    held: int = 0  # calls that failed to prepare (PocketBase unreachable), to retry first
    activities: int = 0  # prepared, not yet handed to the writer
    oldest_activity: float = 0.0
    room: int = TAKE_AT_ONCE  # activities the read-ahead may still hold
    spooling: bool = False
    spool_backlog: int = 0
    writer_ready: bool = True  # nothing waits behind the batch in flight
    last_call: float = float("-inf")
    error_occurrences: int = 0
    errors_due: float = float("inf")
    errors_full: bool = False


@dataclass(frozen=True, slots=True)
class Take:
    """How to wait for calls this round."""

    wait_for_writer: bool  # memory is full: wait for the writer, take nothing
    limit: int  # calls to take at most
    timeout: float  # seconds to wait for them at most
    wake_at: int  # queued calls that end the wait early


@dataclass(frozen=True, slots=True)
class Writes:
    """What to hand to the writer this round."""

    activities: bool
    errors: bool


def write_due(policy: Policy, s: Situation) -> bool:
    """Enough activities, or the oldest old enough, to write them now.

    >>> write_due(Policy(), Situation(now=1.0, activities=1, oldest_activity=0.99))
    False
    >>> write_due(Policy(), Situation(now=1.0, activities=100, oldest_activity=0.99))
    True
    """
    if not s.activities:
        return False
    if s.activities >= policy.max_batch_size:
        return True
    return s.now - s.oldest_activity >= policy.hold_for


def seconds_until_due(policy: Policy, s: Situation) -> float:
    """How long the worker may sleep before something falls due (0 when something is)."""
    due = s.now + IDLE_WAKEUP
    if s.activities and s.writer_ready:
        due = min(due, s.oldest_activity + policy.hold_for)
    if s.error_occurrences:
        due = min(due, s.errors_due)
    return max(0.0, due - s.now)


def plan_take(policy: Policy, s: Situation) -> Take:
    """How to wait for calls: at once when there is work, else until something is due.

    >>> plan_take(Policy(), Situation(now=100.0))  # idle: sleep until a call comes
    Take(wait_for_writer=False, limit=1000, timeout=1.0, wake_at=1)
    """
    if not s.spooling and s.room <= 0:
        return Take(True, 0, IDLE_WAKEUP, 1)
    writable = s.writer_ready and (write_due(policy, s) or (s.flushing and s.activities > 0))
    reading = s.spooling and s.spool_backlog > 0 and s.room > 0
    busy = s.held > 0 or reading or writable
    timeout = 0.0 if busy else seconds_until_due(policy, s)
    limit = TAKE_AT_ONCE if s.spooling else min(TAKE_AT_ONCE, s.room)
    if s.flushing:
        wake_at = 1
    elif s.activities:
        # A batch waits (for its interval, or for the writer): only a full batch's worth of
        # calls, the writer finishing, or a flush ends the sleep.
        wake_at = max(policy.max_batch_size - s.activities, 0) or policy.max_queue_size
    elif s.now - s.last_call < POLL_AFTER_CALLS:
        wake_at = policy.max_batch_size
        timeout = min(timeout, LINGER)
    else:
        wake_at = 1
    return Take(False, limit, timeout, wake_at)


def plan_writes(policy: Policy, s: Situation) -> Writes:
    """What to write after the calls of a round are prepared."""
    activities = s.writer_ready and ((s.flushing and s.activities > 0) or write_due(policy, s))
    errors = s.error_occurrences > 0 and (s.flushing or s.now >= s.errors_due or s.errors_full)
    return Writes(activities, errors)


def is_idle(s: Situation, *, queued: int, writer_idle: bool) -> bool:
    """Nothing queued, held, prepared, spooled, deferred or in flight.

    >>> is_idle(Situation(now=0.0), queued=0, writer_idle=True)
    True
    """
    busy = (
        queued
        or s.held
        or s.activities
        or s.error_occurrences
        or s.spool_backlog
        or not writer_idle
    )
    return not busy
