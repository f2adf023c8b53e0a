"""Frames between a host process and its worker process (``worker_process=True``).

On the pipe a frame is a 4-byte little-endian length and a ``marshal`` payload: a tuple of
a tag and plain values (tuples, lists, dicts, strings and numbers only), so nothing the host
sends can run code in the worker process. In code a frame is one of the dataclasses below:
``send`` and ``receive`` convert.

host → worker process: ``Options`` (first), then ``Calls``, ``Flush``, ``Stop``;
worker process → host: ``Ready`` or ``Failed`` (once), then ``Stats``, and ``Stopped``.

``calls_frame`` encodes a ``Calls`` frame straight from ``TrackCall`` objects on the host's
feeder thread; what ``marshal`` cannot carry (custom data holding arbitrary objects) is
validated on the host instead, which gives the same drop reason the worker would have given.
"""

from __future__ import annotations

import dataclasses
import json
import marshal
import os
import struct
from dataclasses import dataclass
from typing import Any

from skopos._stats import invalid
from skopos._tracking.activity import TrackCall
from skopos._tracking.collect import CollectRejection, decode_collect
from skopos._tracking.payload import (
    Rejection,
    validate_custom_data,
    validate_event_name,
    validate_payload,
)
from skopos._tracking.snapshot import CapturedRequest, EnvironCapture, ScopeCapture

__all__ = [
    "Calls",
    "Failed",
    "Flush",
    "Frame",
    "Options",
    "Ready",
    "Stats",
    "Stop",
    "Stopped",
    "call_from_wire",
    "call_to_wire",
    "calls_frame",
    "receive",
    "send",
    "send_encoded",
]

_LENGTH = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class Options:
    """The SDK's options (``dataclasses.asdict`` of them): the first frame a child reads.
    ``wait``: connect to PocketBase before answering ``Ready`` (``init(wait=True)``)."""

    values: dict[str, Any]
    wait: bool = False


@dataclass(frozen=True, slots=True)
class Calls:
    """Tracking calls, as ``call_to_wire`` tuples (``("call", ...)`` or ``("drop", reason)``)."""

    items: list[tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class Flush:
    """Write everything now; report ``generation`` as completed once done."""

    generation: int


@dataclass(frozen=True, slots=True)
class Stop:
    """Write for at most ``timeout`` seconds, then exit."""

    timeout: float


@dataclass(frozen=True, slots=True)
class Ready:
    """The worker process is running (and connected, if ``Options.wait`` asked for it)."""


@dataclass(frozen=True, slots=True)
class Failed:
    """The worker process could not start: the exception's class name and message."""

    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class Stats:
    """What the worker process's ledger counted since its last report."""

    delta: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Stopped:
    """The worker process wrote what it could and is exiting."""


Frame = Options | Calls | Flush | Stop | Ready | Failed | Stats | Stopped
_TAGS: dict[type[Frame], str] = {
    Options: "options",
    Calls: "calls",
    Flush: "flush",
    Stop: "stop",
    Ready: "ready",
    Failed: "failed",
    Stats: "stats",
    Stopped: "stopped",
}
_FRAMES: dict[str, type[Frame]] = {tag: kind for kind, tag in _TAGS.items()}


def _dumps(message: object) -> bytes:
    """marshal.dumps; ValueError for what marshal cannot carry."""
    return marshal.dumps(message)  # type: ignore[arg-type]  # checked at run time


def send(fd: int, frame: Frame) -> None:
    """Send one frame (blocks while the pipe is full: that is the backpressure)."""
    values = tuple(getattr(frame, field.name) for field in dataclasses.fields(frame))
    send_encoded(fd, _dumps((_TAGS[type(frame)], *values)))


def send_encoded(fd: int, payload: bytes) -> None:
    """Send one frame already encoded (``calls_frame``)."""
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


def receive(fd: int) -> Frame | None:
    """The next frame, or None at end of stream."""
    header = _read_exactly(fd, _LENGTH.size)
    if header is None:
        return None
    payload = _read_exactly(fd, _LENGTH.unpack(header)[0])
    if payload is None:
        return None
    tag, *values = marshal.loads(payload)
    return _FRAMES[tag](*values)


def _request_to_wire(captured: CapturedRequest | None) -> object:
    """An environ capture as its list of values, a scope capture as a tuple of its parts
    (undecoded: decoding is the worker's job, off the host's GIL)."""
    if captured is None:
        return None
    if isinstance(captured, EnvironCapture):
        return captured.values
    return (captured.client, captured.path, captured.wanted_headers())


def _request_from_wire(wired: object) -> CapturedRequest | None:
    # Sizes for the worker process's own queue budget (plain data: strings and bytes).
    if isinstance(wired, list):
        return EnvironCapture(wired, sum(len(v) for v in wired if isinstance(v, str)))
    if isinstance(wired, tuple):
        client, path, headers = wired
        size = sum(len(item[-1]) for item in headers if isinstance(item[-1], bytes))
        return ScopeCapture(client, path, tuple(headers), size)
    return None


def _wire(call: TrackCall, request: object) -> tuple[object, ...]:
    return ("call", call.kind, call.site_id, call.at, request, call.payload, call.name, call.data)


def calls_frame(calls: list[TrackCall]) -> bytes:
    """The encoded ``Calls`` frame for ``calls``.

    The common case costs one tuple per call; only when marshal refuses the
    whole frame is each call checked, and the odd ones validated on the host.
    """
    try:
        items = [_wire(call, _request_to_wire(call.request)) for call in calls]
        return _dumps((_TAGS[Calls], items))
    except ValueError:
        return _dumps((_TAGS[Calls], [call_to_wire(call) for call in calls]))


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
            return ("drop", invalid(checked.reason))
        payload = json.dumps(payload, default=repr)  # unknown fields only, which are ignored
    elif call.kind == "collect":
        decoded = decode_collect(payload)
        if isinstance(decoded, CollectRejection):
            return ("drop", invalid(decoded.reason))
        payload = json.dumps(payload, default=repr)  # unknown fields only, which are ignored
    else:
        if call.kind == "server":
            checked_name = validate_event_name(name)
            if isinstance(checked_name, Rejection):
                return ("drop", invalid(checked_name.reason))
            name = checked_name
        elif not isinstance(name, (str, int)) or isinstance(name, bool):
            return ("drop", invalid("bad_user_id"))
        cleaned = validate_custom_data(data)
        if isinstance(cleaned, Rejection):
            return ("drop", invalid(cleaned.reason))
        data = cleaned
    message = (*wire, payload, name, data)
    try:
        _dumps(message)
    except ValueError:
        return ("drop", invalid("not_serializable"))
    return message


def call_from_wire(message: tuple[Any, ...]) -> TrackCall | str:
    """The ``TrackCall`` of a ``("call", ...)`` item, or the drop reason of a ``("drop", ...)``."""
    if message[0] == "drop":
        return str(message[1])
    _, kind, site_id, at, request, payload, name, data = message
    call = TrackCall(kind, site_id, _request_from_wire(request), payload, name, data)
    call.at = at
    return call
