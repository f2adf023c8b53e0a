"""Counters that account for every tracking call, and waiting on them.

Every call the SDK accepts is acknowledged exactly once: written to
PocketBase, or dropped with a reason. ``flush`` waits on that ledger.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

__all__ = [
    "CallParts",
    "DropReason",
    "InternalErrors",
    "Ledger",
    "SkoposStats",
    "bot",
    "invalid",
]


class DropReason(str, Enum):
    """Why a tracking call was not written: the keys of ``stats().dropped``.

    Besides these, a call that fails validation counts as ``invalid:<code>`` (the codes of
    ``_tracking.payload.REJECTION_REASONS``) and a bot as ``bot:<code>``: see ``invalid``
    and ``bot``.
    """

    QUEUE_FULL = "queue_full"  # the queue was full: the call was refused at once
    BODY_TOO_LARGE = "body_too_large"  # a body over 16 KiB: refused at the call, never queued
    AFTER_SHUTDOWN = "after_shutdown"  # called after shutdown()
    UNKNOWN_SITE = "unknown_site"  # no website with that tracking id
    # A /collect message for a tracking id this SDK is not configured for (site_id and
    # collect_site_ids): someone else's script pointed at this endpoint.
    SITE_NOT_SERVED = "site_not_served"
    SITE_ARCHIVED = "site_archived"
    LOCALHOST = "localhost"  # from localhost, and the site disables localhost tracking
    OFF_DOMAIN = "off_domain"  # the page is not on the site's domain
    IP_BLACKLISTED = "ip_blacklisted"
    # Behind a trusted proxy whose header named no usable client address, on a site with
    # an IP blacklist (which could not be applied).
    NO_CLIENT_IP = "no_client_ip"
    IDENTIFY_WITHOUT_REQUEST = "identify_without_request"
    INTERNAL_ERROR = "internal_error"  # a bug: logged with its traceback
    SPOOL_FULL = "spool_full"  # spool_dir holds spool_max_bytes already
    SPOOL_CORRUPT = "spool_corrupt"  # journaled, then unreadable (a damaged disk)
    UNDELIVERED_AT_SHUTDOWN = "undelivered_at_shutdown"  # shutdown's deadline passed first
    REJECTED_BY_POCKETBASE = "rejected_by_pocketbase"  # refused for good (a validation error)
    WORKER_EXITED = "worker_exited"  # the worker process died holding it
    PRIVACY_SIGNAL = "privacy_signal"  # Sec-GPC / DNT, with privacy_signal_action="drop"
    BEFORE_SEND = "before_send"  # the site's before_send hook returned None
    BEFORE_SEND_ERROR = "before_send_error"  # the hook raised or returned something unusable

    def __str__(self) -> str:
        return self.value


def invalid(code: str) -> str:
    """The drop reason of a call that failed validation with ``code``.

    >>> invalid("invalid_json")
    'invalid:invalid_json'
    """
    return f"invalid:{code}"


def bot(code: str) -> str:
    """The drop reason of a call from a bot, detected by rule ``code``.

    >>> bot("ua_list")
    'bot:ua_list'
    """
    return f"bot:{code}"


def _key(reason: DropReason | str) -> str:
    # Plain strings in the counters: they cross the worker-process pipe (marshal) and
    # compare and print as users read them in stats().
    return reason.value if isinstance(reason, DropReason) else reason


@dataclass(frozen=True)
class SkoposStats:
    """A snapshot of what the SDK did since ``init``; ``skopos.stats()`` returns one.

    - ``accepted``: tracking calls queued;
    - ``written``: accepted calls whose records are in PocketBase;
    - ``dropped``: calls not written, by reason (``queue_full``, ``bot:ua_list``,
      ``ip_blacklisted``, ``invalid:invalid_json``, ``site_archived``, ...: see
      ``DropReason``);
    - ``queue_depth``: calls waiting for the worker; ``pending``: calls the worker
      holds (in a batch not yet written, or JS errors awaiting their interval);
    - ``records``: records written, by collection; ``retries``: PocketBase requests
      repeated after a transient failure; ``last_error``: the latest one, if any;
    - ``connected``: whether the SDK has reached PocketBase (authenticated, read the
      salt and the site); until then calls wait in the queue and ``last_error`` says why;
    - ``realtime_connected``: whether site rules currently follow PocketBase live
      (False with ``realtime=False``; polling still applies);
    - ``anonymous``: calls written without identification because the visitor sent a
      privacy signal (``respect_privacy_signals``; they are also in ``written``);
    - ``spoofed_forwarding_headers``: requests from a peer that is not a trusted
      proxy but sent ``X-Forwarded-For`` & co (ignored; a steady count usually
      means ``trusted_proxies`` should name your proxy);
    - ``spooled``: accepted calls left in ``spool_dir`` at shutdown, for the next
      process to write (not lost, not dropped);
    - ``recovered``: calls that earlier processes left in ``spool_dir``, by outcome
      in this one (``written``, or a drop reason); they are not in ``accepted``. (A
      ``/collect`` call is journaled as the events it became: each counts here.)
    - ``dropped_items``: parts of ``/collect`` messages left out while the rest was kept
      (a batch's event without a name, an error without a message), by reason
      (``invalid:<code>``); a message left with nothing counts in ``dropped`` as well.

    ``accepted + dropped['queue_full'] == calls``, and once ``flush()`` returns True,
    ``written + sum(dropped) - dropped['queue_full'] + spooled == accepted``. A
    ``/collect`` call is one call however many events it carries: written once all of them
    are, else dropped with the reason of the first one dropped.
    """

    accepted: int
    written: int
    dropped: dict[str, int]
    queue_depth: int
    pending: int
    records: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    spoofed_forwarding_headers: int = 0
    connected: bool = False
    anonymous: int = 0
    realtime_connected: bool = False
    last_error: str | None = None
    last_error_at: float | None = None
    spooled: int = 0
    recovered: dict[str, int] = field(default_factory=dict)
    dropped_items: dict[str, int] = field(default_factory=dict)


class CallParts:
    """The activities one tracking call became, when it became several (a ``/collect``
    message: up to 100 events, or 10 errors). They are written and dropped one by one; the
    call is acknowledged once, when the last of them is (``Ledger.ack_parts``): written if
    every one was, else dropped with the first reason. Only the ledger changes it, under
    its lock.
    """

    __slots__ = ("dropped", "left")

    def __init__(self, count: int) -> None:
        self.left = count  # activities not yet written or dropped
        self.dropped: str | None = None  # why the first one dropped was

    def __repr__(self) -> str:
        return f"CallParts(left={self.left}, dropped={self.dropped!r})"


class Ledger:
    """Worker-side counters; the request path only touches the queue's counters."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self.acknowledged = 0
        self.written = 0
        self.dropped: Counter[str] = Counter()
        self.records: Counter[str] = Counter()
        self.spooled = 0
        self.recovered: Counter[str] = Counter()
        self.recovered_expected = 0  # calls claimed from dead processes' spools
        self.dropped_items: Counter[str] = Counter()
        # Calls split into activities whose last activity is not settled yet.
        self._open_parts: set[CallParts] = set()
        # flush() barriers: a request's number, and the latest one the worker completed
        # (everything before it written, acknowledged or not: session touches are not).
        self.flush_requested = 0
        self.flush_completed = 0
        self.retries = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.connected = False  # the worker reached PocketBase (set by the worker)

    def ack_written(self, count: int = 1) -> None:
        """``count`` accepted calls reached PocketBase."""
        with self._condition:
            self.written += count
            self.acknowledged += count
            self._condition.notify_all()

    def ack_dropped(self, reason: DropReason | str, count: int = 1) -> None:
        """``count`` accepted calls will never be written, because of ``reason``."""
        with self._condition:
            self.dropped[_key(reason)] += count
            self.acknowledged += count
            self._condition.notify_all()

    def open_parts(self, count: int) -> CallParts:
        """An accepted call became ``count`` activities: acknowledge it when all are."""
        parts = CallParts(count)
        with self._condition:
            self._open_parts.add(parts)
        return parts

    def ack_parts(self, parts: Iterable[CallParts], reason: DropReason | str | None = None) -> int:
        """One activity of each of ``parts`` was written (``reason`` None) or dropped; a call
        whose last activity this was is acknowledged. Returns how many calls were."""
        with self._condition:
            acknowledged = self.acknowledged
            for part in parts:
                if part.left <= 0:
                    continue  # acknowledged already (kept in the spool at shutdown)
                part.left -= 1
                if reason is not None and part.dropped is None:
                    part.dropped = _key(reason)
                if part.left == 0:
                    self._open_parts.discard(part)
                    self.acknowledged += 1
                    if part.dropped is None:
                        self.written += 1
                    else:
                        self.dropped[part.dropped] += 1
            self._condition.notify_all()
            return self.acknowledged - acknowledged

    def count_dropped_items(self, reasons: Iterable[str]) -> None:
        """Parts of calls left out while the rest of each call was kept."""
        with self._condition:
            self.dropped_items.update(reasons)

    def ack_spooled_activities(self, activities: int) -> int:
        """At shutdown, ``activities`` of this process's activities stay in the spool for
        the next process: acknowledge the calls they belong to as spooled (a call split
        into activities counts once, whatever is left of it); returns that number.

        Every activity of an unsettled split call is in the spool by then (the worker
        settled the others), so the calls are the activities, less the split calls'
        activities, plus those calls."""
        with self._condition:
            split = sum(part.left for part in self._open_parts)
            calls = max(0, activities - split) + len(self._open_parts)
            for part in self._open_parts:
                part.left = 0  # what comes later for them was counted here
            self._open_parts.clear()
            self.spooled += calls
            self.acknowledged += calls
            self._condition.notify_all()
            return calls

    def ack_spooled(self, count: int) -> None:
        """``count`` accepted calls stay in the spool for the next process."""
        with self._condition:
            self.spooled += count
            self.acknowledged += count
            self._condition.notify_all()

    def expect_recovered(self, count: int) -> None:
        """``count`` calls from an earlier process's spool are to be written."""
        with self._condition:
            self.recovered_expected += count

    def count_recovered(self, outcome: DropReason | str, count: int) -> None:
        """``count`` calls from an earlier process's spool were written (``"written"``) or
        dropped (a reason)."""
        with self._condition:
            self.recovered[_key(outcome)] += count
            self._condition.notify_all()

    def count_records(self, collection: str, count: int) -> None:
        """Records written to ``collection``."""
        with self._condition:
            self.records[collection] += count

    def note_error(self, message: str, *, retried: bool) -> None:
        """Remember the latest PocketBase failure."""
        with self._condition:
            self.last_error = message
            self.last_error_at = time.time()
            if retried:
                self.retries += 1

    def request_flush(self, generation: int | None = None) -> int:
        """Number a flush request (or adopt ``generation``, a host's number)."""
        with self._condition:
            self.flush_requested = max(self.flush_requested + (generation is None), generation or 0)
            return self.flush_requested

    def complete_flush(self, generation: int) -> None:
        """The worker wrote everything that came before request ``generation``."""
        with self._condition:
            self.flush_completed = max(self.flush_completed, generation)
            self._condition.notify_all()

    def merge(self, delta: Mapping[str, Any]) -> None:
        """Add what a worker process counted since its last report (``_runtime.child``)."""
        with self._condition:
            self.acknowledged += delta.get("acknowledged", 0)
            self.written += delta.get("written", 0)
            self.dropped.update(delta.get("dropped", {}))
            self.records.update(delta.get("records", {}))
            self.retries += delta.get("retries", 0)
            self.spooled += delta.get("spooled", 0)
            self.recovered.update(delta.get("recovered", {}))
            self.dropped_items.update(delta.get("dropped_items", {}))
            self.recovered_expected += delta.get("recovered_expected", 0)
            self.flush_completed = max(self.flush_completed, delta.get("flush_completed", 0))
            self.connected = bool(delta.get("connected", self.connected))
            if delta.get("last_error"):
                self.last_error = delta["last_error"]
                self.last_error_at = delta.get("last_error_at")
            self._condition.notify_all()

    def wait_acknowledged(self, target: int, timeout: float, flush: int = 0) -> bool:
        """Wait until ``target`` calls, and every call recovered from a spool so far,
        are acknowledged (and flush request ``flush`` completed); False on timeout."""

        def done() -> bool:
            recovered = sum(self.recovered.values())
            return (
                self.acknowledged >= target
                and recovered >= self.recovered_expected
                and self.flush_completed >= flush
            )

        with self._condition:
            return self._condition.wait_for(done, timeout)


class InternalErrors:
    """Bugs caught in the background threads: each is logged by its thread, noted in the
    ledger's ``last_error``, and with ``strict`` kept for the next public call to raise."""

    def __init__(self, ledger: Ledger, *, strict: bool) -> None:
        self._ledger = ledger
        self._strict = strict
        self._latest: BaseException | None = None

    def note(self, error: BaseException) -> None:
        """Record ``error`` (its thread carries on)."""
        self._ledger.note_error(f"internal error: {error!r}", retried=False)
        self.keep(error)

    def keep(self, error: BaseException) -> None:
        """Keep ``error`` for ``take`` (strict mode only), without noting it in the ledger."""
        if self._strict:
            self._latest = error

    def take(self) -> BaseException | None:
        """The latest error kept since the last call, if any."""
        error, self._latest = self._latest, None
        return error
