"""The background worker: queue → pipeline → (spool) → sessionizer → writer thread.

Before anything else it connects to PocketBase (``connecting``): until then calls wait in
the queue, and a failed attempt is tried again with backoff, however long it takes. Each
round then takes the queued calls, has the pipeline prepare them (drops are acknowledged at
once, with their reason), and hands writes to the writer thread: activities when a batch is
due, with the JS error groups they carried (or, with a ``js_error_batch_interval``, the
groups every interval). When to take, write and sleep is decided by ``schedule`` from a
``Situation`` of this worker; this module does the I/O. While PocketBase cannot be reached,
calls wait (the queue stays bounded) and nothing accepted is dropped before the shutdown
deadline.

With a spool (``spool_dir``), prepared activities go to the journal first and the worker
reads them back from it: memory holds a bounded read-ahead, the queue keeps draining to disk
while PocketBase is away, what is left at the shutdown deadline stays on disk, and segments
that dead processes left behind are replayed (``spool.py``).

A ``/collect`` call may become several activities; they share a ``CallParts``, through which
the ledger acknowledges the call once, when the last of them is written or dropped. The
journal keeps activities only: the worker remembers the ``CallParts`` of its own journaled
activities by journal ref until it reads them back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from skopos._config import SkoposOptions
from skopos._delivery.connecting import Connector, classify, jitter, plan_retry
from skopos._delivery.js_errors import ErrorAggregator
from skopos._delivery.schedule import Policy, Situation, is_idle, plan_take, plan_writes
from skopos._delivery.sessions import Sessionizer
from skopos._delivery.spool import Spool
from skopos._delivery.stopping import Stopping
from skopos._delivery.writer import Backoff, BatchWriter
from skopos._delivery.writer_thread import WriterThread
from skopos._delivery.writes import PendingWrite
from skopos._exceptions import PocketBaseError
from skopos._queue import TAKE_AT_ONCE, WorkQueue
from skopos._stats import CallParts, DropReason, InternalErrors, Ledger, invalid
from skopos._tracking.activity import Activity, JournalRef, TrackCall
from skopos._tracking.pipeline import Expanded, Pipeline
from skopos._tracking.sites import SiteRegistry

__all__ = ["Worker"]

logger = logging.getLogger("skopos")

_ORPHAN_SCAN_INTERVAL = 30.0  # seconds between looks for segments of dead processes


class Worker:
    """Owns the thread that turns queued calls into PocketBase records.

    The writer (``BatchWriter`` on its ``WriterThread``) and the ``Stopping`` they share
    are given, so the loop can be driven against any of them; ``schedule`` decides.
    """

    def __init__(
        self,
        *,
        queue: WorkQueue[TrackCall],
        connector: Connector,
        sessionizer: Sessionizer,
        sites: SiteRegistry,
        writer: BatchWriter,
        writes: WriterThread,
        stopping: Stopping,
        ledger: Ledger,
        errors: InternalErrors,
        options: SkoposOptions,
        spool: Spool | None = None,
        pipeline: Pipeline | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._queue = queue
        self._connector = connector
        # None until connected (the pipeline needs the salt); given when already connected
        # (a forked child of a connected process).
        self._pipeline = pipeline
        self._connect_due = 0.0
        self._connect_failures = 0
        self._connect_logged: tuple[str, float] | None = None  # message, when
        self._stop_seen = False
        self._sessionizer = sessionizer
        self._sites = sites
        self._writer = writer
        self._writes = writes
        self._stopping = stopping
        self._ledger = ledger
        self._errors_seen = errors
        self._options = options
        self._policy = Policy.of(options)
        self._clock = clock
        self._spool = spool
        self._read_ahead = max(TAKE_AT_ONCE, options.max_batch_size)
        self._orphans_due = 0.0
        self._backoff = Backoff()  # for failed reads (site rules, session lookups)
        self._held: list[TrackCall] = []
        self._activities: list[Activity] = []
        # The CallParts of this process's journaled activities, until they are read back.
        self._parts_by_ref: dict[JournalRef, CallParts] = {}
        self._oldest_activity = 0.0
        self._last_call = float("-inf")
        self._errors = ErrorAggregator()
        self._errors_due = clock() + options.js_error_batch_interval
        self._thread: threading.Thread | None = None
        self.running = False  # set by the thread itself: cheaper to read than ``alive``

    # -- control, from other threads -------------------------------------------------

    @property
    def alive(self) -> bool:
        """Whether the worker thread is running."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def pipeline(self) -> Pipeline | None:
        """The pipeline, once connected."""
        return self._pipeline

    def connect_now(self) -> None:
        """Connect from the calling thread (``init(wait=True)``), before the worker runs;
        raises what prevents it (``ConfigurationError``, ``PocketBaseError``)."""
        if self._pipeline is None:
            self._connected(self._connector.connect())

    def start(self) -> None:
        """Start (or restart) the threads."""
        if self.alive or self._stopping.requested:
            return
        self._writes.start()
        self._thread = threading.Thread(target=self._run, name="skopos-worker", daemon=True)
        self._thread.start()

    def request_flush(self) -> None:
        """Write everything held now, without waiting for intervals (the ledger holds the
        request's number: ``Ledger.request_flush`` comes first)."""
        self._queue.wake()

    def stop(self, timeout: float) -> None:
        """Write what it can within ``timeout`` seconds, drop and count the rest, and end."""
        self._stopping.request(timeout)
        self._queue.wake()
        if self._thread is None:
            return
        self._thread.join(timeout + 1.0)
        if self._thread.is_alive():
            # Stuck in a call that does not return: nothing will count what it holds.
            logger.error(
                "skopos: the worker did not stop within %.1f s of shutdown; %d accepted "
                "tracking calls were not written or counted",
                timeout + 1.0,
                max(0, self._queue.accepted - self._ledger.acknowledged),
            )

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
                self._errors_seen.note(exc)
                self._stopping.sleep(0.1)

    def _situation(self, *, flushing: bool) -> Situation:
        spool = self._spool
        return Situation(
            now=self._clock(),
            flushing=flushing,
            held=len(self._held),
            activities=len(self._activities),
            oldest_activity=self._oldest_activity,
            room=self._read_ahead - len(self._activities),
            spooling=spool is not None,
            spool_backlog=spool.backlog if spool is not None else 0,
            writer_ready=self._writes.ready,
            last_call=self._last_call,
            error_occurrences=self._errors.occurrences,
            errors_due=self._errors_due,
            errors_full=self._errors.full,
        )

    def _flush_state(self) -> tuple[int, bool, bool]:
        """The latest flush requested, whether a stop is, and whether this round must write
        everything: a flush not completed yet, or a stop. (Numbers, not a flag the worker
        clears: a flag cleared as a new request sets it loses that request.)"""
        generation = self._ledger.flush_requested
        stopping = self._stopping.requested
        return generation, stopping, stopping or generation > self._ledger.flush_completed

    # -- connecting -------------------------------------------------------------------

    def _connected(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline
        self._ledger.connected = True
        if self._connect_failures:
            logger.info(
                "skopos: connected to PocketBase after %d failed attempts; writing the %d"
                " calls that waited",
                self._connect_failures,
                len(self._queue),
            )
        self._connect_failures = 0
        self.replay_orphans()  # what a killed process left in spool_dir

    def _connecting_step(self) -> bool:
        """A round before the worker is connected: try when due; True when done (stopped)."""
        stopping = self._stopping.requested
        if stopping and not len(self._queue):
            return True  # nothing to write: no reason to wait for PocketBase
        now = self._clock()
        if stopping and not self._stop_seen:
            self._stop_seen = True
            self._connect_due = min(self._connect_due, now)  # PocketBase may be back: try now
        if now >= self._connect_due:
            try:
                pipeline = self._connector.connect()
            except Exception as exc:
                self._connect_failed(exc, now)
            else:
                self._connected(pipeline)
                return False
        if self._stopping.deadline_passed():
            self._give_up()
            return True
        # Calls wait in the queue meanwhile. A stop request ends the wait (its event stays
        # set, so during a stop the deadline is watched in short sleeps instead).
        wait = max(0.0, min(self._connect_due - self._clock(), 1.0))
        if stopping:
            time.sleep(min(wait, 0.1))
        else:
            self._stopping.sleep(wait)
        return False

    def _connect_failed(self, error: Exception, now: float) -> None:
        kind = classify(error)
        if kind == "transient" and not isinstance(error, (PocketBaseError, OSError)):
            self._errors_seen.keep(error)  # not a PocketBase failure: a bug (strict raises)
        self._connect_failures += 1
        message = f"{type(error).__name__}: {error}"
        logged = self._connect_logged
        plan = plan_retry(
            kind,
            self._connect_failures,
            same_as_last_logged=logged is not None and logged[0] == message,
            since_logged=now - logged[1] if logged is not None else 0.0,
            jitter=jitter(),
        )
        self._connect_due = now + plan.delay
        self._ledger.note_error(f"cannot connect to PocketBase: {message}", retried=False)
        if plan.level == "debug":
            logger.debug("skopos: still cannot connect to PocketBase: %s", message)
            return
        self._connect_logged = (message, now)
        advice = (
            "fix the configuration; tracking calls wait in the queue"
            if kind == "needs_fix"
            else "tracking calls wait in the queue"
        )
        logger.log(
            logging.ERROR if plan.level == "error" else logging.WARNING,
            "skopos: cannot connect to PocketBase at %s (%s); %s, next attempt in %.0f s",
            self._options.pocketbase_url,
            message,
            advice,
            plan.delay,
        )

    # -- the rounds ---------------------------------------------------------------------

    def _step(self) -> bool:
        """One round: wait for calls, prepare them, write what is due; True when done."""
        if self._pipeline is None:
            return self._connecting_step()
        _, _, flushing = self._flush_state()
        take = plan_take(self._policy, self._situation(flushing=flushing))
        if take.wait_for_writer:
            self._writes.wait_ready(take.timeout)  # the queue holds new calls meanwhile
            calls = self._held
        else:
            calls = self._held + self._queue.take(take.limit, take.timeout, wake_at=take.wake_at)
        # A flush or stop requested before now, the one that ended the wait included, is
        # served by this round: whether the round ends idle is judged after this, so every
        # call accepted before the request is in ``calls``, still queued, or written.
        generation, stopping, flushing = self._flush_state()
        self._held = []
        if calls:
            self._last_call = self._clock()
        self._prepare(calls)
        if self._spool is not None:
            self._replay_orphans(self._spool)
            self._read_back(self._spool)

        writes = plan_writes(self._policy, self._situation(flushing=flushing))
        if writes.activities:
            self._write_activities()
        if writes.errors:
            self._write_errors()
        if self._sites.refresh_due():
            self._refresh_sites()

        idle = is_idle(
            self._situation(flushing=flushing),
            queued=len(self._queue),
            writer_idle=self._writes.idle,
        )
        if idle and flushing:
            self._ledger.complete_flush(generation)
        if idle and stopping:
            if self._spool is not None and self._spool.own_outstanding:
                # The writer gave up at the deadline and left its batch in the spool.
                self._give_up()
            return True
        if self._stopping.deadline_passed():
            self._give_up()
            return True
        return False

    def _prepare(self, calls: list[TrackCall], *, wait_on_error: bool = True) -> None:
        prepared: list[Activity] = []
        try:
            self._prepare_into(prepared, calls, wait_on_error)
        finally:
            self._keep(prepared)

    def _prepare_into(
        self, prepared: list[Activity], calls: list[TrackCall], wait_on_error: bool
    ) -> None:
        pipeline = self._pipeline
        assert pipeline is not None  # only called once connected
        for index, call in enumerate(calls):
            if (
                call.kind == "collect"
                and self._spool is None
                and len(self._activities) + len(prepared) >= self._read_ahead
            ):
                # A /collect call may become up to 100 activities: memory is full, the rest
                # waits (as calls, in order) until the writer takes a batch.
                self._held = calls[index:]
                return
            try:
                result = pipeline.prepare(call)
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
                self._ledger.ack_dropped(DropReason.INTERNAL_ERROR)
                self._errors_seen.keep(exc)
                continue
            outcome = self._expanded(result) if isinstance(result, Expanded) else result
            if isinstance(outcome, str):
                self._ledger.ack_dropped(outcome)
                logger.debug("skopos: dropped a %s call: %s", call.kind, outcome)
            elif isinstance(outcome, list):
                prepared.extend(outcome)
            else:
                prepared.append(outcome)

    def _expanded(self, result: Expanded) -> list[Activity] | str:
        """The activities of a call that became several, sharing a ``CallParts`` (one
        alone is an ordinary activity); the drop reason when nothing of it is left."""
        if result.left_out:
            self._ledger.count_dropped_items(result.left_out)
        activities = result.activities
        if not activities:
            return result.left_out[0] if result.left_out else invalid("empty_batch")
        if len(activities) > 1:
            parts = self._ledger.open_parts(len(activities))
            for activity in activities:
                activity.parts = parts
        return activities

    def _ack_dropped(self, activities: list[Activity], reason: DropReason) -> int:
        """``activities`` of this process will not be written, because of ``reason``;
        returns the calls this acknowledged."""
        plain = 0
        parts: list[CallParts] = []
        for activity in activities:
            if activity.parts is not None:
                parts.append(activity.parts)
            elif not activity.recovered:
                plain += 1
        if plain:
            self._ledger.ack_dropped(reason, plain)
        return plain + (self._ledger.ack_parts(parts, reason) if parts else 0)

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
                for activity in activities:
                    if activity.parts is not None and activity.spool_ref is not None:
                        self._parts_by_ref[activity.spool_ref] = activity.parts
                if refused.full:
                    self._ack_dropped(refused.full, DropReason.SPOOL_FULL)
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
            if self._parts_by_ref:
                for activity in activities:
                    if not activity.recovered and activity.spool_ref is not None:
                        activity.parts = self._parts_by_ref.pop(activity.spool_ref, None)
            if activities and not self._activities:
                self._oldest_activity = self._clock()
            self._activities.extend(activities)
        own, recovered = spool.take_unreadable()
        if own or recovered:
            logger.error(
                "skopos: %d spooled calls could not be read back (corrupted)", own + recovered
            )
        if own:
            self._ledger.ack_dropped(DropReason.SPOOL_CORRUPT, own)
        if recovered:
            self._ledger.count_recovered(DropReason.SPOOL_CORRUPT, recovered)

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
            found = spool.claim_orphans(self._writer.committed, self._site_known)
        except (PocketBaseError, OSError) as exc:
            logger.debug("skopos: spool replay postponed: %s", exc)
            self._orphans_due = now + 1.0
            return
        refused = spool.take_refused()
        if refused:
            self._ledger.expect_recovered(refused)
            self._ledger.count_recovered(DropReason.UNKNOWN_SITE, refused)
        if found:
            self._ledger.expect_recovered(found)
            logger.info("skopos: replaying %d calls an earlier process left in the spool", found)

    def _site_known(self, record_id: str, tracking_id: str) -> bool:
        """Whether a replayed activity's website is one PocketBase knows under that id."""
        rules = self._sites.get(tracking_id)  # PocketBaseError: the replay is postponed
        return rules is not None and rules.record_id == record_id

    def _drain_to_spool(self) -> None:
        """While the worker waits for PocketBase, move queued calls to the journal."""
        if not self._held:  # held calls failed to prepare: the rest would too
            self._prepare(self._queue.take(TAKE_AT_ONCE, 0.0), wait_on_error=False)

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
        while not self._stopping.deadline_passed() and self._clock() < end:
            self._stopping.sleep(min(0.1, end - self._clock()))
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
        rejected = {id(activity): activity for activity in self._sessionizer.rejected}
        if rejected:
            self._drop_activities(list(rejected.values()), DropReason.INTERNAL_ERROR)
        for activity in activities:
            if activity.type == "jsError" and id(activity) not in rejected:
                self._errors.add(activity)
        if not self._options.js_error_batch_interval:
            # The default: error groups aggregate only within a batch and go with it, so a
            # stop signal loses no more of them than of page views.
            writes.extend(self._error_writes())
        self._writes.submit(writes)

    def _drop_activities(self, activities: list[Activity], reason: DropReason) -> None:
        """Acknowledge ``activities`` as dropped: in the ledger, and in the spool."""
        own = sum(1 for activity in activities if not activity.recovered)
        if own:
            self._ledger.ack_dropped(reason, own)
        if own < len(activities):
            self._ledger.count_recovered(reason, len(activities) - own)
        refs = [activity.spool_ref for activity in activities if activity.spool_ref is not None]
        if refs and self._spool is not None:
            self._spool.acknowledge(refs)

    def _write_errors(self) -> None:
        self._writes.submit(self._error_writes())

    def _error_writes(self) -> list[PendingWrite]:
        self._errors_due = self._clock() + self._options.js_error_batch_interval
        writes: list[PendingWrite] = []
        for group in self._errors.take():
            writes.extend(group.writes())
        return writes

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
        if self._spool is not None and self._pipeline is not None:
            self._prepare(left, wait_on_error=False)  # to the journal
            left, self._held = self._held, []
        undelivered = DropReason.UNDELIVERED_AT_SHUTDOWN
        count = len(left)
        acknowledged = self._ack_dropped(
            [activity for activity in self._activities if activity.spool_ref is None], undelivered
        )
        for group in self._errors.take():
            count += group.unjournaled
            if group.unjournaled_parts:
                acknowledged += self._ledger.ack_parts(group.unjournaled_parts, undelivered)
        self._activities = []
        if self._spool is not None:
            activities = self._spool.own_outstanding
            self._parts_by_ref.clear()
            self._close_spool()
            if activities:
                spooled = self._ledger.ack_spooled_activities(activities)
                logger.warning(
                    "skopos: shutdown deadline passed; %d tracking calls kept in spool_dir"
                    " for the next start",
                    spooled,
                )
        if count:
            self._ledger.ack_dropped(undelivered, count)
        if count + acknowledged:
            logger.warning(
                "skopos: shutdown deadline passed; %d tracking calls undelivered",
                count + acknowledged,
            )
