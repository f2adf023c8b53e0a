"""A real PocketBase server for the tests, and an SDK pointed at one.

The fixtures that start them (``pocketbase``, ``pocketbase_factory``, ``make_sdk``) are in
``tests/conftest.py``; this module holds what tests and fixtures share as plain code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skopos import SkoposSDK
from skopos._admin.cli import main as skopos_cli
from skopos._admin.embedded import EmbeddedPocketBase
from skopos._admin.setup import Website
from skopos._pocketbase.client import PocketBaseClient

ADMIN_EMAIL = "admin@skopos.test"
ADMIN_PASSWORD = "correct-horse-battery"


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


def start_pocketbase(data_dir: Path, *, setup: bool) -> PocketBaseServer:
    """A PocketBase serving ``data_dir``, prepared by ``skopos setup`` when ``setup``."""
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


def start_sdk(
    server: PocketBaseServer, site: Website, *, url: str | None = None, **options: Any
) -> SkoposSDK:
    """An SDK tracking ``site`` on ``server``, strict, without realtime and connected before
    it returns (``wait=True``) unless ``options`` say otherwise; ``url`` reaches PocketBase
    another way (a fault proxy). The caller shuts it down (or lets ``make_sdk`` do it)."""
    settings: dict[str, Any] = {
        "pocketbase_url": url or server.url,
        "site_id": site.tracking_id,
        "admin_email": server.email,
        "admin_password": server.password,
        "strict": True,
        "realtime": False,
        "wait": True,
        **options,
    }
    return SkoposSDK.init(**settings)


MakeSdk = Callable[..., SkoposSDK]
"""The ``make_sdk`` fixture: ``start_sdk`` for the test's server and website."""
