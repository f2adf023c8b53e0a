"""The ``skopos`` command line as a user runs it: ``skopos demo``, a subprocess with an embedded
PocketBase (``skopos setup``, the other command, is tested in ``test_setup.py``)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from skopos._admin.cli import main as skopos_cli
from skopos._admin.embedded import free_port
from skopos._admin.setup import Website
from skopos._pocketbase.client import PocketBaseClient
from skopos._pocketbase.filter import pb_filter
from tests._support.paths import ROOT
from tests._support.pocketbase_server import PocketBaseServer

pytestmark = pytest.mark.pocketbase
SKOPOS = [sys.executable, "-m", "skopos"]


def run_demo(directory: Path, port: int) -> str:
    result = subprocess.run(
        [*SKOPOS, "demo", "--once", "--dir", str(directory), "--port", str(port)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def test_demo_sets_up_a_site_and_is_repeatable(tmp_path: Path) -> None:
    port = free_port()
    first = run_demo(tmp_path, port)
    assert "created collection events" in first
    tracking_id = re.search(r"tracking id: (\w+)", first)
    assert tracking_id is not None
    assert f"PocketBase: http://127.0.0.1:{port}" in first

    second = run_demo(tmp_path, port)
    assert "schema and settings already up to date" in second
    assert f"tracking id: {tracking_id.group(1)}" in second
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/api/health")  # --once stopped the server

    # The data survives in the demo directory.
    from skopos._admin.cli import DEMO_EMAIL, DEMO_PASSWORD
    from skopos._admin.embedded import EmbeddedPocketBase

    with (
        EmbeddedPocketBase(
            tmp_path / "pb_data", email=DEMO_EMAIL, password=DEMO_PASSWORD, port=port
        ) as server,
        PocketBaseClient(server.url, DEMO_EMAIL, DEMO_PASSWORD) as client,
    ):
        site = client.first_record(
            "websites", pb_filter("trackingId = {:t}", t=tracking_id.group(1))
        )
        assert site is not None
        assert site["domain"] == "localhost"


def test_demo_runs_an_example_app_wired_to_its_pocketbase(tmp_path: Path) -> None:
    app = ROOT / "examples" / "fastapi_app" / "app.py"
    result = subprocess.run(
        [
            *SKOPOS,
            "demo",
            "--once",
            "--dir",
            str(tmp_path),
            "--port",
            str(free_port()),
            "--app",
            str(app),
            "--app-port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert re.search(r"example app: http://127\.0\.0\.1:\d+/", result.stdout)


@pytest.mark.pocketbase
def test_privacy_prints_what_is_stored_and_that_nobody_else_is_contacted(
    pocketbase: PocketBaseServer,
    website: Website,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SKOPOS_VISITOR_ID", "daily")
    monkeypatch.setenv("SKOPOS_RESPECT_PRIVACY_SIGNALS", "true")
    argv = ["privacy", "--url", pocketbase.url, "--email", pocketbase.email]
    argv += ["--password", pocketbase.password, "--site", website.tracking_id, "--json"]
    assert skopos_cli(argv) == 0
    statement = json.loads(capsys.readouterr().out)
    assert statement["visitor_ids"]["mode"] == "daily"
    assert statement["visitor_ids"]["linkable_across_days"] is False
    assert statement["third_parties_contacted"] == []
    assert statement["website"]["tracking_id"] == website.tracking_id
    assert statement["privacy_signals"] == "Sec-GPC: anonymous"
    assert skopos_cli([*argv[:-1]]) == 0
    text = capsys.readouterr().out
    assert "Third parties contacted: none" in text
    assert "visitorId: a keyed hash" in text
