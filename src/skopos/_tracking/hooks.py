"""``before_send``: the site's own last word on what an activity stores.

The hook runs in the worker (never on the request thread), after validation, filtering,
scrubbing and identification, with a plain dict of the fields that will be stored::

    def before_send(fields: dict) -> dict | None:
        if fields["path"].startswith("/admin"):
            return None                          # dropped, counted as "before_send"
        fields["data"] = None                    # or change any field
        return fields

Keys: ``type``, ``path``, ``url``, ``referrer``, ``name``, ``data``, ``error_message``,
``stack_trace``, ``language``, ``country``, ``region``. What it returns is validated like
input from the browser (same bounds), so a hook can remove or change, never break a record.
A hook that raises, returns something else, or breaks a bound drops the activity, counted as
``before_send_error`` and logged: a privacy hook that fails must not let through what it
was meant to remove.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

from skopos._exceptions import ConfigurationError
from skopos._stats import DropReason
from skopos._tracking.activity import Activity
from skopos._tracking.payload import Rejection, validate_custom_data

__all__ = ["BeforeSendHook", "load_hook"]

logger = logging.getLogger("skopos")

_TEXT_LIMITS = {
    "path": 2048,
    "url": 2048,
    "referrer": 2048,
    "name": 100,
    "error_message": 1000,
    "stack_trace": 8000,
    "language": 35,
    "country": 2,
    "region": 16,
}
_OPTIONAL = frozenset({"url", "referrer", "name", "error_message", "stack_trace", "language"})


def load_hook(spec: Callable[..., Any] | str) -> Callable[[dict[str, Any]], Any]:
    """The hook itself, or the function a ``"module:function"`` path names."""
    if callable(spec):
        return spec
    module_name, _, attribute = spec.partition(":")
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"before_send {spec!r} cannot be imported: {exc}") from None
    if not callable(found):
        raise ConfigurationError(f"before_send {spec!r} is not callable")
    return found  # type: ignore[no-any-return]


class BeforeSendHook:
    """Applies a ``before_send`` function to activities; never raises."""

    def __init__(self, function: Callable[[dict[str, Any]], Any]) -> None:
        self._function = function

    def apply(self, activity: Activity) -> Activity | str:
        """``activity`` as the hook leaves it, or a drop reason."""
        fields: dict[str, Any] = {
            "type": activity.type,
            "path": activity.path,
            "url": activity.url,
            "referrer": activity.referrer,
            "name": activity.name,
            "data": dict(activity.data) if activity.data is not None else None,
            "error_message": activity.error_message,
            "stack_trace": activity.stack_trace,
            "language": activity.language,
            "country": activity.country,
            "region": activity.region,
        }
        try:
            result = self._function(fields)
        except Exception:
            logger.exception("skopos: before_send raised; the activity is dropped")
            return DropReason.BEFORE_SEND_ERROR
        if result is None:
            return DropReason.BEFORE_SEND
        problem = _check(result, activity.type)
        if problem:
            logger.error("skopos: before_send returned %s; the activity is dropped", problem)
            return DropReason.BEFORE_SEND_ERROR
        data = validate_custom_data(result.get("data"))
        if isinstance(data, Rejection):
            logger.error("skopos: before_send returned bad data (%s)", data.reason)
            return DropReason.BEFORE_SEND_ERROR
        activity.path = result["path"]
        activity.url = result.get("url") or ""
        activity.referrer = result.get("referrer")
        activity.name = result.get("name")
        activity.data = data
        activity.error_message = result.get("error_message")
        activity.stack_trace = result.get("stack_trace")
        activity.language = result.get("language")
        activity.country = result.get("country") or ""
        activity.region = result.get("region") or ""
        return activity


def _check(result: object, activity_type: str) -> str:
    """What is wrong with a hook's answer ("" when nothing)."""
    if not isinstance(result, dict):
        return f"a {type(result).__name__}, not a dict"
    if result.get("type") != activity_type:
        return "another type"
    for key, limit in _TEXT_LIMITS.items():
        value = result.get(key)
        if value is None and key in _OPTIONAL:
            continue
        if not isinstance(value, str) or len(value) > limit:
            return f"a bad {key!r}"
    if activity_type in ("custom", "click") and not result.get("name"):
        return "no event name"
    return ""
