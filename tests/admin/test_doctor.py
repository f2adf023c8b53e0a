"""``skopos doctor`` against real PocketBase servers: each problem found, with its fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from skopos._admin.cli import main as skopos
from skopos._admin.doctor import DoctorOptions, exit_code, run_doctor
from skopos._admin.embedded import free_port
from skopos._admin.setup import Website
from skopos._pocketbase.client import PocketBaseClient
from skopos._pocketbase.filter import pb_filter

pytestmark = pytest.mark.pocketbase
EXAMPLE_APP = Path(__file__).resolve().parents[2] / "examples" / "fastapi_app" / "app.py"


def doctor_json(
    server: Any, capsys: pytest.CaptureFixture[str], *extra: str, password: str | None = None
) -> tuple[int, dict[str, dict[str, Any]]]:
    """Run ``skopos doctor --json``; the exit code and the checks by name."""
    argv = ["doctor", "--url", server.url, "--email", server.email]
    argv += ["--password", password or server.password, "--json", "--timeout", "10", *extra]
    code = skopos(argv)
    document = json.loads(capsys.readouterr().out)
    assert document["ok"] == (code == 0)
    return code, {check["name"]: check for check in document["checks"]}


def test_a_healthy_setup_exits_0(
    pocketbase: Any, website: Website, capsys: pytest.CaptureFixture[str]
) -> None:
    code, checks = doctor_json(pocketbase, capsys, "--site", website.tracking_id)
    assert code == 0, checks
    names = ["pocketbase", "credentials", "version", "schema", "batch", "realtime", "clock"]
    for name in [*names, "site"]:
        assert checks[name]["status"] == "ok", checks[name]
    assert checks["version"]["summary"] == "PocketBase 0.40.6"
    assert checks["realtime"]["details"]["delay_ms"] < 10_000
    assert abs(checks["clock"]["details"]["skew_s"]) < 2
    assert checks["site"]["details"]["archived"] is False


def test_the_table_for_people(
    pocketbase: Any, website: Website, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["doctor", "--url", pocketbase.url, "--email", pocketbase.email]
    code = skopos([*argv, "--password", pocketbase.password, "--site", website.tracking_id])
    out = capsys.readouterr().out
    assert code == 0
    assert "realtime" in out
    assert "all good" in out


def test_wrong_password(pocketbase: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, checks = doctor_json(pocketbase, capsys, password="not-the-password")
    assert code == 1
    assert checks["credentials"]["status"] == "problem"
    assert "refused the superuser login" in checks["credentials"]["summary"]
    assert "SKOPOS_ADMIN_PASSWORD" in checks["credentials"]["fix"]
    assert checks["schema"]["status"] == "skipped"


def test_unreachable_pocketbase(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    checks = run_doctor(DoctorOptions(url, "a@b.test", "password", timeout=2))
    assert exit_code(checks) == 1
    assert checks[0].status == "problem"
    assert "cannot reach PocketBase" in checks[0].summary
    assert "SKOPOS_POCKETBASE_URL" in checks[0].fix
    assert {check.status for check in checks[1:]} == {"skipped"}


def test_batch_api_off(
    pocketbase_factory: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> None:
    server = pocketbase_factory()
    capsys.readouterr()  # what its setup printed
    with server.client() as client:
        client.request("PATCH", "/api/settings", json_body={"batch": {"enabled": False}})
    code, checks = doctor_json(server, capsys)
    assert code == 1
    assert checks["batch"]["status"] == "problem"
    assert checks["batch"]["summary"] == "the batch API is off"
    assert checks["batch"]["fix"].startswith("skopos setup")


def test_low_batch_limits_are_a_warning(
    pocketbase_factory: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> None:
    server = pocketbase_factory()
    capsys.readouterr()  # what its setup printed
    with server.client() as client:
        batch = {"enabled": True, "maxRequests": 50, "timeout": 3}
        client.request("PATCH", "/api/settings", json_body={"batch": batch})
    code, checks = doctor_json(server, capsys)
    assert code == 0
    assert checks["batch"]["status"] == "warning"
    assert "up to 50 requests" in checks["batch"]["summary"]


def test_a_missing_field_then_setup_fixes_it(
    pocketbase_factory: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> None:
    server = pocketbase_factory()
    capsys.readouterr()  # what its setup printed
    with server.client() as client:
        sessions = client.request("GET", "/api/collections/sessions")
        fields = [f for f in sessions["fields"] if f["name"] != "os"]
        client.request("PATCH", "/api/collections/sessions", json_body={"fields": fields})
    code, checks = doctor_json(server, capsys)
    assert code == 1
    assert checks["schema"]["status"] == "problem"
    assert "sessions: field os (text)" in checks["schema"]["summary"]
    assert checks["schema"]["fix"].startswith("skopos setup")

    argv = ["setup", "--url", server.url, "--email", server.email, "--password", server.password]
    assert skopos(argv) == 0
    capsys.readouterr()
    code, checks = doctor_json(server, capsys)
    assert (code, checks["schema"]["status"]) == (0, "ok")


def test_archived_and_unknown_sites(
    pocketbase: Any, pb: PocketBaseClient, website: Website, capsys: pytest.CaptureFixture[str]
) -> None:
    pb.update_record("websites", website.id, {"isArchived": True, "ipBlacklist": ["10.0.0.0/8"]})
    code, checks = doctor_json(pocketbase, capsys, "--site", website.tracking_id)
    assert code == 1
    site = checks["site"]
    assert site["status"] == "problem"
    assert "ARCHIVED" in site["summary"]
    assert "unarchive" in site["fix"]
    assert site["details"]["blacklist_entries"] == 1
    assert "localhost tracking on" in site["summary"]

    code, checks = doctor_json(pocketbase, capsys, "--site", "no-such-site")
    assert code == 1
    assert "no website has the tracking id 'no-such-site'" in checks["site"]["summary"]


def test_site_from_the_environment(
    pocketbase: Any,
    website: Website,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SKOPOS_SITE_ID", website.tracking_id)
    _, checks = doctor_json(pocketbase, capsys)
    assert checks["site"]["status"] == "ok"
    monkeypatch.delenv("SKOPOS_SITE_ID")
    _, checks = doctor_json(pocketbase, capsys)
    assert checks["site"]["status"] == "skipped"


def test_an_unreachable_app_url(pocketbase: Any, capsys: pytest.CaptureFixture[str]) -> None:
    app_url = f"http://127.0.0.1:{free_port()}"
    code, checks = doctor_json(pocketbase, capsys, "--app-url", app_url)
    assert code == 1
    assert checks["app script"]["status"] == "problem"
    assert f"cannot reach the app at {app_url}" in checks["app script"]["summary"]
    assert "start the app" in checks["app script"]["fix"]
    assert checks["app event"]["status"] == "skipped"


@pytest.fixture
def running_app(pocketbase: Any, website: Website, tmp_path: Path) -> Iterator[str]:
    """The FastAPI example tracking ``website`` on the shared server; its URL."""
    port = free_port()
    env = {
        **os.environ,
        "SKOPOS_POCKETBASE_URL": pocketbase.url,
        "SKOPOS_SITE_ID": website.tracking_id,
        "SKOPOS_ADMIN_EMAIL": pocketbase.email,
        "SKOPOS_ADMIN_PASSWORD": pocketbase.password,
        "PORT": str(port),
    }
    with (tmp_path / "app.log").open("wb") as log:
        app = subprocess.Popen(
            [sys.executable, str(EXAMPLE_APP)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the example app did not start"
                time.sleep(0.1)
        yield url
    finally:
        app.terminate()
        app.wait(15)


def test_a_running_app_takes_a_test_event_that_is_then_deleted(
    pocketbase: Any,
    pb: PocketBaseClient,
    website: Website,
    running_app: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, checks = doctor_json(
        pocketbase, capsys, "--site", website.tracking_id, "--app-url", running_app
    )
    assert code == 0, checks
    assert checks["app script"]["status"] == "ok"
    assert checks["app event"]["status"] == "ok", checks["app event"]
    # The probe left nothing behind: no event, session or visitor on the site.
    site = pb_filter("website = {:s}", s=website.id)
    assert pb.list_records("sessions", filter=site).items == []
    assert pb.list_records("visitors", filter=site).items == []
    events = pb_filter("session.website = {:s}", s=website.id)
    assert pb.list_records("events", filter=events).items == []


def test_an_app_whose_events_are_dropped_is_a_problem(
    pocketbase: Any,
    pb: PocketBaseClient,
    website: Website,
    running_app: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pb.update_record("websites", website.id, {"isArchived": True})  # the app's SDK drops them
    code, checks = doctor_json(
        pocketbase,
        capsys,
        "--site",
        website.tracking_id,
        "--app-url",
        running_app,
        "--timeout",
        "3",  # the event never arrives: no need to wait long for it
    )
    assert code == 1
    assert checks["app event"]["status"] == "problem"
    assert "did not reach PocketBase" in checks["app event"]["summary"]
