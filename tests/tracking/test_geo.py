"""Countries and regions from local data only (``_tracking/geo.py``), and in the pipeline."""

from __future__ import annotations

from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet  # type: ignore[import-untyped]

from skopos._exceptions import ConfigurationError
from skopos._tracking.geo import GeoLocator, open_database


@pytest.mark.parametrize(
    ("address", "country"),
    [("8.8.8.8", "US"), ("81.2.69.142", "GB"), ("1.0.16.1", "JP"), ("2001:4860::1", "US")],
)
def test_public_addresses_get_their_registry_country(address: str, country: str) -> None:
    assert GeoLocator().locate(ip_address(address)) == (country, "")


@pytest.mark.parametrize(
    "address", ["10.0.0.1", "192.168.1.1", "127.0.0.1", "::1", "fe80::1", "100.64.0.1", "0.0.0.0"]
)
def test_private_and_special_addresses_have_no_location(address: str) -> None:
    assert GeoLocator().locate(ip_address(address)) == ("", "")


def test_country_lookup_can_be_turned_off() -> None:
    assert GeoLocator(countries=False).locate(ip_address("8.8.8.8")) == ("", "")


def city_database(path: Path, records: dict[str, dict[str, Any]]) -> Path:
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-City")
    for network, record in records.items():
        writer.insert_network(IPSet([network]), record)
    writer.to_db_file(str(path))
    return path


def test_a_local_mmdb_file_adds_regions_and_its_countries_win(tmp_path: Path) -> None:
    path = city_database(
        tmp_path / "city.mmdb",
        {
            "81.2.69.0/24": {"country": {"iso_code": "GB"}, "subdivisions": [{"iso_code": "ENG"}]},
            "8.8.8.0/24": {"country": {"iso_code": "CA"}},  # the file's word beats the RIR's
            "1.0.16.0/24": {"city": {"names": {"en": "Tokyo"}}},  # no country: RIR data
        },
    )
    geo = GeoLocator(database=open_database(path))
    assert geo.locate(ip_address("81.2.69.142")) == ("GB", "ENG")
    assert geo.locate(ip_address("8.8.8.8")) == ("CA", "")
    assert geo.locate(ip_address("1.0.16.1")) == ("JP", "")
    assert geo.locate(ip_address("203.0.113.1")) == ("", "")  # documentation range


def test_an_unreadable_database_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="geoip_database"):
        open_database(tmp_path / "missing.mmdb")
    junk = tmp_path / "junk.mmdb"
    junk.write_bytes(b"not a database")
    with pytest.raises(ConfigurationError, match="geoip_database"):
        open_database(junk)
