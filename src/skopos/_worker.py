"""The background worker: queue → pipeline → sessionizer → writer, on one thread.

It decides *when* to write: at once (``batch=False``: whatever arrived since
the last write, so load batches naturally), or when ``max_batch_size``
activities are held or the oldest is ``batch_interval`` old (``batch=True``).
JS error groups are written every ``js_error_batch_interval``. A flush request
writes everything now. While PocketBase cannot be reached, calls wait (the
queue stays bounded) and nothing accepted is dropped before the shutdown
deadline.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from skopos._activity import Activity, TrackCall
from skopos._config import SkoposOptions
from skopos._exceptions import PocketBaseError
from skopos._js_errors import ErrorAggregator
from skopos._pb_client import PocketBaseClient
from skopos._pipeline import Pipeline
from skopos._queue import WorkQueue
from skopos._sessions import PendingWrite, Sessionizer
from skopos._site_rules import SiteRegistry
from skopos._stats import Ledger
from skopos._writer import Backoff, BatchWriter

__all__ = ["Worker"]

logger = logging.getLogger("skopos")

_TAKE_AT_ONCE = 1000
_IDLE_WAKEUP = 1.0  # seconds; the longest the loop sleeps without a reason


class Worker:
    """Owns the thread that turns queued calls into PocketBase records."""

    def __init__(
        self,
        *,
        queue: WorkQueue[TrackCall],
        pipeline: Pipeline,
        sessionizer: Sessionizer,
        sites: SiteRegistry,
        client: PocketBaseClient,
        ledger: Ledger,
        options: SkoposOptions,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._queue = queue
        self._pipeline = pipeline
        self._sessionizer = sessionizer
        self._sites = sites
        self._ledger = ledger
        self._options = options
        self._clock = clock
        self._stop = threading.Event()
        self._flush = threading.Event()
        self._deadline: float | None = None
        self._writer = BatchWriter(
            client, ledger, on_dropped_parent=sessionizer.forget, stop=self._stop
        )
        self._writer.deadline_passed = self._deadline_passed
        self._backoff = Backoff()
        self._held: list[TrackCall] = []
        self._activities: list[Activity] = []
        self._oldest_activity = 0.0
        self._errors = ErrorAggregator()
        self._errors_due = clock() + options.js_error_batch_interval
        self._thread: threading.Thread | None = None
        self.internal_error: BaseException | None = None

    # -- control, from other threads -------------------------------------------------

    @property
    def alive(self) -> bool:
        """Whether the worker thread is running."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start (or restart) the thread."""
        if self.alive or self._stop.is_set():
            return
        self._thread = threading.Thread(target=self._run, name="skopos-worker", daemon=True)
        self._thread.start()

    def request_flush(self) -> None:
        """Write everything held now, without waiting for intervals."""
        self._flush.set()
        self._queue.wake()

    def stop(self, timeout: float) -> None:
        """Write what it can within ``timeout`` seconds, drop and count the rest, and end."""
        self._deadline = self._clock() + timeout
        self._stop.set()
        self._queue.wake()
        if self._thread is not None:
            self._thread.join(timeout + 1.0)

    def _deadline_passed(self) -> bool:
        return self._deadline is not None and self._clock() > self._deadline

    # -- the loop -----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                if self._step():
                    return
            except Exception as exc:  # never let the thread die for good
                logger.exception("skopos: internal error in the worker")
                self._ledger.note_error(f"internal error: {exc!r}", retried=False)
                if self._options.strict:
                    self.internal_error = exc
                self._stop.wait(0.1)

    def _step(self) -> bool:
        """One round; True when the worker is done for good."""
        stopping = self._stop.is_set()
        flushing = stopping or self._flush.is_set()
        wait = 0.0 if flushing or self._held else self._seconds_until_due()
        calls = self._held + self._queue.take(_TAKE_AT_ONCE, wait)
        self._held = []
        self._prepare(calls)

        now = self._clock()
        if self._activities and (
            flushing
            or not self._options.batch
            or len(self._activities) >= self._options.max_batch_size
            or now - self._oldest_activity >= self._options.batch_interval
        ):
            self._write_activities()
        if self._errors.occurrences and (flushing or now >= self._errors_due or self._errors.full):
            self._write_errors()
        if self._sites.refresh_due():
            self._refresh_sites()

        idle = not (len(self._queue) or self._held or self._activities or self._errors.occurrences)
        if idle and stopping:
            return True
        if idle and flushing:
            self._flush.clear()
        if self._deadline_passed():
            self._give_up()
            return True
        return False

    def _seconds_until_due(self) -> float:
        now = self._clock()
        due = now + _IDLE_WAKEUP
        if self._activities:
            due = min(due, self._oldest_activity + self._options.batch_interval)
        if self._errors.occurrences:
            due = min(due, self._errors_due)
        return max(0.0, due - now)

    def _prepare(self, calls: list[TrackCall]) -> None:
        for index, call in enumerate(calls):
            try:
                result = self._pipeline.prepare(call)
            except PocketBaseError as exc:
                # Site rules could not be read: keep the calls, try again later.
                self._held = calls[index:]
                self._pause(exc)
                return
            except Exception as exc:
                logger.exception("skopos: internal error preparing a tracking call")
                self._ledger.ack_dropped("internal_error")
                if self._options.strict:
                    self.internal_error = exc
                continue
            if isinstance(result, str):
                self._ledger.ack_dropped(result)
                logger.debug("skopos: dropped a %s call: %s", call.kind, result)
                continue
            if not self._activities:
                self._oldest_activity = self._clock()
            self._activities.append(result)

    def _pause(self, error: PocketBaseError) -> None:
        self._ledger.note_error(str(error), retried=True)
        delay = self._backoff.next_delay(getattr(error, "retry_after", None))
        logger.log(
            logging.WARNING if self._backoff.failures == 1 else logging.DEBUG,
            "skopos: PocketBase unavailable (%s); retrying in %.1fs",
            error,
            delay,
        )
        end = self._clock() + delay
        while not self._deadline_passed() and self._clock() < end:
            self._stop.wait(min(0.1, end - self._clock()))

    def _write_activities(self) -> None:
        try:
            self._sessionizer.resolve(self._activities)
        except PocketBaseError as exc:
            self._pause(exc)
            return  # the activities stay; the next round tries again
        self._backoff.reset()
        activities, self._activities = self._activities, []
        writes = self._sessionizer.assign(activities)
        for activity in activities:
            if activity.type == "jsError":
                self._errors.add(
                    site_record_id=activity.site.record_id,
                    message=activity.error_message or "",
                    stack_trace=activity.stack_trace,
                    url=activity.url,
                    session_id=activity.session_id,
                    seen_at=activity.at,
                )
        self._writer.write(writes)

    def _write_errors(self) -> None:
        self._errors_due = self._clock() + self._options.js_error_batch_interval
        writes: list[PendingWrite] = []
        for group in self._errors.take():
            writes.extend(group.writes())
        self._writer.write(writes)

    def _refresh_sites(self) -> None:
        try:
            self._sites.refresh()
        except PocketBaseError as exc:
            logger.debug("skopos: site rules refresh failed: %s", exc)

    def _give_up(self) -> None:
        """The shutdown deadline passed: count what is left as undelivered."""
        left = self._held + self._queue.drain()
        self._held = []
        count = len(left) + len(self._activities) + self._errors.occurrences
        self._activities = []
        self._errors.take()
        if count:
            logger.warning("skopos: shutdown deadline passed; %d tracking calls undelivered", count)
            self._ledger.ack_dropped("undelivered_at_shutdown", count)
