"""No personal data by default: what is removed from URLs, paths, texts and event properties
before anything is stored (or journaled).

- **Query strings** of page URLs and referrers keep only an allowlist: the campaign
  parameters (``utm_*``), ``ref`` and ``source``, and the ad click ids (``gclid``, ``fbclid``,
  ``msclkid``, ...): the rest (reset tokens, e-mail addresses, search terms, session ids) is
  dropped. Fragments are dropped too, except hash routes (``#/...``), whose own query goes.
- **Paths**: e-mail addresses, long hexadecimal tokens, UUIDs and numeric ids in path
  segments become placeholders (``/users/123`` → ``/users/:id``); switchable, because some
  sites want their numeric pages (``/2024/``) as they are: years (4 digits) are kept.
- **Texts** (error messages, stack traces, string values of event properties): e-mail
  addresses and long tokens become ``[email]`` and ``[token]``.

Every function is pure and never raises on odd input; the pipeline applies them (with the
site's choices), so what the spool journals and PocketBase stores is already clean.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = [
    "CLICK_ID_PARAMETERS",
    "Scrubber",
    "keep_allowed_query",
    "scrub_path",
    "scrub_text",
]

CLICK_ID_PARAMETERS = frozenset(
    {"gclid", "gbraid", "wbraid", "dclid", "fbclid", "msclkid", "ttclid", "twclid", "li_fat_id"}
)
_KEPT_PARAMETERS = frozenset({"ref", "source"}) | CLICK_ID_PARAMETERS

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# 16+ hex digits, or 24+ characters of base64/url-safe alphabet with at least one digit:
# API keys, reset and session tokens. Words are never that long without a digit.
_HEX_TOKEN = re.compile(r"\b[0-9a-fA-F]{16,}\b")
_OPAQUE_TOKEN = re.compile(r"\b(?=[A-Za-z0-9_-]*\d)[A-Za-z0-9_-]{24,}\b")
_NUMERIC_ID = re.compile(r"\d+")
_YEAR = re.compile(r"(?:19|20)\d\d")


def keep_allowed_query(url: str) -> str:
    """``url`` with only allowlisted query parameters, and no fragment but a hash route.

    >>> keep_allowed_query("https://a.test/p?utm_source=x&token=s3cret&ref=hn#top")
    'https://a.test/p?utm_source=x&ref=hn'
    >>> keep_allowed_query("https://a.test/#/users/7?tab=1")
    'https://a.test/#/users/7'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    kept = [
        (name, value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
        if name.startswith("utm_") or name in _KEPT_PARAMETERS
    ]
    fragment = parts.fragment
    fragment = fragment.partition("?")[0] if fragment.startswith(("/", "!/")) else ""
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(kept), fragment))


def scrub_text(text: str) -> str:
    """E-mail addresses, UUIDs and long tokens replaced.

    >>> scrub_text("no user ada@example.com, key 9f86d081884c7d659a2feaa0c55ad015")
    'no user [email], key [token]'
    """
    if not text:
        return text
    text = _EMAIL.sub("[email]", text)
    text = _UUID.sub("[token]", text)
    text = _HEX_TOKEN.sub("[token]", text)
    return _OPAQUE_TOKEN.sub("[token]", text)


def scrub_path(path: str, *, ids: bool = True) -> str:
    """Identifiers in a path's segments replaced by placeholders.

    >>> scrub_path("/users/123/orders/9f86d081884c7d659a2f"), scrub_path("/blog/2024/hello")
    ('/users/:id/orders/:token', '/blog/2024/hello')
    >>> scrub_path("/u/ada@example.com"), scrub_path("/users/123", ids=False)
    ('/u/:email', '/users/123')
    """
    route, hash_mark, hash_route = path.partition("#")
    segments = [_scrub_segment(s, ids) for s in route.split("/")]
    scrubbed = "/".join(segments)
    if hash_mark:
        scrubbed += "#" + "/".join(_scrub_segment(s, ids) for s in hash_route.split("/"))
    return scrubbed


def _scrub_segment(segment: str, ids: bool) -> str:
    if not segment:
        return segment
    if _EMAIL.fullmatch(segment):
        return ":email"
    if (
        _UUID.fullmatch(segment)
        or _HEX_TOKEN.fullmatch(segment)
        or _OPAQUE_TOKEN.fullmatch(segment)
    ):
        return ":token"
    if ids and _NUMERIC_ID.fullmatch(segment) and not _YEAR.fullmatch(segment):
        return ":id"
    if "@" in segment or any(c.isdigit() for c in segment):
        return scrub_text(segment)
    return segment


@dataclass(frozen=True)
class Scrubber:
    """The scrubbing one SDK applies (``scrub_paths`` and ``scrub_ids`` are its options)."""

    paths: bool = True  # e-mails and tokens in path segments
    ids: bool = True  # numeric ids in path segments too

    def path(self, path: str) -> str:
        """A stored path."""
        return scrub_path(path, ids=self.ids) if self.paths else path

    def url(self, url: str) -> str:
        """A stored URL (js_errors.url, referrers): allowlisted query, scrubbed path."""
        cleaned = keep_allowed_query(url)
        if not self.paths or not cleaned:
            return cleaned
        parts = urlsplit(cleaned)
        return urlunsplit(parts._replace(path=self.path(parts.path)))

    def data(self, data: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """Event properties with their string values (at any depth) scrubbed; keys kept."""
        if data is None:
            return None
        return {key: _scrub_value(value) for key, value in data.items()}


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, Mapping):
        return {key: _scrub_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_scrub_value(item) for item in value]
    return value
