"""The ledger's accounting of calls that became several activities (a ``/collect`` message):
acknowledged once, when the last activity is settled (pure logic)."""

from __future__ import annotations

import threading

from skopos._stats import DropReason, Ledger, invalid


def test_a_split_call_is_written_once_all_its_activities_are() -> None:
    ledger = Ledger()
    parts = ledger.open_parts(3)
    ledger.ack_parts([parts])
    ledger.ack_parts([parts])
    assert (ledger.acknowledged, ledger.written) == (0, 0)
    assert not ledger.wait_acknowledged(1, 0.0)  # flush() is still waiting for it
    ledger.ack_parts([parts])
    assert (ledger.acknowledged, ledger.written, dict(ledger.dropped)) == (1, 1, {})
    assert ledger.wait_acknowledged(1, 0.0)


def test_a_split_call_with_a_dropped_activity_is_dropped_with_the_first_reason() -> None:
    ledger = Ledger()
    parts = ledger.open_parts(3)
    ledger.ack_parts([parts], DropReason.REJECTED_BY_POCKETBASE)
    ledger.ack_parts([parts])
    ledger.ack_parts([parts], DropReason.UNDELIVERED_AT_SHUTDOWN)
    assert ledger.acknowledged == 1
    assert (ledger.written, dict(ledger.dropped)) == (0, {"rejected_by_pocketbase": 1})


def test_one_settlement_may_cover_activities_of_several_calls() -> None:
    # A written transaction carries activities of many calls, some twice (two events of one).
    ledger = Ledger()
    first, second = ledger.open_parts(2), ledger.open_parts(2)
    ledger.ack_parts([first, first, second])
    assert (ledger.acknowledged, ledger.written) == (1, 1)
    ledger.ack_parts([second])
    assert (ledger.acknowledged, ledger.written) == (2, 2)


def test_a_settled_call_ignores_what_comes_later() -> None:
    ledger = Ledger()
    parts = ledger.open_parts(1)
    ledger.ack_parts([parts])
    ledger.ack_parts([parts], DropReason.INTERNAL_ERROR)
    assert (ledger.acknowledged, ledger.written, dict(ledger.dropped)) == (1, 1, {})


def test_spooled_activities_count_as_the_calls_they_belong_to() -> None:
    # At a shutdown deadline 7 activities stay in the spool: 2 plain calls, 3 of a split call
    # (another of whose activities was written), and 2 of a split call none of which was.
    ledger = Ledger()
    written_in_part, untouched = ledger.open_parts(4), ledger.open_parts(2)
    ledger.ack_parts([written_in_part])
    assert ledger.ack_spooled_activities(7) == 4
    assert (ledger.spooled, ledger.acknowledged, ledger.written) == (4, 4, 0)
    ledger.ack_parts([written_in_part, untouched])  # a late answer counts nothing twice
    assert ledger.acknowledged == 4


def test_items_left_out_are_counted_apart_and_cross_the_worker_process_pipe() -> None:
    ledger = Ledger()
    ledger.count_dropped_items([invalid("missing_name"), invalid("bad_url"), invalid("bad_url")])
    assert dict(ledger.dropped_items) == {"invalid:missing_name": 1, "invalid:bad_url": 2}
    assert ledger.acknowledged == 0
    host = Ledger()
    host.merge({"dropped_items": dict(ledger.dropped_items)})
    assert host.dropped_items == ledger.dropped_items


def test_settling_from_two_threads_acknowledges_each_call_once() -> None:
    ledger = Ledger()
    calls = [ledger.open_parts(100) for _ in range(50)]

    def settle() -> None:
        for _ in range(50):
            ledger.ack_parts(calls)

    threads = [threading.Thread(target=settle) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (ledger.acknowledged, ledger.written) == (50, 50)
