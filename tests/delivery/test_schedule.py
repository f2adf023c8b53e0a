"""The worker's per-round decisions (``_delivery/schedule.py``): pure, no threads, no server."""

from __future__ import annotations

import pytest

from skopos._delivery.schedule import (
    IDLE_WAKEUP,
    LINGER,
    Policy,
    Situation,
    Writes,
    is_idle,
    plan_take,
    plan_writes,
    seconds_until_due,
    write_due,
)
from skopos._queue import POLL_AFTER_CALLS, TAKE_AT_ONCE

NOW = 1000.0
IMMEDIATE = Policy(batch=False, max_batch_size=100, max_queue_size=10_000)
BATCHED = Policy(batch=True, batch_interval=10.0, max_batch_size=100, max_queue_size=10_000)


def test_an_idle_worker_sleeps_until_a_call_wakes_it() -> None:
    take = plan_take(IMMEDIATE, Situation(now=NOW))
    assert (take.wait_for_writer, take.timeout, take.wake_at) == (False, IDLE_WAKEUP, 1)


def test_after_recent_calls_it_polls_instead_of_being_woken_by_each() -> None:
    take = plan_take(IMMEDIATE, Situation(now=NOW, last_call=NOW - 1.0))
    assert take.timeout == LINGER
    assert take.wake_at == IMMEDIATE.max_batch_size
    later = plan_take(IMMEDIATE, Situation(now=NOW, last_call=NOW - POLL_AFTER_CALLS - 0.1))
    assert later.wake_at == 1


@pytest.mark.parametrize("policy", [IMMEDIATE, BATCHED])
def test_a_full_batch_waiting_for_a_busy_writer_does_not_spin(policy: Policy) -> None:
    # Only the writer finishing (it wakes the queue), a flush, or a full queue ends the wait.
    s = Situation(
        now=NOW, activities=100, oldest_activity=NOW - 5, writer_ready=False, last_call=NOW
    )
    take = plan_take(policy, s)
    assert take.timeout > 0
    assert take.wake_at == policy.max_queue_size
    assert not plan_writes(policy, s).activities


def test_a_batch_held_for_its_interval_sleeps_until_due() -> None:
    s = Situation(now=NOW, activities=1, oldest_activity=NOW - 9.5, last_call=NOW - 1.0)
    take = plan_take(BATCHED, s)
    assert take.timeout == pytest.approx(0.5)  # until the batch is due, not 0
    assert take.wake_at == BATCHED.max_batch_size - 1
    assert not plan_writes(BATCHED, s).activities


def test_a_due_batch_and_a_ready_writer_mean_no_wait_and_a_write() -> None:
    s = Situation(now=NOW, activities=3, oldest_activity=NOW - 2 * LINGER, last_call=NOW)
    assert plan_take(IMMEDIATE, s).timeout == 0.0
    assert plan_writes(IMMEDIATE, s).activities


def test_batch_mode_holds_until_the_interval_or_a_full_batch() -> None:
    young = Situation(now=NOW, activities=99, oldest_activity=NOW - 9.9)
    assert not write_due(BATCHED, young)
    assert seconds_until_due(BATCHED, young) == pytest.approx(0.1)
    assert write_due(BATCHED, Situation(now=NOW, activities=99, oldest_activity=NOW - 10.0))
    assert write_due(BATCHED, Situation(now=NOW, activities=100, oldest_activity=NOW))


def test_a_flush_takes_at_once_and_writes_everything() -> None:
    s = Situation(now=NOW, flushing=True, activities=1, oldest_activity=NOW, error_occurrences=2)
    take = plan_take(BATCHED, s)
    assert (take.timeout, take.wake_at) == (0.0, 1)
    assert plan_writes(BATCHED, s) == Writes(activities=True, errors=True)


def test_held_calls_and_a_spool_backlog_are_work_to_do_now() -> None:
    assert plan_take(IMMEDIATE, Situation(now=NOW, held=5)).timeout == 0.0
    spooled = Situation(now=NOW, spooling=True, spool_backlog=10, room=500)
    assert plan_take(IMMEDIATE, spooled).timeout == 0.0
    no_room = Situation(now=NOW, spooling=True, spool_backlog=10, room=0)
    assert plan_take(IMMEDIATE, no_room).timeout > 0


def test_full_memory_without_a_spool_waits_for_the_writer() -> None:
    take = plan_take(IMMEDIATE, Situation(now=NOW, room=0, activities=TAKE_AT_ONCE))
    assert take.wait_for_writer
    assert take.limit == 0
    with_spool = plan_take(IMMEDIATE, Situation(now=NOW, room=0, spooling=True))
    assert not with_spool.wait_for_writer  # the queue keeps draining to the journal
    assert with_spool.limit == TAKE_AT_ONCE


def test_the_take_never_exceeds_the_read_ahead_room() -> None:
    assert plan_take(IMMEDIATE, Situation(now=NOW, room=7)).limit == 7


def test_js_errors_wait_for_their_interval_unless_flushing_or_full() -> None:
    waiting = Situation(now=NOW, error_occurrences=3, errors_due=NOW + 60)
    assert not plan_writes(IMMEDIATE, waiting).errors
    assert seconds_until_due(IMMEDIATE, waiting) == IDLE_WAKEUP
    soon = Situation(now=NOW, error_occurrences=3, errors_due=NOW + 0.25)
    assert seconds_until_due(IMMEDIATE, soon) == pytest.approx(0.25)
    assert plan_writes(IMMEDIATE, Situation(now=NOW, error_occurrences=1, errors_due=NOW)).errors
    full = Situation(now=NOW, error_occurrences=1, errors_due=NOW + 60, errors_full=True)
    assert plan_writes(IMMEDIATE, full).errors


@pytest.mark.parametrize(
    "busy",
    [
        {"held": 1},
        {"activities": 1},
        {"error_occurrences": 1},
        {"spool_backlog": 1},
    ],
)
def test_idle_means_nothing_anywhere(busy: dict[str, object]) -> None:
    assert is_idle(Situation(now=NOW), queued=0, writer_idle=True)
    assert not is_idle(Situation(now=NOW), queued=1, writer_idle=True)
    assert not is_idle(Situation(now=NOW), queued=0, writer_idle=False)
    assert not is_idle(Situation(now=NOW, **busy), queued=0, writer_idle=True)  # type: ignore[arg-type]
