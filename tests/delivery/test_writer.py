"""BatchWriter's failure handling with a fake PocketBase client (pure logic)."""

from __future__ import annotations

from typing import Any

from skopos._delivery.stopping import Stopping
from skopos._delivery.writer import Backoff, BatchWriter
from skopos._delivery.writes import PendingWrite
from skopos._exceptions import PocketBaseValidationError
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
