"""Request → snapshot: what the request thread copies out of WSGI environs, ASGI scopes and
framework requests, and nothing else."""

from __future__ import annotations

from types import SimpleNamespace

from skopos._tracking.snapshot import (
    MAX_FORWARDING_LENGTH,
    MAX_HEADER_LENGTH,
    RequestSnapshot,
    capture_request,
    take_snapshot,
)


def test_environ_snapshot_copies_only_what_it_needs() -> None:
    environ = {
        "REMOTE_ADDR": "203.0.113.5",
        "PATH_INFO": "/api/event",
        "HTTP_USER_AGENT": "UA" * 1000,
        "HTTP_ACCEPT_LANGUAGE": "de",
        "HTTP_X_FORWARDED_FOR": "1.2.3.4",
        "HTTP_COOKIE": "session=secret",
        "wsgi.input": object(),
    }
    snap = take_snapshot(environ)
    assert snap is not None
    assert (snap.peer, snap.path, snap.accept_language) == ("203.0.113.5", "/api/event", "de")
    assert snap.user_agent is not None
    assert len(snap.user_agent) == 1024
    assert snap.forwarding_headers() == {"x-forwarded-for": "1.2.3.4"}
    assert "203.0.113.5" not in repr(snap)


def test_scope_snapshot_joins_repeated_headers() -> None:
    scope = {
        "type": "http",
        "path": "/e",
        "client": ("2001:db8::1", 443),
        "headers": [
            (b"User-Agent", b"Mozilla/5.0"),
            (b"x-forwarded-for", b"1.1.1.1"),
            (b"x-forwarded-for", b"2.2.2.2"),
            ("bad", "types"),
            (b"only-one",),
        ],
    }
    snap = take_snapshot(scope)
    assert snap is not None
    assert (snap.peer, snap.path, snap.user_agent) == ("2001:db8::1", "/e", "Mozilla/5.0")
    assert snap.x_forwarded_for == "1.1.1.1, 2.2.2.2"


def test_framework_requests_are_recognised_by_shape() -> None:
    environ = {"REMOTE_ADDR": "198.51.100.1", "PATH_INFO": "/x"}
    scope = {"type": "http", "path": "/y", "client": ["198.51.100.2", 1], "headers": []}
    django_like = SimpleNamespace(META=environ, scope=scope)  # Django's ASGIRequest has both
    flask_like = SimpleNamespace(environ=environ)
    starlette_like = SimpleNamespace(scope=scope)
    assert take_snapshot(django_like).peer == "198.51.100.1"  # type: ignore[union-attr]
    assert take_snapshot(flask_like).peer == "198.51.100.1"  # type: ignore[union-attr]
    assert take_snapshot(starlette_like).peer == "198.51.100.2"  # type: ignore[union-attr]
    assert take_snapshot(scope).path == "/y"  # type: ignore[union-attr]
    assert take_snapshot(None) is None
    assert take_snapshot(object()) is None
    assert take_snapshot({"client": None, "type": "http", "headers": None}).peer is None  # type: ignore[union-attr]


def test_a_request_type_is_remembered_but_never_trusted_blindly() -> None:
    class Shaped:  # one type, instances of different shapes
        def __init__(self, **attributes: object) -> None:
            self.__dict__.update(attributes)

    environ = {"REMOTE_ADDR": "198.51.100.5", "PATH_INFO": "/x"}
    scope = {"type": "http", "path": "/y", "client": ("198.51.100.6", 1), "headers": []}
    assert take_snapshot(Shaped(environ=environ)).peer == "198.51.100.5"  # type: ignore[union-attr]
    assert take_snapshot(Shaped(scope=scope)).peer == "198.51.100.6"  # type: ignore[union-attr]
    assert take_snapshot(Shaped(META=environ, scope=scope)).path == "/x"  # type: ignore[union-attr]
    assert take_snapshot(Shaped(environ="not a mapping")) is None


