"""Frames between a host process and its worker process (``worker_process=True``).

A frame is a 4-byte little-endian length and a ``marshal`` payload: plain
tuples, lists, dicts, strings and numbers only, so nothing the host sends can
run code in the worker process. ``call_to_wire`` turns a ``TrackCall`` into such
a tuple on the host's feeder thread; what ``marshal`` cannot carry (custom data
holding arbitrary objects) is validated on the host instead, which gives the
same drop reason the worker would have given.
"""

from __future__ import annotations

import json
import marshal
import os
import struct
from typing import Any

from skopos._tracking.activity import TrackCall
from skopos._tracking.payload import (
    Rejection,
    validate_custom_data,
    validate_event_name,
    validate_payload,
)
from skopos._tracking.snapshot import CapturedRequest, EnvironCapture, ScopeCapture

__all__ = [
    "call_from_wire",
    "call_to_wire",
    "calls_frame",
    "read_frame",
    "write_encoded",
    "write_frame",
]

_LENGTH = struct.Struct("<I")


def _dumps(message: object) -> bytes:
    """marshal.dumps; ValueError for what marshal cannot carry."""
    return marshal.dumps(message)  # type: ignore[arg-type]  # checked at run time


def write_frame(fd: int, message: object) -> None:
    """Send one message (blocks while the pipe is full: that is the backpressure)."""
    write_encoded(fd, _dumps(message))


def write_encoded(fd: int, payload: bytes) -> None:
    """Send one message already encoded (``calls_frame``)."""
    data = memoryview(_LENGTH.pack(len(payload)) + payload)
    while data:
        data = data[os.write(fd, data) :]


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks: list[bytes] = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int) -> Any:
    """The next message, or None at end of stream."""
    header = _read_exactly(fd, _LENGTH.size)
    if header is None:
        return None
    payload = _read_exactly(fd, _LENGTH.unpack(header)[0])
    return None if payload is None else marshal.loads(payload)


def _request_to_wire(captured: CapturedRequest | None) -> object:
    """An environ capture as its list of values, a scope capture as a tuple of its parts
    (undecoded: decoding is the worker's job, off the host's GIL)."""
    if captured is None:
        return None
    if isinstance(captured, EnvironCapture):
        return captured.values
    return (captured.client, captured.path, captured.wanted_headers())


def _request_from_wire(wired: object) -> CapturedRequest | None:
    if isinstance(wired, list):
        return EnvironCapture(wired)
    if isinstance(wired, tuple):
        client, path, headers = wired
        return ScopeCapture(client, path, tuple(headers))
    return None


def _wire(call: TrackCall, request: object) -> tuple[object, ...]:
    return ("call", call.kind, call.site_id, call.at, request, call.payload, call.name, call.data)


def calls_frame(calls: list[TrackCall]) -> bytes:
    """The encoded ``("calls", [...])`` message for ``calls``.

    The common case costs one tuple per call; only when marshal refuses the
    whole frame is each call checked, and the odd ones validated on the host.
    """
    try:
        return _dumps(("calls", [_wire(call, _request_to_wire(call.request)) for call in calls]))
    except ValueError:
        return _dumps(("calls", [call_to_wire(call) for call in calls]))


def call_to_wire(call: TrackCall) -> tuple[object, ...]:
    """A marshal-safe tuple for ``call``: ``("call", ...)``, or ``("drop", reason)``."""
    request = _request_to_wire(call.request)
    try:
        _dumps(request)
    except ValueError:
        # Odd objects in the request: reduce it here, to plain strings.
        assert call.request is not None
        request = EnvironCapture.of_snapshot(call.request.snapshot()).values
    message = _wire(call, request)
    try:
        _dumps(message)
    except ValueError:
        return _plain(call, message[:5])
    return message


def _plain(call: TrackCall, wire: tuple[object, ...]) -> tuple[object, ...]:
    """Validate on the host what marshal cannot carry (rare: odd objects in the data)."""
    payload, name, data = call.payload, call.name, call.data
    if call.kind == "api":
        checked = validate_payload(payload)
        if isinstance(checked, Rejection):
            return ("drop", f"invalid:{checked.reason}")
        payload = json.dumps(payload, default=repr)  # unknown fields only, which are ignored
    else:
        if call.kind == "server":
            checked_name = validate_event_name(name)
            if isinstance(checked_name, Rejection):
                return ("drop", f"invalid:{checked_name.reason}")
            name = checked_name
        elif not isinstance(name, (str, int)) or isinstance(name, bool):
            return ("drop", "invalid:bad_user_id")
        cleaned = validate_custom_data(data)
        if isinstance(cleaned, Rejection):
            return ("drop", f"invalid:{cleaned.reason}")
        data = cleaned
    message = (*wire, payload, name, data)
    try:
        _dumps(message)
    except ValueError:
        return ("drop", "invalid:not_serializable")
    return message


def call_from_wire(message: tuple[Any, ...]) -> TrackCall:
    """The ``TrackCall`` of a ``("call", ...)`` message."""
    _, kind, site_id, at, request, payload, name, data = message
    call = TrackCall(kind, site_id, _request_from_wire(request), payload, name, data)
    call.at = at
    return call
