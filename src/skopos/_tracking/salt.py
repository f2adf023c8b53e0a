"""The visitor-hash salt: a random secret kept in PocketBase (``skopos_config``).

The first process that needs it creates it; every process writing to that
PocketBase reads the same one, so all of them compute the same visitor ids.
"""

from __future__ import annotations

import logging
import secrets

from skopos._exceptions import PocketBaseValidationError
from skopos._pocketbase.client import PocketBaseClient
from skopos._pocketbase.filter import pb_filter

__all__ = ["SALT_KEY", "load_or_create_salt"]

logger = logging.getLogger("skopos")

SALT_KEY = "visitor_salt"


def load_or_create_salt(client: PocketBaseClient) -> bytes:
    """The salt stored in ``skopos_config``, creating it on first use.

    Two processes racing to create it both end up with the one that won: the
    ``key`` index is unique, so the loser's create fails and it reads again.
    """
    query = pb_filter("key = {:key}", key=SALT_KEY)
    for _ in range(3):
        found = client.first_record("skopos_config", query)
        if found is not None and found.get("value"):
            return bytes.fromhex(found["value"])
        try:
            client.create_record("skopos_config", {"key": SALT_KEY, "value": secrets.token_hex(32)})
            logger.info("skopos: created the visitor-hash salt in skopos_config")
        except PocketBaseValidationError:
            continue  # another process created it first
    raise RuntimeError("could not read or create the visitor salt in skopos_config")
