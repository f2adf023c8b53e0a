"""The host ↔ worker-process frames (pure logic, a real pipe)."""

from __future__ import annotations

import marshal
import os

from skopos._runtime.wire import (
    Calls,
    Flush,
    call_from_wire,
    calls_frame,
    receive,
    send,
    send_encoded,
)
from skopos._tracking.activity import TrackCall
from skopos._tracking.snapshot import RequestSnapshot, capture_request
from tests._support.tracking_helpers import environ


def test_calls_survive_the_pipe_field_for_field() -> None:
    scope = {
        "type": "http",
        "client": ("198.51.100.4", 5000),
        "path": "/p",
        "headers": [(b"user-agent", b"Agent/1"), (b"x-forwarded-for", b"203.0.113.9")],
    }
    calls = [
        TrackCall("api", "site", capture_request(environ("203.0.113.7")), b'{"type":"pageView"}'),
        TrackCall("server", "other", None, None, "paid", {"amount": 1.5, "tags": ["a"]}),
        TrackCall("identify", "site", capture_request(scope), None, "u1", {"name": "Ada"}),
    ]
    read_end, write_end = os.pipe()
    try:
        send_encoded(write_end, calls_frame(calls))
        send(write_end, Flush(3))
        frame = receive(read_end)
        assert receive(read_end) == Flush(3)
    finally:
        os.close(write_end)
    assert receive(read_end) is None  # end of stream
    os.close(read_end)
    assert isinstance(frame, Calls)
    items = frame.items
    for original, item in zip(calls, items, strict=True):
        copy = unwire(item)
        for name in TrackCall.__slots__:
            if name != "request":
                assert getattr(copy, name) == getattr(original, name)
        if original.request is None:
            assert copy.request is None
        else:
            # The capture crosses undecoded; the worker process reduces it.
            assert type(copy.request) is type(original.request)
            assert_same_snapshot(copy.request.snapshot(), original.request.snapshot())
    decoded = unwire(items[2]).request
    assert decoded is not None
    snapshot = decoded.snapshot()
    assert (snapshot.peer, snapshot.path, snapshot.user_agent) == ("198.51.100.4", "/p", "Agent/1")


def unwire(item: tuple[object, ...]) -> TrackCall:
    call = call_from_wire(item)
    assert isinstance(call, TrackCall), call
    return call


def assert_same_snapshot(left: RequestSnapshot, right: RequestSnapshot) -> None:
    for name in RequestSnapshot.__slots__:
        assert getattr(left, name) == getattr(right, name), name


def test_only_the_headers_the_worker_reads_cross_the_pipe() -> None:
    scope = {
        "type": "http",
        "client": ("198.51.100.4", 5000),
        "path": "/p",
        "headers": [
            (b"cookie", b"session=secret"),
            (b"authorization", b"Bearer secret"),
            (b"User-Agent", b"Agent/2"),
            (b"accept-language", b"fr"),
        ],
    }
    frame = calls_frame([TrackCall("api", "s", capture_request(scope), b"{}")])
    assert b"secret" not in frame
    (item,) = marshal.loads(frame)[1]
    copy = unwire(item).request
    assert copy is not None
    assert (copy.snapshot().user_agent, copy.snapshot().accept_language) == ("Agent/2", "fr")


def test_a_request_marshal_cannot_carry_is_reduced_on_the_host() -> None:
    class Odd:
        pass

    scope = {
        "type": "http",
        "client": ("198.51.100.4", Odd()),
        "path": "/p",
        "headers": [(b"user-agent", b"Agent/3")],
    }
    environ_ = environ("203.0.113.8")
    environ_["HTTP_ACCEPT_LANGUAGE"] = Odd()
    calls = [
        TrackCall("api", "s", capture_request(scope), b"{}"),
        TrackCall("api", "s", capture_request(environ_), b"{}"),
    ]
    items = marshal.loads(calls_frame(calls))[1]
    for original, item in zip(calls, items, strict=True):
        copy = unwire(item).request
        assert original.request is not None
        assert copy is not None
        assert_same_snapshot(copy.snapshot(), original.request.snapshot())
    assert unwire(items[0]).request.snapshot().peer == "198.51.100.4"  # type: ignore[union-attr]


def test_what_marshal_cannot_carry_is_validated_on_the_host() -> None:
    class Odd:
        pass

    calls = [
        TrackCall("server", "s", None, None, "ok", {"n": 1}),
        TrackCall("server", "s", None, None, "bad", {"when": Odd()}),
        TrackCall("server", "s", None, None, Odd(), None),
        TrackCall("identify", "s", None, None, Odd(), None),
        TrackCall("server", "s", None, None, "tuple", {"seats": (1, 2)}),
        TrackCall("api", "s", None, {"type": "pageView", "url": "https://x.test/", "x": Odd()}),
    ]
    _, items = marshal.loads(calls_frame(calls))
    assert items[0][0] == "call"
    assert items[1] == ("drop", "invalid:custom_data_bad_value")
    assert items[2][0] == "drop"
    assert items[3] == ("drop", "invalid:bad_user_id")
    assert items[4][0] == "call"  # tuples marshal: validated in the worker as usual
    assert items[5][0] == "call"
    assert isinstance(items[5][5], str)  # the payload as JSON, the odd unknown field as text
