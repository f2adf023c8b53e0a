"""Batch → PocketBase: transactions, retries, and exactly-once acknowledgement.

Writes go in transactions of at most the server's ``batch.maxRequests``.
Every transaction also writes a commit marker, read back before any repeat, so
a batch whose answer was lost is never written twice (creates carry their own
ids and upserts are idempotent as a second line of defence).
Transient failures (unreachable, 5xx, 408, 429, a refused token, a transaction
that failed as a whole: interrupted or past ``batch.timeout``) are retried
with exponential backoff, jitter and a ceiling, honouring ``Retry-After``,
until they succeed or the deadline given by ``shutdown`` passes. A permanent
rejection of one record drops that record (and, for a visitor or session, the
records that depend on it), counts it, and sends the rest again.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence

from skopos._delivery.spool import Spool
from skopos._delivery.stopping import Stopping
from skopos._delivery.writes import PendingWrite
from skopos._exceptions import (
    PocketBaseAuthError,
    PocketBaseBatchDisabled,
    PocketBaseError,
    PocketBaseNotFound,
    PocketBaseUnreachable,
    PocketBaseValidationError,
)
from skopos._pocketbase.client import BatchRequest, PocketBaseClient
from skopos._stats import CallParts, DropReason, Ledger
from skopos._tracking.activity import JournalRef
from skopos._tracking.identity import random_record_id

__all__ = ["Backoff", "BatchWriter"]

logger = logging.getLogger("skopos")

# A transaction that failed as a whole this often is sent again in two halves.
_WHOLE_FAILURES_BEFORE_SPLIT = 4
# Beyond batch.timeout, before a transaction whose answer was lost counts as settled.
_SETTLE_MARGIN = 1.0


class Backoff:
    """Exponential backoff with full jitter: ``base * 2**n``, capped at ``ceiling`` seconds."""

    def __init__(self, base: float = 0.25, ceiling: float = 30.0) -> None:
        self.base = base
        self.ceiling = ceiling
        self.failures = 0

    def next_delay(self, retry_after: float | None = None) -> float:
        """Seconds to wait before the next attempt."""
        self.failures += 1
        delay = min(self.ceiling, self.base * 2 ** min(self.failures - 1, 20))
        delay = random.uniform(delay / 2, delay)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.ceiling * 4))
        return delay

    def reset(self) -> None:
        """Back to the first delay after a success."""
        self.failures = 0


def _no_answer(error: PocketBaseError) -> bool:
    """No answer came from PocketBase itself (a timeout, a cut connection, a gateway's
    error): the transaction may have committed, or may still be running."""
    return isinstance(error, PocketBaseUnreachable) or error.status in (502, 503, 504)


def _is_duplicate_create(error: PocketBaseValidationError, write: PendingWrite) -> bool:
    """A create refused as not unique: an earlier attempt, or another process, wrote
    it first. PocketBase reports it on ``id`` or on a unique index's fields, such as
    visitors' ``(website, visitorId)``, whichever it checks first."""
    if write.request.method != "POST":
        return False
    codes = [value.get("code") for value in error.data.values() if isinstance(value, dict)]
    return bool(codes) and all(code == "validation_not_unique" for code in codes)


