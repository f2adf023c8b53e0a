"""The visitor-hash salts (``_tracking/salt.py``) against a real PocketBase."""

from __future__ import annotations

import datetime as dt

import pytest

from skopos._pocketbase.client import PocketBaseClient
from skopos._pocketbase.filter import pb_filter
from skopos._tracking.salt import DAILY_PREFIX, SALT_KEY, SaltBook, load_or_create_salt, peppered
from tests._support.pocketbase_server import PocketBaseServer

pytestmark = pytest.mark.pocketbase

MIDNIGHT = dt.datetime(2031, 5, 10, tzinfo=dt.timezone.utc).timestamp()


def stored_days(pb: PocketBaseClient) -> list[str]:
    query = pb_filter("key ~ {:p}", p=DAILY_PREFIX + "2031-%")
    return sorted(
        r["key"][len(DAILY_PREFIX) :] for r in pb.iter_records("skopos_config", filter=query)
    )


def test_daily_salts_differ_by_day_are_shared_and_old_ones_are_deleted(
    pocketbase: PocketBaseServer,
) -> None:
    now = [MIDNIGHT + 3600]
    with pocketbase.client() as pb:
        book = SaltBook(pb, daily=True, session_timeout=1800, clock=lambda: now[0])
        first_day = book.salt_for(now[0])
        other_process = SaltBook(pb, daily=True, session_timeout=1800, clock=lambda: now[0])
        assert other_process.salt_for(now[0]) == first_day  # every process agrees
        now[0] += 86400  # the next day, at 01:00: past the grace period of 30 minutes
        second_day = book.salt_for(now[0])
        assert second_day != first_day
        assert stored_days(pb) == ["2031-05-11"]  # the previous day's salt is gone for good

        now[0] = MIDNIGHT + 2 * 86400 + 600  # 00:10: sessions of yesterday may go on
        assert book.in_grace(now[0])
        book.salt_for(now[0])
        assert stored_days(pb) == ["2031-05-11", "2031-05-12"]
        assert book.salt_for(now[0] - 900) == second_day  # yesterday's, still there
        now[0] = MIDNIGHT + 3 * 86400 + 7200  # two days later: both are gone
        book.salt_for(now[0])
        assert stored_days(pb) == ["2031-05-13"]


def test_a_pepper_keys_the_stored_salt(pocketbase: PocketBaseServer) -> None:
    with pocketbase.client() as pb:
        stored = load_or_create_salt(pb, SALT_KEY)
        plain = SaltBook(pb, daily=False, session_timeout=1800)
        with_pepper = SaltBook(pb, daily=False, session_timeout=1800, pepper=b"outside secret")
        assert plain.salt_for(0) == stored  # stable mode without a secret: today's ids stay
        assert with_pepper.salt_for(0) == peppered(stored, b"outside secret") != stored
