"""PocketBase's date format, ``2026-01-02 03:04:05.678Z`` (UTC, milliseconds), both ways."""

from __future__ import annotations

import datetime as dt

__all__ = ["format_pb_date", "parse_pb_date", "pb_date"]


def format_pb_date(moment: dt.datetime) -> str:
    """``moment`` (naive means UTC) in PocketBase's format.

    >>> format_pb_date(dt.datetime(2026, 1, 2, 3, 4, 5, 678900))
    '2026-01-02 03:04:05.678Z'
    """
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def pb_date(timestamp: float) -> str:
    """Epoch seconds in PocketBase's format.

    >>> pb_date(0.5)
    '1970-01-01 00:00:00.500Z'
    """
    return format_pb_date(dt.datetime.fromtimestamp(timestamp, dt.timezone.utc))


def parse_pb_date(value: str) -> float:
    """PocketBase's format as epoch seconds; 0.0 if unreadable.

    >>> parse_pb_date("1970-01-01 00:00:01.250Z"), parse_pb_date("soon")
    (1.25, 0.0)
    """
    # Not strptime: the worker thread parses dates, and strptime imports ``_strptime`` on
    # first use and holds a lock of that module while parsing, either of which a fork()
    # at that moment leaves held for good in the child (gunicorn --preload, uWSGI).
    if not isinstance(value, str) or not value.endswith("Z"):
        return 0.0
    try:
        moment = dt.datetime.fromisoformat(value[:-1])
    except ValueError:
        return 0.0
    if moment.tzinfo is not None:
        return 0.0
    return moment.replace(tzinfo=dt.timezone.utc).timestamp()
