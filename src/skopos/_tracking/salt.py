"""The visitor-hash salt: a random secret kept in PocketBase (``skopos_config``).

The first process that needs it creates it; every process writing to that
PocketBase reads the same one, so all of them compute the same visitor ids.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import logging
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from skopos._config import SkoposOptions
from skopos._exceptions import ConfigurationError, PocketBaseNotFound, PocketBaseValidationError
from skopos._pocketbase.client import PocketBaseClient
from skopos._pocketbase.filter import pb_filter

__all__ = [
    "DAILY_PREFIX",
    "SALT_KEY",
    "SaltBook",
    "load_or_create_salt",
    "peppered",
    "read_pepper",
]

logger = logging.getLogger("skopos")

SALT_KEY = "visitor_salt"


def load_or_create_salt(client: PocketBaseClient, key: str = SALT_KEY) -> bytes:
    """The salt stored in ``skopos_config`` under ``key``, creating it on first use.

    Two processes racing to create it both end up with the one that won: the
    ``key`` index is unique, so the loser's create fails and it reads again.
    """
    query = pb_filter("key = {:key}", key=key)
    for _ in range(3):
        found = client.first_record("skopos_config", query)
        if found is not None and found.get("value"):
            return bytes.fromhex(found["value"])
        try:
            client.create_record("skopos_config", {"key": key, "value": secrets.token_hex(32)})
            logger.info("skopos: created the visitor-hash salt %s in skopos_config", key)
        except PocketBaseValidationError:
            continue  # another process created it first
    raise RuntimeError("could not read or create the visitor salt in skopos_config")


DAILY_PREFIX = "visitor_salt:"  # + the UTC date, YYYY-MM-DD
_DAY = 86400.0


_MIN_PEPPER = 16  # bytes: a secret shorter than this could be guessed


def read_pepper(path: str | os.PathLike[str]) -> bytes:
    """The secret in ``salt_file`` (surrounding white space ignored); ``ConfigurationError``
    when it cannot be read or is too short to be a secret."""
    try:
        secret = Path(path).read_bytes().strip()
    except OSError as exc:
        raise ConfigurationError(f"salt_file {os.fspath(path)!r} cannot be read: {exc}") from None
    if len(secret) < _MIN_PEPPER:
        raise ConfigurationError(
            f"salt_file {os.fspath(path)!r} holds {len(secret)} bytes; a secret needs at least"
            f" {_MIN_PEPPER} (e.g. `openssl rand -hex 32 > {os.fspath(path)}`)"
        )
    return secret


def peppered(salt: bytes, pepper: bytes | None) -> bytes:
    """The salt the visitor hash uses: ``salt`` itself, or keyed by a secret kept outside
    PocketBase (``salt_file``), so that a database backup alone cannot recompute an id.

    >>> peppered(b"s", None), len(peppered(b"s", b"secret"))
    (b's', 32)
    """
    if not pepper:
        return salt
    return hmac.new(pepper, salt, hashlib.sha256).digest()


class SaltBook:
    """The visitor-hash salts of one PocketBase: one stable salt, or one per UTC day.

    Daily salts (``visitor_id="daily"``) are random, created by the first process that needs
    the day's and shared through ``skopos_config`` like the stable one. A day's salt is kept
    while sessions that began that day may still continue (until ``session_timeout`` after
    the next midnight) and deleted after that, by whichever process looks first: from then
    on nobody, the operator included, can recompute that day's ids or link a visitor across
    days.

    Example::

        book = SaltBook(client, daily=True, session_timeout=1800)
        book.salt_for(time.time())  # today's, created if need be
    """

    def __init__(
        self,
        client: PocketBaseClient,
        *,
        daily: bool,
        session_timeout: float,
        pepper: bytes | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._daily = daily
        self._timeout = session_timeout
        self._pepper = pepper
        self._clock = clock
        self._salts: dict[str, bytes] = {}
        self._pruned_through = ""

    @classmethod
    def of(cls, client: PocketBaseClient, options: SkoposOptions) -> SaltBook:
        """The book an SDK's options describe (``visitor_id``, ``salt_file``)."""
        pepper = read_pepper(options.salt_file) if options.salt_file else None
        return cls(
            client,
            daily=options.visitor_id == "daily",
            session_timeout=options.session_timeout,
            pepper=pepper,
        )

    def with_client(self, client: PocketBaseClient) -> SaltBook:
        """The same book over another client (a forked child's), salts already read kept."""
        book = SaltBook(
            client,
            daily=self._daily,
            session_timeout=self._timeout,
            pepper=self._pepper,
            clock=self._clock,
        )
        book._salts = dict(self._salts)
        return book

    @property
    def daily(self) -> bool:
        """Whether ids change every UTC day."""
        return self._daily

    @property
    def outside_secret(self) -> bool:
        """Whether a secret kept outside PocketBase keys the salts (``salt_file``)."""
        return bool(self._pepper)

    def day_of(self, at: float) -> str:
        """The UTC day of an epoch time, as the salt key names it."""
        return dt.datetime.fromtimestamp(at, dt.timezone.utc).date().isoformat()

    def salt_for(self, at: float) -> bytes:
        """The salt for an activity at epoch time ``at`` (may read or create it in
        PocketBase: ``PocketBaseError`` when it cannot)."""
        key = DAILY_PREFIX + self.day_of(at) if self._daily else SALT_KEY
        salt = self._salts.get(key)
        if salt is None:
            if self._daily:
                self._prune()
                if len(self._salts) > 4:  # only today's and yesterday's matter
                    self._salts.clear()
            raw = load_or_create_salt(self._client, key)
            salt = self._salts[key] = peppered(raw, self._pepper)
        return salt

    def in_grace(self, at: float) -> bool:
        """Whether ``at`` is early enough in its day that yesterday's sessions may go on."""
        return self._daily and at % _DAY < self._timeout

    def _prune(self) -> None:
        """Delete daily salts no session can need any more (older than yesterday, and
        yesterday's once today's grace period is over)."""
        now = self._clock()
        keep_from = self.day_of(now - _DAY if self.in_grace(now) else now)
        if self._pruned_through == keep_from:
            return
        query = pb_filter(
            "key ~ {:prefix} && key < {:keep}",
            prefix=DAILY_PREFIX + "%",
            keep=DAILY_PREFIX + keep_from,
        )
        for record in list(self._client.iter_records("skopos_config", filter=query)):
            with contextlib.suppress(PocketBaseNotFound):
                self._client.delete_record("skopos_config", record["id"])
                logger.info(
                    "skopos: deleted the visitor-hash salt of %s",
                    record["key"][len(DAILY_PREFIX) :],
                )
        for key in [
            k for k in self._salts if k.startswith(DAILY_PREFIX) and k < DAILY_PREFIX + keep_from
        ]:
            del self._salts[key]
        self._pruned_through = keep_from
