"""Bind values into PocketBase filter expressions without string interpolation.

PocketBase's REST API takes a filter as one string, so values must be quoted on
the client. ``pb_filter("website = {:site} && visitorId = {:vid}", site=s, vid=v)``
replaces each ``{:name}`` placeholder with a safely quoted literal.

Quotes are escaped as ``\\'``, which every PocketBase since 0.23 reads the same
way. Backslashes are not: PocketBase 0.26 treats a backslash as an escape only
before a quote, 0.40 also reads ``\\\\`` as one backslash (both measured). No
encoding of a backslash is safe on both (a trailing one would escape our closing
quote on 0.26 and let the rest of the expression leak into the string), so a
value containing a backslash is refused with ``ValueError``. The SDK only
filters on ids, hashes, domains and emails, which never contain one.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterator, Sequence

from skopos._pocketbase.dates import format_pb_date

__all__ = ["ANY_OF_CHUNK", "any_of", "pb_filter", "quote_value"]

FilterValue = str | int | float | bool | None | dt.datetime | dt.date

_PLACEHOLDER = re.compile(r"\{:(\w+)\}")


def quote_value(value: FilterValue) -> str:
    """Render one value as a PocketBase filter literal.

    >>> quote_value("it's")
    "'it\\\\'s'"
    >>> quote_value(3), quote_value(True), quote_value(None)
    ('3', 'true', 'null')
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("filter values must be finite numbers")
        return repr(value)
    if isinstance(value, dt.datetime):
        value = format_pb_date(value)
    elif isinstance(value, dt.date):
        value = value.isoformat()
    if not isinstance(value, str):
        raise TypeError(f"cannot use a {type(value).__name__} as a filter value")
    if "\\" in value:
        raise ValueError("filter values cannot contain a backslash")
    return "'" + value.replace("'", "\\'") + "'"


def pb_filter(expression: str, /, **params: FilterValue) -> str:
    """Fill ``{:name}`` placeholders in ``expression`` with quoted ``params``.

    Every placeholder needs a parameter (``KeyError`` otherwise); values are
    never spliced in raw.

    >>> pb_filter("trackingId = {:tid} && isArchived = {:archived}", tid="a'b", archived=False)
    "trackingId = 'a\\\\'b' && isArchived = false"
    """

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in params:
            raise KeyError(f"filter placeholder {{:{name}}} has no value")
        return quote_value(params[name])

    return _PLACEHOLDER.sub(substitute, expression)


# Values per ``any_of`` filter: PocketBase 0.40 refuses filters over ~3,500 characters
# (measured: 134 visitor ids, 111 session ids), and a refused lookup stalls the worker.
ANY_OF_CHUNK = 100


def any_of(field: str, values: Sequence[str], *, chunk: int = ANY_OF_CHUNK) -> Iterator[str]:
    """Filters matching ``field`` against ``values``, at most ``chunk`` values each, so
    that no filter grows past what PocketBase accepts. Nothing for no values.

    >>> list(any_of("id", ["a", "b", "c"], chunk=2))
    ["id = 'a' || id = 'b'", "id = 'c'"]
    """
    for start in range(0, len(values), chunk):
        part = values[start : start + chunk]
        clauses = " || ".join(f"{field} = {{:v{i}}}" for i in range(len(part)))
        yield pb_filter(clauses, **{f"v{i}": value for i, value in enumerate(part)})
