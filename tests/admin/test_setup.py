"""``skopos setup`` against real PocketBase servers."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from skopos._admin.cli import main as skopos
from skopos._admin.embedded import free_port
from skopos._admin.schema import plan_schema
from skopos._pocketbase.client import PocketBaseClient
from tests._support.paths import DATA
from tests._support.pocketbase_server import PocketBaseServer

pytestmark = pytest.mark.pocketbase

DASHBOARD_EXPORT = DATA / "skopos-dashboard-schema.json"


def collections(client: PocketBaseClient) -> dict[str, dict[str, Any]]:
    data = client.request("GET", "/api/collections", params={"perPage": 500})
    return {c["name"]: c for c in data["items"]}


def setup_args(server: PocketBaseServer, *extra: str) -> list[str]:
    return [
        "setup",
        "--url",
        server.url,
        "--email",
        server.email,
        "--password",
        server.password,
        *extra,
    ]


def install_dashboard(client: PocketBaseClient) -> None:
    """What a server looks like after the Skopos Dashboard installed its own schema."""
    dashboard = json.loads(DASHBOARD_EXPORT.read_text())["collections"]
    plan = plan_schema(dashboard, list(collections(client).values()))
    client.request(
        "PUT",
        "/api/collections/import",
        json_body={"collections": plan.collections, "deleteMissing": False},
    )


def test_running_setup_twice_leaves_the_same_schema(
    pocketbase_factory: Callable[..., PocketBaseServer], capsys: pytest.CaptureFixture[str]
) -> None:
    server = pocketbase_factory(setup=False)
    assert skopos(setup_args(server)) == 0
    assert "created collection visitors" in capsys.readouterr().out
    with server.client() as client:
        before = collections(client)
        settings_before = client.request("GET", "/api/settings")["batch"]
    assert skopos(setup_args(server)) == 0
    assert capsys.readouterr().out.strip() == "schema and settings already up to date"
    with server.client() as client:
        assert collections(client) == before
        assert client.request("GET", "/api/settings")["batch"] == settings_before
    assert settings_before["enabled"] is True
    assert settings_before["maxRequests"] >= 1000


def test_setup_on_a_dashboard_server_only_adds(
    pocketbase_factory: Callable[..., PocketBaseServer], capsys: pytest.CaptureFixture[str]
) -> None:
    server = pocketbase_factory(setup=False)
    with server.client() as client:
        install_dashboard(client)
        websites = collections(client)["websites"]
        websites["fields"].append({"name": "notes", "type": "text"})
        websites["listRule"] = "user = @request.auth.id"
        client.request("PATCH", f"/api/collections/{websites['id']}", json_body=websites)
        site = client.create_record(
            "websites", {"name": "Mine", "domain": "mine.example", "notes": "keep me"}
        )
        client.create_record("uptime_checks", {"website": site["id"], "isUp": True})
        dashboard_before = collections(client)

    assert skopos(setup_args(server, "--site-name", "Mine", "--domain", "mine.example")) == 0
    output = capsys.readouterr().out
    assert "websites: added field storeRawIp (bool)" in output
    assert "visitors: added index idx_skopos_visitors_site_visitor" in output
    assert "created collection skopos_config" in output
    assert f"tracking id: {site['trackingId']}" in output  # the existing site is reused

    with server.client() as client:
        after = collections(client)
        for name, before in dashboard_before.items():
            assert name in after
            kept = {(f["name"], f["type"]) for f in after[name]["fields"]}
            assert {(f["name"], f["type"]) for f in before["fields"]} <= kept, name
            assert set(before["indexes"]) <= set(after[name]["indexes"]), name
            assert after[name]["listRule"] == before["listRule"], name
        assert client.get_record("websites", site["id"])["notes"] == "keep me"
        assert len(client.list_records("uptime_checks").items) == 1
        assert "storeRawIp" in {f["name"] for f in after["websites"]["fields"]}
        assert len(client.list_records("websites").items) == 1

    assert skopos(setup_args(server)) == 0
    assert "already up to date" in capsys.readouterr().out


def test_a_conflicting_schema_stops_setup_and_changes_nothing(
    pocketbase_factory: Callable[..., PocketBaseServer], capsys: pytest.CaptureFixture[str]
) -> None:
    server = pocketbase_factory(setup=False)
    with server.client() as client:
        client.request(
            "POST",
            "/api/collections",
            json_body={
                "name": "events",
                "type": "base",
                "fields": [{"name": "eventData", "type": "text"}],
            },
        )
        before = collections(client)
    assert skopos(setup_args(server)) == 1
    assert "events.eventData is a text field; Skopos writes it as json" in capsys.readouterr().err
    with server.client() as client:
        assert collections(client) == before


def test_setup_creates_a_website_once_from_env(
    pocketbase: PocketBaseServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SKOPOS_POCKETBASE_URL", pocketbase.url)
    monkeypatch.setenv("SKOPOS_ADMIN_EMAIL", pocketbase.email)
    monkeypatch.setenv("SKOPOS_ADMIN_PASSWORD", pocketbase.password)
    assert skopos(["setup", "--site-name", "Env site", "--domain", "Env.Example.test"]) == 0
    first = capsys.readouterr().out
    assert "website 'Env site' (env.example.test) created; tracking id: " in first
    tracking_id = first.rsplit("tracking id: ", 1)[1].strip()
    assert skopos(["setup", "--site-name", "Env site", "--domain", "env.example.test"]) == 0
    assert f"exists; tracking id: {tracking_id}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--password", "wrong-password"], "refused the superuser credentials"),
        (["--url", "http://127.0.0.1:{free}"], "cannot reach PocketBase"),
        (["--url", "ftp://example.com"], "must be an http(s) URL"),
        (["--site-name", "no domain"], "--site-name needs --domain"),
    ],
)
def test_setup_errors_are_clear(
    pocketbase: PocketBaseServer,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    argv = [arg.replace("{free}", str(free_port())) for arg in argv]
    assert skopos([*setup_args(pocketbase), *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("skopos setup: error: ")
    assert message in err


def test_missing_options_name_their_env_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SKOPOS_POCKETBASE_URL", raising=False)
    assert skopos(["setup"]) == 1
    assert "--url is required (pass it or set SKOPOS_POCKETBASE_URL)" in capsys.readouterr().err
