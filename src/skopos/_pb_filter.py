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

__all__ = ["pb_filter", "quote_value"]

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
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        value = value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
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
