"""Who a visitor is, without cookies: a keyed hash, and record ids derived from it.

The visitor id is HMAC-SHA256(salt, site + client IP + user agent), with the salt
that every process writing to one PocketBase shares (``salt.py``): all of them
compute the same ids, while nobody without the salt can recompute an id from an
IP address.

Record ids are derived from those ids too (``derive_record_id``), so two
processes that see the same new visitor, session or JS error write the same
record: upserts, never duplicates.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import random
from typing import Protocol

__all__ = ["FixedSalt", "SaltSource", "VisitorHasher", "derive_record_id", "random_record_id"]

_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_RECORD_ID_LENGTH = 15  # PocketBase ids: 15 characters of [a-z0-9]
# Two base-36 digits at a time, least significant first: 8 divisions per id instead of 15.
_DIGIT_PAIRS = tuple(_ALPHABET[low] + _ALPHABET[high] for high in range(36) for low in range(36))
# Random byte → id character. 256 = 7 * 36 + 4, so four characters are 8/256 likely and the
# rest 7/256: 5.168 bits a character instead of 5.170, immaterial for uniqueness.
_BYTE_TO_CHAR = bytes(ord(_ALPHABET[byte % 36]) for byte in range(256))


def _base36(number: int) -> str:
    """The lowest 15 base-36 digits of ``number``, least significant first."""
    chars = []
    for _ in range(_RECORD_ID_LENGTH // 2):
        number, pair = divmod(number, 1296)
        chars.append(_DIGIT_PAIRS[pair])
    chars.append(_ALPHABET[number % 36])
    return "".join(chars)


def derive_record_id(*parts: str) -> str:
    """A PocketBase record id that depends only on ``parts`` (77 bits of SHA-256).

    >>> derive_record_id("session", "abc", "") == derive_record_id("session", "abc", "")
    True
    """
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).digest()
    return _base36(int.from_bytes(digest[:16], "big"))


class _IdRandom:
    """Random bits for record ids, which must be unique but need not be secret.

    ``secrets`` reads ``os.urandom`` for every id (a system call that also releases the GIL);
    this is a generator seeded once from it. A forked child must never repeat its parent's
    sequence, so it reseeds in the child: from ``os.register_at_fork``, and on a changed PID
    for forks that bypass the hook.
    """

    def __init__(self) -> None:
        self._random = random.Random()
        self._pid = -1
        self.reseed()

    def reseed(self) -> None:
        self._random.seed(os.urandom(32))
        self._pid = os.getpid()

    def record_id(self) -> str:
        if os.getpid() != self._pid:
            self.reseed()
        return self._random.randbytes(_RECORD_ID_LENGTH).translate(_BYTE_TO_CHAR).decode("ascii")


_id_random = _IdRandom()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_id_random.reseed)


def random_record_id() -> str:
    """A fresh random PocketBase record id (unique, not secret).

    >>> len(random_record_id()), random_record_id() != random_record_id()
    (15, True)
    """
    return _id_random.record_id()


class SaltSource(Protocol):
    """Where the visitor hash's salt for a moment comes from (``salt.SaltBook``)."""

    @property
    def daily(self) -> bool:
        """Whether ids change every UTC day."""
        ...

    def salt_for(self, at: float) -> bytes:
        """The salt for an activity at epoch time ``at``."""
        ...

    def in_grace(self, at: float) -> bool:
        """Whether yesterday's sessions may still go on at ``at`` (daily salts)."""
        ...


class FixedSalt:
    """One salt for all time (tests, tools)."""

    daily = False

    def __init__(self, salt: bytes) -> None:
        self._salt = salt

    def salt_for(self, at: float) -> bytes:
        """The salt."""
        return self._salt

    def in_grace(self, at: float) -> bool:
        """Never: there is no other day."""
        return False


class VisitorHasher:
    """Computes visitor ids with the shared salt (one, or the day's).

    >>> hasher = VisitorHasher(b"salt")
    >>> len(hasher.visitor_id("site", "203.0.113.9", "Mozilla/5.0"))
    32
    """

    def __init__(self, salt: bytes | SaltSource) -> None:
        self._salts: SaltSource = FixedSalt(salt) if isinstance(salt, bytes) else salt

    def visitor_id(
        self, site_record_id: str, client_ip: str, user_agent: str, at: float = 0.0
    ) -> str:
        """32 hex characters; equal inputs (and day) give equal ids in every process."""
        return self._hash(self._salts.salt_for(at), site_record_id, client_ip, user_agent)

    def previous_day_id(
        self, site_record_id: str, client_ip: str, user_agent: str, at: float
    ) -> str | None:
        """With daily salts, early in a day: the id the same visitor had yesterday, whose
        session may go on over midnight; None otherwise."""
        if not self._salts.in_grace(at):
            return None
        salt = self._salts.salt_for(at - 86400.0)
        return self._hash(salt, site_record_id, client_ip, user_agent)

    @staticmethod
    def _hash(salt: bytes, site_record_id: str, client_ip: str, user_agent: str) -> str:
        message = f"{site_record_id}\x1f{client_ip}\x1f{user_agent}".encode(
            "utf-8", "surrogatepass"
        )
        return hmac.new(salt, message, hashlib.sha256).hexdigest()[:32]
