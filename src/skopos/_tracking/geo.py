"""Where a client address is, from local data only: never a network call.

- Country (ISO 3166-1 alpha-2, what the dashboard's map needs): the ``iptocc`` package,
  which embeds the five Regional Internet Registries' allocation data in its wheel (~110 ns
  a lookup, measured). RIR data names the country a block is assigned to, which agrees with
  commercial databases for ~95% of IPv4 addresses; refresh it by upgrading the package.
- Region (the session's ``state``): only with ``geoip_database=``, a MaxMind-format (MMDB)
  file the site provides (GeoLite2-City, DB-IP City Lite, ...), read with the optional
  ``maxminddb`` package (``pip install skopos-analytics[geoip]``). Its country, when it has
  one, wins over the RIR data. The region is the first subdivision's ISO 3166-2 code without
  the country prefix (``CA`` for California), as the dashboard's own collector stores it.

Private, loopback, link-local and other non-global addresses have no location.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from skopos._exceptions import ConfigurationError
from skopos._lru import LruCache
from skopos._tracking.ip_rules import IPAddress

__all__ = ["GeoLocator", "Location", "open_database"]

logger = logging.getLogger("skopos")

Location = tuple[str, str]  # (country, region); "" when unknown
_NOWHERE: Location = ("", "")
_CACHE_SIZE = 8192


def _rir_lookup() -> Callable[[str], str | None] | None:
    try:
        from iptocc import country_code
    except ImportError:  # a platform without a wheel: countries stay empty
        logger.warning("skopos: the iptocc package is missing; countries are not looked up")
        return None
    return country_code


def open_database(path: str | os.PathLike[str]) -> Any:
    """Open an MMDB file; ``ConfigurationError`` when it cannot be read."""
    try:
        import maxminddb
    except ImportError:
        raise ConfigurationError(
            "geoip_database needs the maxminddb package: pip install 'skopos-analytics[geoip]'"
        ) from None
    try:
        return maxminddb.open_database(os.fspath(path))
    except (OSError, ValueError) as exc:  # InvalidDatabaseError is a RuntimeError subclass
        raise ConfigurationError(f"geoip_database {os.fspath(path)!r}: {exc}") from None
    except RuntimeError as exc:
        raise ConfigurationError(f"geoip_database {os.fspath(path)!r}: {exc}") from None


class GeoLocator:
    """Country and region of client addresses, cached per address (LRU)."""

    def __init__(self, *, countries: bool = True, database: Any = None) -> None:
        self._country_code = _rir_lookup() if countries else None
        self._database = database
        self._cache: LruCache[IPAddress, Location] = LruCache(_CACHE_SIZE)

    def locate(self, address: IPAddress | None) -> Location:
        """``(country, region)`` of ``address``; empty strings where unknown.

        >>> from ipaddress import ip_address
        >>> GeoLocator().locate(ip_address("192.168.1.1")), GeoLocator().locate(None)
        (('', ''), ('', ''))
        """
        if address is None:
            return _NOWHERE
        found = self._cache.get(address)
        if found is None:
            # is_global walks ipaddress's special ranges (~2 µs): once per cached address.
            found = self._lookup(address) if address.is_global else _NOWHERE
            self._cache.put(address, found)
        return found

    def _lookup(self, address: IPAddress) -> Location:
        country = region = ""
        if self._database is not None:
            try:
                record = self._database.get(str(address))
            except (ValueError, RuntimeError):  # a damaged file: fall back to the RIR data
                record = None
            country, region = _from_record(record)
        if not country and self._country_code is not None:
            country = self._country_code(str(address)) or ""
        return country.upper(), region


def _from_record(record: object) -> Location:
    """Country and region codes of a GeoIP2/GeoLite2-City style record."""
    if not isinstance(record, Mapping):
        return _NOWHERE
    country = record.get("country")
    code = country.get("iso_code") if isinstance(country, Mapping) else None
    region = ""
    subdivisions = record.get("subdivisions")
    if isinstance(subdivisions, list) and subdivisions and isinstance(subdivisions[0], Mapping):
        subdivision_code = subdivisions[0].get("iso_code")
        if isinstance(subdivision_code, str):
            region = subdivision_code[:16]
    country_code = code if isinstance(code, str) and len(code) == 2 and code.isalpha() else ""
    return country_code, region
