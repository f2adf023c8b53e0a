"""Filter binding: pure quoting rules, then injection attempts and ``any_of`` chunks against a
real PocketBase."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skopos._admin.setup import Website
from skopos._pocketbase.client import PocketBaseClient
from skopos._pocketbase.dates import pb_date
from skopos._pocketbase.filter import ANY_OF_CHUNK, any_of, pb_filter, quote_value
from skopos._tracking.identity import random_record_id


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", "'plain'"),
        ("it's", "'it\\'s'"),
        ('say "hi"', "'say \"hi\"'"),
        (7, "7"),
        (-2.5, "-2.5"),
        (True, "true"),
        (False, "false"),
        (None, "null"),
        (
            dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=dt.timezone.utc),
            "'2026-01-02 03:04:05.678Z'",
        ),
        (dt.date(2026, 1, 2), "'2026-01-02'"),
    ],
)
def test_quote_value(value: object, expected: str) -> None:
    assert quote_value(value) == expected  # type: ignore[arg-type]


def test_aware_datetimes_are_converted_to_utc() -> None:
    tz = dt.timezone(dt.timedelta(hours=2))
    assert quote_value(dt.datetime(2026, 1, 2, 5, 0, tzinfo=tz)) == "'2026-01-02 03:00:00.000Z'"


@pytest.mark.parametrize("bad", ["a\\b", "ends with\\", "\\' || x", float("nan"), float("inf")])
def test_unrepresentable_values_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match=r"backslash|finite"):
        quote_value(bad)  # type: ignore[arg-type]


def test_unknown_types_are_refused() -> None:
    with pytest.raises(TypeError):
        quote_value(object())  # type: ignore[arg-type]


def test_every_placeholder_needs_a_value() -> None:
    assert pb_filter("a = {:x} && b = {:x}", x=1) == "a = 1 && b = 1"
    with pytest.raises(KeyError):
        pb_filter("a = {:x} && b = {:y}", x=1)


@given(st.text().filter(lambda s: "\\" not in s))
def test_a_quoted_string_is_one_literal(value: str) -> None:
    """Mirror PocketBase's scanner: the literal ends only at the final quote."""
    literal = quote_value(value)
    previous = ""
    for position, char in enumerate(literal[1:], start=1):
        if char == "'" and previous != "\\":
            assert position == len(literal) - 1
        previous = char
    assert literal[1:-1].replace("\\'", "'") == value


HOSTILE_VALUES = [
    "x' || trackingId != '",
    'x" || trackingId != "',
    "x' || 1=1 || '",
    "x || y",
    "%' ~ '",
    "~",
    "' ~ '' || domain ~ '",
    "x') || (trackingId != '",
]


@pytest.mark.pocketbase
@pytest.mark.parametrize("hostile", HOSTILE_VALUES)
def test_hostile_values_cannot_widen_a_query(
    pb: PocketBaseClient, website: Website, hostile: str
) -> None:
    # The site exists, so a widened query would return it (or others).
    assert pb.first_record("websites", pb_filter("trackingId = {:t}", t=website.tracking_id))
    for expression in ("trackingId = {:t}", "trackingId ~ {:t}", "(domain = {:t})"):
        page = pb.list_records("websites", filter=pb_filter(expression, t=hostile))
        assert page.items == [], (expression, hostile)


@pytest.mark.pocketbase
def test_values_with_quotes_match_exactly(pb: PocketBaseClient) -> None:
    name = 'O\'Brien "quoted" || ~ (site)'
    created = pb.create_record("websites", {"name": name, "domain": "quotes.example.test"})
    found = pb.list_records("websites", filter=pb_filter("name = {:n}", n=name)).items
    assert [record["id"] for record in found] == [created["id"]]


# PocketBase (measured on 0.40.6) refuses a filter longer than about 3,500 characters: 134 ids
# in the visitors lookup, 111 in the sessions lookup (which also filters on ``updated``).
@pytest.mark.pocketbase
def test_a_full_chunk_filter_is_accepted(pb: PocketBaseClient) -> None:
    ids = [random_record_id() for _ in range(ANY_OF_CHUNK)]
    visitors = pb.list_records("visitors", filter=next(any_of("id", ids)), per_page=len(ids))
    assert visitors.items == []
    cutoff = pb_filter("updated >= {:cutoff}", cutoff=pb_date(time.time() - 1800))
    sessions = f"({next(any_of('visitor', ids))}) && {cutoff}"
    assert list(pb.iter_records("sessions", filter=sessions)) == []
