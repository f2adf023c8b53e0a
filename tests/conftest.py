"""Test harness: a real PocketBase server under every integration test.

``pocketbase`` is one server for the whole session, prepared by ``skopos setup``;
tests stay independent by each taking a fresh ``website``. Tests that change
server-wide state (token lifetime, restarts, schema experiments) start their own
server with ``pocketbase_factory``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from skopos import SkoposSDK
from skopos._admin.cli import main as skopos_cli
from skopos._admin.embedded import EmbeddedPocketBase
from skopos._admin.setup import Website, ensure_website
from skopos._pocketbase.client import PocketBaseClient

ADMIN_EMAIL = "admin@skopos.test"
ADMIN_PASSWORD = "correct-horse-battery"


def pytest_configure(config: pytest.Config) -> None:
    # Registered here, not in pyproject.toml, so the marker lives beside its tests.
    config.addinivalue_line("markers", "slow: takes a minute or more (still runs in CI)")


@dataclass(frozen=True)
class PocketBaseServer:
    """A running PocketBase and the superuser credentials for it."""

    url: str
    email: str
    password: str
    process: EmbeddedPocketBase

    def client(self, *, timeout: float = 10.0) -> PocketBaseClient:
        """A new client for this server (close it, or use it as a context manager)."""
        return PocketBaseClient(self.url, self.email, self.password, timeout=timeout)


def _start(data_dir: Path, *, setup: bool) -> PocketBaseServer:
    process = EmbeddedPocketBase(data_dir, email=ADMIN_EMAIL, password=ADMIN_PASSWORD).start()
    server = PocketBaseServer(process.url, ADMIN_EMAIL, ADMIN_PASSWORD, process)
    if setup:
        argv = [
            "setup",
            "--url",
            server.url,
            "--email",
            server.email,
            "--password",
            server.password,
        ]
        if skopos_cli(argv) != 0:
            process.stop()
            raise RuntimeError("skopos setup failed on the test server")
    return server


@pytest.fixture(scope="session")
def pocketbase(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PocketBaseServer]:
    """The shared PocketBase of this test session, schema applied."""
    server = _start(tmp_path_factory.mktemp("pocketbase"), setup=True)
    try:
        yield server
    finally:
        server.process.stop()


@pytest.fixture
def pocketbase_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., PocketBaseServer]]:
    """Start private PocketBase servers (``setup=False`` for a bare one); all stopped after."""
    started: list[PocketBaseServer] = []

    def start(*, setup: bool = True) -> PocketBaseServer:
        server = _start(tmp_path_factory.mktemp("pocketbase-private"), setup=setup)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.process.stop()


@pytest.fixture
def pb(pocketbase: PocketBaseServer) -> Iterator[PocketBaseClient]:
    """A superuser client of the shared server."""
    with pocketbase.client() as client:
        yield client


@pytest.fixture
def website(pb: PocketBaseClient) -> Website:
    """A fresh website on the shared server, so tests never see each other's data."""
    token = uuid.uuid4().hex[:12]
    return ensure_website(pb, f"test site {token}", f"{token}.example.test")


def start_sdk(
    server: PocketBaseServer, site: Website, *, url: str | None = None, **options: Any
) -> SkoposSDK:
    """An SDK tracking ``site`` on ``server``, strict and without realtime unless ``options``
    say otherwise; ``url`` reaches PocketBase another way (a fault proxy). The caller shuts
    it down (or lets ``make_sdk`` do it)."""
    settings: dict[str, Any] = {
        "pocketbase_url": url or server.url,
        "site_id": site.tracking_id,
        "admin_email": server.email,
        "admin_password": server.password,
        "strict": True,
        "realtime": False,
        **options,
    }
    return SkoposSDK.init(**settings)


MakeSdk = Callable[..., SkoposSDK]


@pytest.fixture
def make_sdk(pocketbase: PocketBaseServer, website: Website) -> Iterator[MakeSdk]:
    """``start_sdk`` for the test's server and website; every SDK made is shut down after."""
    made: list[SkoposSDK] = []

    def make(**options: Any) -> SkoposSDK:
        sdk = start_sdk(pocketbase, website, **options)
        made.append(sdk)
        return sdk

    yield make
    for sdk in made:
        sdk.shutdown(timeout=5)
