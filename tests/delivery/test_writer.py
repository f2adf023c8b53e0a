"""BatchWriter's failure handling with a fake PocketBase client (pure logic)."""

from __future__ import annotations

import time
from typing import Any

from skopos._delivery.stopping import Stopping
from skopos._delivery.writer import Backoff, BatchWriter
from skopos._delivery.writes import PendingWrite
from skopos._exceptions import (
    PocketBaseNotFound,
    PocketBaseUnreachable,
    PocketBaseValidationError,
)
from skopos._pocketbase.client import BatchRequest
from skopos._stats import Ledger


class TransactionsTooBig:
    """Fails every batch of more than ``limit`` requests as a whole, as PocketBase does
    when a transaction runs past ``batch.timeout`` or is interrupted."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.committed: list[str] = []
        self.attempts = 0

    def batch_max_requests(self) -> int:
        return 1000

    def batch(self, requests: list[BatchRequest]) -> list[Any]:
        self.attempts += 1
        if len(requests) > self.limit:
            raise PocketBaseValidationError("Batch transaction failed.")
        self.committed += [str(r.body["id"]) for r in requests if r.method == "POST" and r.body]
        return []


def events(count: int) -> list[PendingWrite]:
    return [
        PendingWrite(BatchRequest.create("events", {"id": f"e{n}"}), "events", "v", 1)
        for n in range(count)
    ]


def writer(client: object, ledger: Ledger) -> BatchWriter:
    return BatchWriter(
        client,  # type: ignore[arg-type]
        ledger,
        on_dropped_parent=lambda key: None,
        stopping=Stopping(),
        backoff=Backoff(base=0.001, ceiling=0.001),
    )


def test_a_transaction_failing_as_a_whole_is_retried_then_halved() -> None:
    client, ledger = TransactionsTooBig(limit=4), Ledger()
    writer(client, ledger).write(events(10))
    assert sorted(client.committed) == sorted(f"e{n}" for n in range(10))
    assert (ledger.written, dict(ledger.dropped)) == (10, {})


def test_a_single_write_that_always_fails_as_a_whole_is_dropped_and_counted() -> None:
    client, ledger = TransactionsTooBig(limit=0), Ledger()
    writer(client, ledger).write(events(3))
    assert client.committed == []
    assert (ledger.written, dict(ledger.dropped)) == (0, {"rejected_by_pocketbase": 3})


class CrashesAfterCommit:
    """Commits the first batch, then goes away before answering, and stays away for the next
    ``down_for`` requests (the marker reads included): a PocketBase killed mid-answer."""

    def __init__(self, down_for: int, settle: float = 0.0) -> None:
        self.down_for = down_for
        self.settle = settle
        self.increments = 0
        self.markers: dict[str, str] = {}
        self.batches = 0

    def batch_max_requests(self) -> int:
        return 1000

    def batch_timeout(self) -> float:
        return self.settle

    def batch(self, requests: list[BatchRequest]) -> list[Any]:
        self.batches += 1
        if self.batches > 1 and self.down_for > 0:
            self.down_for -= 1
            raise PocketBaseUnreachable("connection refused")
        for request in requests:
            assert request.body is not None
            if "count+" in request.body:
                self.increments += int(request.body["count+"])
            if "/skopos_config/" in request.url:
                self.markers[str(request.body["id"])] = str(request.body["value"])
        if self.batches == 1:
            raise PocketBaseUnreachable("server closed the connection")  # after the commit
        return []

    def get_record(self, collection: str, record_id: str) -> dict[str, Any]:
        if self.down_for > 0:
            self.down_for -= 1
            raise PocketBaseUnreachable("connection refused")
        if record_id not in self.markers:
            raise PocketBaseNotFound("no such marker")
        return {"id": record_id, "value": self.markers[record_id]}


def test_a_transaction_whose_answer_was_lost_is_never_sent_again_while_in_doubt() -> None:
    # The commit check fails while PocketBase is away; resending then would add the count
    # twice (an increment is not idempotent). It waits until PocketBase can say.
    client, ledger = CrashesAfterCommit(down_for=5), Ledger()
    count = BatchRequest.update("js_errors", "grouprecord0001", {"count+": 3})
    writer(client, ledger).write([PendingWrite(count, "js_errors", "g", 3)])
    assert client.increments == 3
    assert (ledger.written, dict(ledger.dropped)) == (3, {})


class CommitsLate:
    """The first batch times out on our side while PocketBase goes on and commits it
    ``commit_after`` seconds later; ``batch.timeout`` is ``settle``."""

    def __init__(self, commit_after: float, settle: float) -> None:
        self.commit_after = commit_after
        self.settle = settle
        self.batches = 0
        self.increments = 0
        self.pending: tuple[float, int, str, str] | None = None
        self.markers: dict[str, str] = {}

    def batch_max_requests(self) -> int:
        return 1000

    def batch_timeout(self) -> float:
        return self.settle

    def _apply(self, increments: int, marker: str, token: str) -> None:
        self.increments += increments
        self.markers[marker] = token

    def batch(self, requests: list[BatchRequest]) -> list[Any]:
        self.batches += 1
        increments = sum(int((r.body or {}).get("count+", 0)) for r in requests)
        marker = next(r.body for r in requests if "/skopos_config/" in r.url and r.body)
        if self.batches == 1:
            commit_at = time.monotonic() + self.commit_after
            self.pending = (commit_at, increments, str(marker["id"]), str(marker["value"]))
            raise PocketBaseUnreachable("timed out")
        self._apply(increments, str(marker["id"]), str(marker["value"]))
        return []

    def get_record(self, collection: str, record_id: str) -> dict[str, Any]:
        if self.pending is not None and time.monotonic() >= self.pending[0]:
            self._apply(*self.pending[1:])
            self.pending = None
        if record_id not in self.markers:
            raise PocketBaseNotFound("no such marker")
        return {"id": record_id, "value": self.markers[record_id]}


def test_a_timed_out_transaction_is_resent_only_once_it_has_settled() -> None:
    client, ledger = CommitsLate(commit_after=0.2, settle=0.4), Ledger()
    count = BatchRequest.update("js_errors", "grouprecord0001", {"count+": 1})
    writer(client, ledger).write([PendingWrite(count, "js_errors", "g", 1)])
    assert (client.increments, client.batches) == (1, 1)
    assert ledger.written == 1
