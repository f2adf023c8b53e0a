"""The trace the spool tests send, and what it must leave in PocketBase."""

from __future__ import annotations

from collections import Counter

from skopos import SkoposSDK
from tests._support.tracking_helpers import custom, environ, js_error, page_view

VISITORS = 12


def send_trace(sdk: SkoposSDK, domain: str, calls: int) -> None:
    """``calls`` tracking calls: page views, custom events and JS errors of 12 visitors."""
    for number in range(calls):
        request = environ(f"198.51.100.{number % VISITORS + 1}")
        if number % 10 == 9:
            payload = js_error(domain, f"Error {number % 3}")
        elif number % 10 == 4:
            payload = custom(domain, f"/c/{number}", "signup", {"n": number})
        else:
            payload = page_view(domain, f"/k/{number}")
        sdk.track_api_event(request, payload)


def expected_events(calls: int) -> Counter[str]:
    """Events by path once the whole trace is written, each exactly once."""
    paths: Counter[str] = Counter()
    for number in range(calls):
        if number % 10 == 4:
            paths[f"/c/{number}"] += 1
        elif number % 10 != 9:
            paths[f"/k/{number}"] += 1
    return paths


def expected_errors(calls: int) -> dict[str, int]:
    """``js_errors`` counts by message."""
    counts: Counter[str] = Counter()
    for number in range(calls):
        if number % 10 == 9:
            counts[f"Error {number % 3}"] += 1
    return dict(counts)
