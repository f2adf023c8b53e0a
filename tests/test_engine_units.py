"""Pure logic of the tracking engine: options, snapshots, the queue, ids, error groups."""

from __future__ import annotations

from types import SimpleNamespace

from skopos._tracking.identity import VisitorHasher, derive_record_id, random_record_id
from skopos._tracking.snapshot import capture_request, take_snapshot

# -- snapshots ----------------------------------------------------------------------------


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


# -- ids ------------------------------------------------------------------------------------


def test_record_ids_are_pocketbase_shaped() -> None:
    for record_id in [derive_record_id("a", "b"), random_record_id()]:
        assert len(record_id) == 15
        assert record_id.isalnum()
        assert record_id == record_id.lower()
    assert derive_record_id("session", "v", "") != derive_record_id("session", "v", "x")
    assert derive_record_id("a", "bc") != derive_record_id("ab", "c")


def test_visitor_ids_depend_on_salt_site_ip_and_agent() -> None:
    one, two = VisitorHasher(b"salt-one"), VisitorHasher(b"salt-two")
    base = one.visitor_id("site", "203.0.113.1", "UA")
    assert base == one.visitor_id("site", "203.0.113.1", "UA")
    assert len(base) == 32
    assert base != two.visitor_id("site", "203.0.113.1", "UA")
    assert base != one.visitor_id("other", "203.0.113.1", "UA")
    assert base != one.visitor_id("site", "203.0.113.2", "UA")
    assert base != one.visitor_id("site", "203.0.113.1", "UA2")
