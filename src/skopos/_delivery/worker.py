"""The background worker: queue → pipeline → sessionizer → writer thread.

It decides *when* to write: with ``batch=False``, once the oldest activity held
is 50 ms old or ``max_batch_size`` are held (and the writer thread is ready:
what arrives while a batch is in flight joins the next one), or when ``max_batch_size``
activities are held or the oldest is ``batch_interval`` old (``batch=True``).
JS error groups are written every ``js_error_batch_interval``. A flush request
writes everything now. While PocketBase cannot be reached, calls wait (the
queue stays bounded) and nothing accepted is dropped before the shutdown
deadline.

With a spool (``spool_dir``), prepared activities go to the journal first and
the worker reads them back from it: memory holds a bounded read-ahead, the
queue keeps draining to disk while PocketBase is away, what is left at the
shutdown deadline stays on disk, and segments that dead processes left behind
are replayed (``spool.py``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from skopos._config import SkoposOptions
from skopos._delivery.js_errors import ErrorAggregator
from skopos._delivery.sessions import Sessionizer
from skopos._delivery.spool import Spool
from skopos._delivery.writer import Backoff, BatchWriter
from skopos._delivery.writer_thread import WriterThread
from skopos._delivery.writes import PendingWrite
from skopos._exceptions import PocketBaseError
from skopos._pocketbase.client import PocketBaseClient
from skopos._queue import POLL_AFTER_CALLS, WorkQueue
from skopos._stats import Ledger
from skopos._tracking.activity import Activity, TrackCall
from skopos._tracking.pipeline import Pipeline
from skopos._tracking.sites import SiteRegistry

__all__ = ["Worker"]

logger = logging.getLogger("skopos")

_TAKE_AT_ONCE = 1000
# batch=False: a write waits this long for company (or for max_batch_size calls), so a busy
# host hands the worker batches instead of one call at a time, each a GIL hand-off.
_LINGER = 0.05
# Deferred session touches go out once no call arrived for this long: under load they wait
# (fewer PATCHes for PocketBase), on a quiet site exit paths are fresh within a second.
_QUIET = 0.5
_IDLE_WAKEUP = 1.0  # seconds; the longest the loop sleeps without a reason
_ORPHAN_SCAN_INTERVAL = 30.0  # seconds between looks for segments of dead processes


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
        spool: Spool | None = None,
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
        self._spool = spool
        self._read_ahead = max(_TAKE_AT_ONCE, options.max_batch_size)
        self._orphans_due = 0.0
        self._writer = BatchWriter(
            client, ledger, on_dropped_parent=sessionizer.forget, stop=self._stop, spool=spool
        )
        self._writer.deadline_passed = self._deadline_passed
        self._writes = WriterThread(
            self._writer, on_done=queue.wake, on_error=self._note_internal_error
        )
        self._backoff = Backoff()
        self._held: list[TrackCall] = []
        self._activities: list[Activity] = []
        self._oldest_activity = 0.0
        self._last_call = 0.0
        self._errors = ErrorAggregator()
        self._errors_due = clock() + options.js_error_batch_interval
        self._thread: threading.Thread | None = None
        self.internal_error: BaseException | None = None
        self.running = False  # set by the thread itself: cheaper to read than ``alive``

    # -- control, from other threads -------------------------------------------------

    @property
    def alive(self) -> bool:
        """Whether the worker thread is running."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start (or restart) the threads."""
        if self.alive or self._stop.is_set():
            return
        self._writes.start()
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
        self.running = True
        try:
            self._loop()
        finally:
            self.running = False

    def _loop(self) -> None:
        while True:
            try:
                if self._step():
                    self._writes.stop(1.0)
                    self._close_spool()
                    return
            except Exception as exc:  # never let the thread die for good
                logger.exception("skopos: internal error in the worker")
                self._note_internal_error(exc)
                self._stop.wait(0.1)

    def _note_internal_error(self, exc: Exception) -> None:
        self._ledger.note_error(f"internal error: {exc!r}", retried=False)
        if self._options.strict:
            self.internal_error = exc

    def _step(self) -> bool:
        """One round; True when the worker is done for good."""
        generation = self._ledger.flush_requested  # read first: served by this round
        stopping = self._stop.is_set()
        flushing = stopping or self._flush.is_set()
        spool = self._spool
        writes = self._writes
        reading = spool is not None and spool.backlog > 0 and self._room() > 0
        if spool is None and self._room() <= 0:
            # Memory is full: wait for the writer (the queue holds new calls meanwhile).
            writes.wait_ready(_IDLE_WAKEUP)
            calls = self._held
        else:
            # A due write waits for the writer thread, which wakes the queue when done.
            writable = writes.ready and (self._write_due() or (flushing and self._activities))
            busy = self._held or reading or writable
            wait = 0.0 if busy else self._seconds_until_due(writes.ready)
            limit = _TAKE_AT_ONCE if spool is not None else min(_TAKE_AT_ONCE, self._room())
            # Woken by a full batch; the first call after a lull found by polling every
            # _LINGER s, or, after POLL_AFTER_CALLS without calls, by the call waking us.
            pending = len(self._activities)
            if flushing:
                wake_at = 1
            elif pending:
                # A full batch waiting for the writer: only the writer (or a flush) wakes
                # us. (wake_at <= 0 made take() return at once: a busy loop for as long as
                # PocketBase took to commit, the GIL taken from the host all along.)
                wake_at = (
                    max(self._options.max_batch_size - pending, 0) or self._options.max_queue_size
                )
            elif self._clock() - self._last_call < POLL_AFTER_CALLS:
                wake_at = self._options.max_batch_size
                wait = min(wait, _LINGER)
            else:
                wake_at = 1
            calls = self._held + self._queue.take(limit, wait, wake_at=wake_at)
        if not flushing and (self._flush.is_set() or self._stop.is_set()):
            # It woke the take() above: served by this round, not after the next wait.
            generation = self._ledger.flush_requested
            stopping = self._stop.is_set()
            flushing = True
        self._held = []
        if calls:
            self._last_call = self._clock()
        self._prepare(calls)
        if spool is not None:
            self._replay_orphans(spool)
            self._read_back(spool)

        now = self._clock()
        if writes.ready and ((flushing and self._activities) or self._write_due()):
            self._write_activities()
        if writes.ready and self._sessionizer.has_deferred:
            quiet = now - self._last_call >= _QUIET and not self._activities
            touches = self._sessionizer.deferred_touches(time.time(), everything=flushing or quiet)
            writes.submit(touches)
        if self._errors.occurrences and (flushing or now >= self._errors_due or self._errors.full):
            self._write_errors()
        if self._sites.refresh_due():
            self._refresh_sites()

        idle = not (
            len(self._queue)
            or self._held
            or self._activities
            or self._errors.occurrences
            or (spool is not None and spool.backlog)
            or self._sessionizer.has_deferred
        )
        idle = idle and writes.idle
        if idle and flushing:
            self._ledger.complete_flush(generation)
        if idle and stopping:
            if spool is not None and spool.own_outstanding:
                # The writer gave up at the deadline and left its batch in the spool.
                self._give_up()
            return True
        if idle and flushing and self._ledger.flush_requested == generation:
            # Only when no flush was requested after ``generation`` was read (during the
            # prepare or the writes above): clearing then would leave it to the next wake-up.
            self._flush.clear()
        if self._deadline_passed():
            self._give_up()
            return True
        return False

    def _write_due(self) -> bool:
        """Enough activities, or the oldest old enough, to write them now."""
        if not self._activities:
            return False
        if len(self._activities) >= self._options.max_batch_size:
            return True
        return self._clock() - self._oldest_activity >= self._hold_for()

    def _hold_for(self) -> float:
        return self._options.batch_interval if self._options.batch else _LINGER

    def _seconds_until_due(self, writer_ready: bool) -> float:
        now = self._clock()
        due = now + _IDLE_WAKEUP
        if self._activities and writer_ready:
            due = min(due, self._oldest_activity + self._hold_for())
        if self._errors.occurrences:
            due = min(due, self._errors_due)
        if self._sessionizer.has_deferred and writer_ready and not self._activities:
            # The quiet moment only counts with no activity held (see _step): counting it
            # anyway made the wait 0 until a held batch was due (batch=True: up to 10 s of
            # busy loop).
            due = min(due, self._last_call + _QUIET)
        return max(0.0, due - now)

    def _prepare(self, calls: list[TrackCall], *, wait_on_error: bool = True) -> None:
        prepared: list[Activity] = []
        try:
            self._prepare_into(prepared, calls, wait_on_error)
        finally:
            self._keep(prepared)

    def _prepare_into(
        self, prepared: list[Activity], calls: list[TrackCall], wait_on_error: bool
    ) -> None:
        for index, call in enumerate(calls):
            try:
                result = self._pipeline.prepare(call)
            except PocketBaseError as exc:
                # Site rules could not be read: keep the calls, try again later.
                self._held = calls[index:]
                if wait_on_error:
                    self._keep(prepared)
                    prepared.clear()
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
            prepared.append(result)

    def _keep(self, activities: list[Activity]) -> None:
        """Journal ``activities`` (with a spool) or hold them in memory."""
        if not activities:
            return
        if self._spool is not None:
            try:
                refused = self._spool.journal(activities)
            except OSError as exc:
                logger.error("skopos: cannot write to spool_dir (%s); holding calls in memory", exc)
                self._ledger.note_error(f"spool: {exc}", retried=False)
            else:
                if refused.full:
                    self._ledger.ack_dropped("spool_full", len(refused.full))
                if not refused.unencodable:
                    return
                activities = refused.unencodable  # not durable, but delivered
        if not self._activities:
            self._oldest_activity = self._clock()
        self._activities.extend(activities)

    def _room(self) -> int:
        return self._read_ahead - len(self._activities)

    def _read_back(self, spool: Spool) -> None:
        room = self._room()
        if room > 0 and spool.backlog:
            activities = spool.read_back(room)
            if activities and not self._activities:
                self._oldest_activity = self._clock()
            self._activities.extend(activities)
        own, recovered = spool.take_unreadable()
        if own or recovered:
            logger.error(
                "skopos: %d spooled calls could not be read back (corrupted)", own + recovered
            )
        if own:
            self._ledger.ack_dropped("spool_corrupt", own)
        if recovered:
            self._ledger.count_recovered("spool_corrupt", recovered)

    def replay_orphans(self) -> None:
        """Take over what dead processes left in the spool now (``init`` calls this
        before the thread starts, so a first ``flush()`` waits for them too)."""
        if self._spool is not None:
            self._orphans_due = 0.0
            self._replay_orphans(self._spool)

    def _replay_orphans(self, spool: Spool) -> None:
        """Take over what dead processes left in the spool (at start, then now and then)."""
        now = self._clock()
        if now < self._orphans_due:
            return
        self._orphans_due = now + _ORPHAN_SCAN_INTERVAL
        try:
            found = spool.claim_orphans(self._writer.committed)
        except (PocketBaseError, OSError) as exc:
            logger.debug("skopos: spool replay postponed: %s", exc)
            self._orphans_due = now + 1.0
            return
        if found:
            self._ledger.expect_recovered(found)
            logger.info("skopos: replaying %d calls an earlier process left in the spool", found)

    def _drain_to_spool(self) -> None:
        """While the worker waits for PocketBase, move queued calls to the journal."""
        if not self._held:  # held calls failed to prepare: the rest would too
            self._prepare(self._queue.take(_TAKE_AT_ONCE, 0.0), wait_on_error=False)

    def _close_spool(self) -> None:
        if self._spool is not None:
            self._spool.close()

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
            if self._spool is not None:
                self._drain_to_spool()

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
                self._errors.add(activity)
        self._writes.submit(writes)

    def _write_errors(self) -> None:
        self._errors_due = self._clock() + self._options.js_error_batch_interval
        writes: list[PendingWrite] = []
        for group in self._errors.take():
            writes.extend(group.writes())
        self._writes.submit(writes)

    def _refresh_sites(self) -> None:
        try:
            self._sites.refresh()
        except PocketBaseError as exc:
            logger.debug("skopos: site rules refresh failed: %s", exc)

    def _give_up(self) -> None:
        """The shutdown deadline passed: spool what is left, or count it as undelivered."""
        # The batch in flight settles on its own (its retries see the deadline); what
        # waits behind it was never sent.
        self._writer.drop_undelivered(self._writes.take_waiting())
        self._writes.stop(1.0)
        left = self._held + self._queue.drain()
        self._held = []
        if self._spool is not None:
            self._prepare(left, wait_on_error=False)  # to the journal
            left, self._held = self._held, []
        count = len(left)
        for activity in self._activities:
            count += activity.spool_ref is None
        for group in self._errors.take():
            count += group.count - len(group.refs or ())
        self._activities = []
        if self._spool is not None:
            spooled = self._spool.own_outstanding
            self._close_spool()
            if spooled:
                logger.warning(
                    "skopos: shutdown deadline passed; %d tracking calls kept in spool_dir"
                    " for the next start",
                    spooled,
                )
                self._ledger.ack_spooled(spooled)
        if count:
            logger.warning("skopos: shutdown deadline passed; %d tracking calls undelivered", count)
            self._ledger.ack_dropped("undelivered_at_shutdown", count)
