"""The SDK's threads import nothing: what they would import lazily is imported by the thread
that calls ``init`` (``skopos._runtime.imports`` says why a fork makes that matter)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from skopos._admin.setup import Website
from skopos._pocketbase.client import PocketBaseClient
from tests._support.paths import ROOT, subprocess_env
from tests._support.pocketbase_server import PocketBaseServer
from tests._support.tracking_helpers import site_events

pytestmark = pytest.mark.pocketbase


def run_probe(server: PocketBaseServer, website: Website, **options: str) -> dict[str, Any]:
    env = subprocess_env(
        SKOPOS_POCKETBASE_URL=server.url,
        SKOPOS_SITE_ID=website.tracking_id,
        SKOPOS_ADMIN_EMAIL=server.email,
        SKOPOS_ADMIN_PASSWORD=server.password,
        **{f"SKOPOS_{name.upper()}": value for name, value in options.items()},
    )
    result = subprocess.run(
        [sys.executable, "-m", "tests._support.import_probe", website.domain],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return found


@pytest.mark.parametrize("runtime", ["thread", "worker_process"])
def test_the_sdk_threads_import_nothing_so_a_fork_cannot_catch_them_importing(
    pocketbase: PocketBaseServer,
    pb: PocketBaseClient,
    website: Website,
    tmp_path: Path,
    runtime: str,
) -> None:
    options = {"realtime": "true", "spool_dir": str(tmp_path / "spool")}
    if runtime == "worker_process":
        options["worker_process"] = "true"
    # Twice: the second process finds the visitor and the session in PocketBase and reads
    # them back (dates included), as a returning visitor's would be.
    for _ in range(2):
        probe = run_probe(pocketbase, website, **options)
        assert probe["flushed"]
        assert probe["accepted"] == probe["written"] + sum(probe["dropped"].values())
        assert probe["imported_by_threads"] == []
    paths = [event["path"] for event in site_events(pb, website.id)]
    assert paths.count("/pricing") >= 4  # page views of both scripts, both runs
