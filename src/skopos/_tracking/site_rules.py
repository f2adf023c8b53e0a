"""PocketBase ``websites`` record → the rules the worker applies to a site's events."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from skopos._tracking.hosts import normalize_domain
from skopos._tracking.ip_rules import IpBlacklist

__all__ = ["SiteRules"]

logger = logging.getLogger("skopos")


@dataclass(frozen=True)
class SiteRules:
    """What the SDK needs from one ``websites`` record."""

    record_id: str
    tracking_id: str
    domain: str | None
    is_archived: bool
    disable_localhost: bool
    store_raw_ip: bool
    blacklist: IpBlacklist

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> SiteRules:
        """Build the rules from a websites record as PocketBase returns it."""
        blacklist = IpBlacklist(record.get("ipBlacklist"))
        if blacklist.invalid_count:
            logger.warning(
                "skopos: website %s has %d invalid ipBlacklist entries; they are ignored",
                record.get("id"),
                blacklist.invalid_count,
            )
        return cls(
            record_id=str(record["id"]),
            tracking_id=str(record.get("trackingId") or ""),
            domain=normalize_domain(str(record.get("domain") or "")),
            is_archived=bool(record.get("isArchived")),
            disable_localhost=bool(record.get("disableLocalhostTracking")),
            store_raw_ip=bool(record.get("storeRawIp")),
            blacklist=blacklist,
        )
