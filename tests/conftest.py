"""Test harness: a real PocketBase server under every integration test.

``pocketbase`` is one server for the whole session, prepared by ``skopos setup``;
tests stay independent by each taking a fresh ``website``. Tests that change
server-wide state (token lifetime, restarts, schema experiments) start their own
server with ``pocketbase_factory``. What tests share with these fixtures as plain code
(``PocketBaseServer``, ``start_sdk``) is in ``tests/_support/pocketbase_server.py``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from skopos import SkoposSDK
from skopos._admin.setup import Website, ensure_website
from skopos._pocketbase.client import PocketBaseClient
from tests._support.pocketbase_server import (
    MakeSdk,
    PocketBaseServer,
    start_pocketbase,
    start_sdk,
)


def pytest_configure(config: pytest.Config) -> None:
    # Registered here, not in pyproject.toml, so the marker lives beside its tests.
    config.addinivalue_line("markers", "slow: takes a minute or more (still runs in CI)")
    # Traces tell their events apart by numbered paths (/p/17); the SDK's default turns
    # those into /p/:id. Every SDK of the suite (and of the processes it starts) keeps them,
    # except where a test asks for scrub_ids=True: tests/test_privacy.py checks the default.
    os.environ.setdefault("SKOPOS_SCRUB_IDS", "false")


@pytest.fixture(scope="session")
def pocketbase(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PocketBaseServer]:
    """The shared PocketBase of this test session, schema applied."""
    server = start_pocketbase(tmp_path_factory.mktemp("pocketbase"), setup=True)
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
        server = start_pocketbase(tmp_path_factory.mktemp("pocketbase-private"), setup=setup)
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