class BatchWriter:
    """Sends ``PendingWrite`` lists and acknowledges their tracking calls."""

    def __init__(
        self,
        client: PocketBaseClient,
        ledger: Ledger,
        *,
        on_dropped_parent: Callable[[str], None],
        stopping: Stopping,
        backoff: Backoff | None = None,
        spool: Spool | None = None,
    ) -> None:
        self._client = client
        self._ledger = ledger
        self._on_dropped_parent = on_dropped_parent
        self._stopping = stopping
        self._backoff = backoff or Backoff()
        self._spool = spool
        self._marker_id = random_record_id()

    def write(self, writes: Sequence[PendingWrite]) -> None:
        """Write everything, acknowledging each tracking call as written or dropped."""
        if not writes:
            return
        size = self._chunk_size()
        for start in range(0, len(writes), size):
            self._write_chunk(list(writes[start : start + size]))

    def drop_undelivered(self, writes: Sequence[PendingWrite]) -> None:
        """``writes`` will not be sent before the shutdown deadline."""
        self._drop(writes, DropReason.UNDELIVERED_AT_SHUTDOWN)

    def _chunk_size(self) -> int:
        try:
            return max(1, self._client.batch_max_requests() - 1)  # room for a commit marker
        except PocketBaseError:
            return 50  # PocketBase's default; the write itself will report the problem

    def _write_chunk(self, chunk: list[PendingWrite]) -> None:
        marker = self._commit_marker()
        if self._spool is not None:
            # On disk before it is sent: a replay after a crash asks the marker.
            assert marker.body is not None
            self._spool.prepared(self._marker_id, marker.body["value"], _refs(chunk))
            self._spool.sync()
        failed_whole = 0
        in_doubt_since: float | None = None  # when the attempt whose answer was lost was sent
        while chunk:
            if in_doubt_since is not None:
                committed = self._settled_commit(marker, in_doubt_since)
                if committed:
                    break
                if committed is None:  # PocketBase cannot tell yet: never resend blindly
                    if not self._wait_to_retry(PocketBaseUnreachable("commit in doubt")):
                        self._drop(chunk, DropReason.UNDELIVERED_AT_SHUTDOWN)
                        return
                    continue
                in_doubt_since = None
            sent_at = time.monotonic()
            try:
                self._client.batch([*(write.request for write in chunk), marker])
            except PocketBaseValidationError as error:
                if error.request_index is not None:
                    chunk = self._without_rejected(chunk, error)
                    continue
                # "Batch transaction failed." names no request: the transaction was
                # interrupted (PocketBase stopping) or ran past batch.timeout, and was
                # rolled back. Retry; if it keeps failing, halve it.
                failed_whole += 1
                if failed_whole >= _WHOLE_FAILURES_BEFORE_SPLIT:
                    self._split(chunk, error)
                    return
                if not self._wait_to_retry(error, transient=True):
                    self._drop(chunk, DropReason.UNDELIVERED_AT_SHUTDOWN)
                    return
                continue
            except PocketBaseError as error:
                if self._committed(marker):
                    break  # the answer was lost, not the write
                if _no_answer(error):
                    in_doubt_since = sent_at
                if not self._wait_to_retry(error):
                    self._drop(chunk, DropReason.UNDELIVERED_AT_SHUTDOWN)
                    return
                continue
            break
        self._backoff.reset()
        self._acknowledge(chunk)

    def _split(self, chunk: list[PendingWrite], error: PocketBaseValidationError) -> None:
        if len(chunk) == 1:
            logger.warning("skopos: PocketBase keeps failing a one-record batch: %s", error)
            self._ledger.note_error(str(error), retried=False)
            self._drop(chunk, DropReason.REJECTED_BY_POCKETBASE)
            return
        half = len(chunk) // 2  # in order: parents still go before their dependants
        self._write_chunk(chunk[:half])
        self._write_chunk(chunk[half:])

    def _commit_marker(self) -> BatchRequest:
        """A write that proves later whether its transaction committed: this
        process's marker record takes a fresh token in the same transaction. When
        an answer is lost, one read tells "written" from "not written", so nothing
        is repeated blindly: creates would be refused one by one as duplicates, and
        ``count+`` increments would count twice."""
        body = {
            "id": self._marker_id,
            "key": f"commit:{self._marker_id}",
            "value": random_record_id(),
        }
        return BatchRequest.upsert("skopos_config", body)

    def _committed(self, marker: BatchRequest) -> bool:
        assert marker.body is not None
        try:
            return self.committed(self._marker_id, marker.body["value"])
        except PocketBaseError:
            return False

    def _settled_commit(self, marker: BatchRequest, sent_at: float) -> bool | None:
        """Whether the transaction of ``marker`` committed, once that is final: None while
        PocketBase cannot say, or while that transaction may still be running (an answer
        that timed out). No transaction outlives ``batch.timeout``, and a PocketBase that
        restarted has rolled back what it did not commit."""
        assert marker.body is not None
        try:
            if self._committed(marker):
                return True
            settle = self._client.batch_timeout() + _SETTLE_MARGIN
            if time.monotonic() - sent_at < settle:
                return None
            return self.committed(self._marker_id, marker.body["value"])
        except PocketBaseError:
            return None

    def committed(self, marker_id: str, token: str) -> bool:
        """Whether the transaction that gave marker ``marker_id`` the value ``token``
        committed (any writer's, this process's or a dead one's). Raises
        ``PocketBaseError`` when PocketBase cannot say."""
        try:
            record = self._client.get_record("skopos_config", marker_id)
        except PocketBaseNotFound:
            return False
        return bool(record.get("value") == token)

    def _retryable(self, error: PocketBaseError) -> bool:
        return error.retryable or isinstance(error, (PocketBaseAuthError, PocketBaseBatchDisabled))

    def _wait_to_retry(self, error: PocketBaseError, *, transient: bool = False) -> bool:
        """Log, back off; False when retrying must stop (deadline or permanent error)."""
        if not transient and not self._retryable(error):
            logger.error("skopos: PocketBase refused a batch permanently: %s", error)
            self._ledger.note_error(str(error), retried=False)
            return False
        self._ledger.note_error(str(error), retried=True)
        retry_after = getattr(error, "retry_after", None)
        delay = self._backoff.next_delay(retry_after)
        level = logging.WARNING if self._backoff.failures in (1, 10) else logging.DEBUG
        logger.log(level, "skopos: write failed (%s); retrying in %.1fs", error, delay)
        while delay > 0 and not self._stopping.deadline_passed():
            step = min(delay, 0.1)
            self._stopping.sleep(step)
            delay -= step
        return not self._stopping.deadline_passed()

    def _without_rejected(
        self, chunk: list[PendingWrite], error: PocketBaseValidationError
    ) -> list[PendingWrite]:
        index = error.request_index
        if index is None or not 0 <= index < len(chunk):
            logger.error("skopos: PocketBase rejected a batch: %s", error)
            self._ledger.note_error(str(error), retried=False)
            self._drop(chunk, DropReason.REJECTED_BY_POCKETBASE)
            return []
        bad = chunk[index]
        if _is_duplicate_create(error, bad):
            if bad.if_exists is None:  # an earlier attempt or another process wrote it
                self._acknowledge([bad])
                return chunk[:index] + chunk[index + 1 :]
            return [*chunk[:index], bad.replaced_by(bad.if_exists), *chunk[index + 1 :]]
        logger.warning("skopos: PocketBase rejected a record, dropping it: %s", error)
        self._ledger.note_error(str(error), retried=False)
        if bad.parent and bad.key:
            rejected = [w for w in chunk if w.key == bad.key]
            self._on_dropped_parent(bad.key)
        else:
            rejected = [bad]
        self._drop(rejected, DropReason.REJECTED_BY_POCKETBASE)
        rejected_ids = {id(w) for w in rejected}
        return [w for w in chunk if id(w) not in rejected_ids]

    def _acknowledge(self, writes: Sequence[PendingWrite]) -> None:
        records: Counter[str] = Counter()
        acks = recovered = 0
        for write in writes:
            acks += write.acks
            recovered += write.recovered
            if write.request.method != "PATCH":  # a count+ update is not a new record
                records[write.collection] += 1
        for collection, count in records.items():
            self._ledger.count_records(collection, count)
        if self._spool is not None:
            self._spool.acknowledge(_refs(writes))
        if acks:
            self._ledger.ack_written(acks)
        parts = _parts(writes)
        if parts:
            self._ledger.ack_parts(parts)
        if recovered:
            self._ledger.count_recovered("written", recovered)

    def _drop(self, writes: Sequence[PendingWrite], reason: DropReason) -> None:
        if self._spool is not None:
            if reason == DropReason.UNDELIVERED_AT_SHUTDOWN:
                return  # journaled: the worker counts them as spooled for the next process
            self._spool.acknowledge(_refs(writes))
        acks = sum(write.acks for write in writes)
        if acks:
            self._ledger.ack_dropped(reason, acks)
        parts = _parts(writes)
        if parts:
            self._ledger.ack_parts(parts, reason)
        recovered = sum(write.recovered for write in writes)
        if recovered:
            self._ledger.count_recovered(reason, recovered)


def _refs(writes: Sequence[PendingWrite]) -> list[JournalRef]:
    return [ref for write in writes if write.refs for ref in write.refs]


def _parts(writes: Sequence[PendingWrite]) -> list[CallParts]:
    return [part for write in writes if write.parts for part in write.parts]