def test_a_capture_is_not_changed_by_what_the_app_does_to_the_request_afterwards() -> None:
    # The worker reduces a capture later: by then middleware may have edited the request
    # (Starlette's MutableHeaders edits the scope's header list in place).
    headers = [(b"user-agent", b"Before/1")]
    scope = {"type": "http", "path": "/a", "client": ("198.51.100.3", 1), "headers": headers}
    environ = {"REMOTE_ADDR": "198.51.100.4", "PATH_INFO": "/b", "HTTP_USER_AGENT": "Before/2"}
    scope_capture, environ_capture = capture_request(scope), capture_request(environ)
    headers[0] = (b"user-agent", b"After/1")
    headers.append((b"x-forwarded-for", b"203.0.113.1"))
    environ["HTTP_USER_AGENT"] = "After/2"
    environ["REMOTE_ADDR"] = "203.0.113.2"
    assert scope_capture is not None
    assert environ_capture is not None
    from_scope, from_environ = scope_capture.snapshot(), environ_capture.snapshot()
    assert (from_scope.user_agent, from_scope.x_forwarded_for) == ("Before/1", None)
    assert (from_environ.user_agent, from_environ.peer) == ("Before/2", "198.51.100.4")
    # Nothing of the captures leaks into reprs (logs).
    assert "198.51" not in repr(scope_capture) + repr(environ_capture)


# -- ASGI scopes: header names and values, bounded --------------------------------------------


def test_scope_snapshot_decodes_values_as_latin1_and_cuts_long_ones() -> None:
    exact = b"a" * MAX_HEADER_LENGTH
    scope = {
        "type": "http",
        "headers": [
            (b"user-agent", exact),
            (b"accept-language", b"x" * (MAX_HEADER_LENGTH + 5)),
            (b"sec-ch-ua", bytearray(b"\xe9t\xe9")),
            (b"sec-fetch-mode", memoryview(b"cors")),  # not bytes: ignored, as before
        ],
    }
    snap = take_snapshot(scope)
    assert snap is not None
    assert snap.user_agent == exact.decode()
    assert snap.accept_language == "x" * MAX_HEADER_LENGTH
    assert snap.sec_ch_ua == "\xe9t\xe9"
    assert snap.sec_fetch_mode is None


def test_scope_snapshot_header_names_in_any_case_and_shape() -> None:
    scope = {
        "type": "http",
        "headers": [
            (b"X-Forwarded-For", b"1.1.1.1"),
            (bytearray(b"x-forwarded-for"), b"9.9.9.9"),  # unhashable: skipped
            (b"x-forwarded-for", b"2.2.2.2"),
            (b"X-REAL-IP", b"3.3.3.3"),
            ("user-agent", b"str names are not ASGI"),
            ("User-Agent", b"nor in upper case"),
            (b"Host", b"example.com"),
            (b"cf-connecting-ip", "not bytes"),
            None,
            (b"forwarded", b"for=4.4.4.4", b"extra"),
            [b"cf-ipcountry", b"DE"],
        ],
    }
    snap = take_snapshot(scope)
    assert snap is not None
    assert snap.x_forwarded_for == "1.1.1.1, 2.2.2.2"
    assert snap.x_real_ip == "3.3.3.3"
    assert snap.user_agent is None
    assert snap.cf_connecting_ip is None
    assert snap.forwarded is None
    assert snap.cf_ipcountry == "DE"


def test_scope_snapshot_joined_repeats_stay_bounded() -> None:
    half = b"b" * (MAX_HEADER_LENGTH - 10)
    snap = take_snapshot({"type": "http", "headers": [(b"accept-language", half)] * 3})
    assert snap is not None
    assert snap.accept_language is not None
    assert len(snap.accept_language) == MAX_HEADER_LENGTH
    assert snap.accept_language.startswith(half.decode() + ", bbb")
    # Forwarding headers keep their end: the last copy is what our own proxy added.
    hops = [b", ".join([b"6.6.6.6"] * 600), b"203.0.113.9"]
    snap = take_snapshot({"type": "http", "headers": [(b"x-forwarded-for", h) for h in hops]})
    assert snap is not None
    assert snap.x_forwarded_for is not None
    assert len(snap.x_forwarded_for) <= MAX_FORWARDING_LENGTH + len("for=unknown,")
    assert snap.x_forwarded_for.startswith("for=unknown, 6.6.6.6")
    assert snap.x_forwarded_for.endswith("6.6.6.6, 203.0.113.9")


def test_forwarding_headers_keep_their_order_and_skip_missing() -> None:
    snap = RequestSnapshot("1.2.3.4")
    assert snap.forwarding_headers() == {}
    snap.cf_connecting_ip, snap.forwarded, snap.x_forwarded_for = "c", "f", "x"
    assert list(snap.forwarding_headers().items()) == [  # in FORWARDING_HEADERS order
        ("forwarded", "f"),
        ("x-forwarded-for", "x"),
        ("cf-connecting-ip", "c"),
    ]
