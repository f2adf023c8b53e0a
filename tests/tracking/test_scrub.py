"""No personal data by default (``_tracking/scrub.py``): pure."""

from __future__ import annotations

import pytest

from skopos._tracking.scrub import Scrubber, keep_allowed_query, scrub_path, scrub_text


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        ("https://a.test/p?token=abc&email=a%40b.c", "https://a.test/p"),
        (
            "https://a.test/?utm_source=nl&utm_medium=email&utm_campaign=x&q=secret",
            "https://a.test/?utm_source=nl&utm_medium=email&utm_campaign=x",
        ),
        (
            "https://a.test/?gclid=G1&fbclid=F1&msclkid=M1",
            "https://a.test/?gclid=G1&fbclid=F1&msclkid=M1",
        ),
        ("https://a.test/?ref=hn&source=tw", "https://a.test/?ref=hn&source=tw"),
        ("https://a.test/x#section", "https://a.test/x"),
        ("https://a.test/#!/inbox?user=7", "https://a.test/#!/inbox"),
    ],
)
def test_only_allowlisted_query_parameters_survive(url: str, kept: str) -> None:
    assert keep_allowed_query(url) == kept


@pytest.mark.parametrize(
    ("path", "scrubbed"),
    [
        ("/users/123", "/users/:id"),
        ("/users/123/orders/77", "/users/:id/orders/:id"),
        ("/archive/2024/05", "/archive/2024/:id"),
        ("/reset/3f2c9a7b8e6d4c1f0a9b8c7d", "/reset/:token"),
        ("/i/550e8400-e29b-41d4-a716-446655440000", "/i/:token"),
        ("/profile/ada@example.com", "/profile/:email"),
        ("/pricing", "/pricing"),
        ("/v2/docs", "/v2/docs"),
        ("/#/users/42", "/#/users/:id"),
    ],
)
def test_identifiers_in_paths_become_placeholders(path: str, scrubbed: str) -> None:
    assert scrub_path(path) == scrubbed


def test_numeric_ids_can_be_kept() -> None:
    assert scrub_path("/users/123/ada@example.com", ids=False) == "/users/123/:email"
    assert Scrubber(paths=False).path("/users/ada@example.com") == "/users/ada@example.com"


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        ("Cannot load user ada@example.com", "Cannot load user [email]"),
        ("bad token eyJhbGciOiJIUzI1NiJ9abcdef123456", "bad token [token]"),
        ("at main (app.3f2c9a7b8e6d4c1f.js:1:2)", "at main (app.[token].js:1:2)"),
        ("TypeError: x is undefined", "TypeError: x is undefined"),
    ],
)
def test_texts_lose_emails_and_tokens(text: str, scrubbed: str) -> None:
    assert scrub_text(text) == scrubbed


def test_event_properties_are_scrubbed_at_any_depth_and_keys_kept() -> None:
    data = {"email": "ada@example.com", "n": 3, "nested": {"list": ["x", "b@c.de"]}}
    assert Scrubber().data(data) == {
        "email": "[email]",
        "n": 3,
        "nested": {"list": ["x", "[email]"]},
    }
    assert Scrubber().data(None) is None


def test_a_stored_url_is_allowlisted_and_its_path_scrubbed() -> None:
    assert (
        Scrubber().url("https://a.test/users/9?utm_source=x&t=1")
        == "https://a.test/users/:id?utm_source=x"
    )


@pytest.mark.parametrize("odd", ["", "http://[::1", "::::", "%", "a" * 5000])
def test_odd_input_never_raises(odd: str) -> None:
    keep_allowed_query(odd)
    scrub_path(odd)
    scrub_text(odd)
    Scrubber().url(odd)
