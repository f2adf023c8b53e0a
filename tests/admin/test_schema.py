"""The shipped schema and the merge planner (pure logic, no server)."""

from __future__ import annotations

import json
from typing import Any

from skopos._admin.schema import collection_id, load_schema, plan_schema
from tests._support.paths import DATA

DASHBOARD_EXPORT = DATA / "skopos-dashboard-schema.json"
SDK_COLLECTIONS = ["users", "websites", "visitors", "sessions", "events", "js_errors"]


def dashboard() -> dict[str, dict[str, Any]]:
    collections = json.loads(DASHBOARD_EXPORT.read_text())["collections"]
    return {c["name"]: c for c in collections}


def test_field_for_field_compatible_with_the_dashboard() -> None:
    ours = {c["name"]: c for c in load_schema()}
    theirs = dashboard()
    for name in SDK_COLLECTIONS:
        assert ours[name]["type"] == theirs[name]["type"]
        our_fields = {f["name"]: f for f in ours[name]["fields"]}
        for field in theirs[name]["fields"]:
            mine = our_fields[field["name"]]
            assert mine["type"] == field["type"], (name, field["name"])
            assert mine.get("relationTo") == field.get("relationTo"), (name, field["name"])
            assert mine.get("values") == field.get("values"), (name, field["name"])


def test_unique_indexes_the_sdk_relies_on() -> None:
    indexes = {c["name"]: " ".join(c["indexes"]) for c in load_schema()}
    assert "UNIQUE INDEX `idx_skopos_visitors_site_visitor`" in indexes["visitors"]
    assert "UNIQUE INDEX `idx_skopos_js_errors_site_hash`" in indexes["js_errors"]
    assert "UNIQUE INDEX `idx_skopos_config_key`" in indexes["skopos_config"]


def test_plan_on_an_empty_server_creates_everything_with_resolved_relations() -> None:
    users = {"id": "_pb_users_auth_", "name": "users", "type": "auth", "fields": []}
    plan = plan_schema(load_schema(), [users])
    assert plan.created == [
        "websites",
        "visitors",
        "sessions",
        "events",
        "js_errors",
        "skopos_config",
    ]
    created = {c["name"]: c for c in plan.collections}
    sessions = {f["name"]: f for f in created["sessions"]["fields"]}
    assert sessions["visitor"]["collectionId"] == collection_id("visitors")
    assert "relationTo" not in sessions["visitor"]
    websites = {f["name"]: f for f in created["websites"]["fields"]}
    assert websites["user"]["collectionId"] == "_pb_users_auth_"
    assert not plan.conflicts


def test_plan_only_adds_to_existing_collections() -> None:
    websites = {
        "id": "abc123",
        "name": "websites",
        "type": "base",
        "listRule": "user = @request.auth.id",
        "fields": [
            {"id": "f1", "name": "domain", "type": "text"},
            {"id": "f2", "name": "myNotes", "type": "text"},
        ],
        "indexes": ["CREATE INDEX `idx_mine` ON `websites` (`domain`)"],
    }
    plan = plan_schema(load_schema(), [websites])
    merged = next(c for c in plan.collections if c["name"] == "websites")
    names = [f["name"] for f in merged["fields"]]
    assert names[:2] == ["domain", "myNotes"]
    assert {"trackingId", "storeRawIp", "ipBlacklist"} <= set(names)
    assert merged["id"] == "abc123"
    assert merged["listRule"] == "user = @request.auth.id"
    assert merged["indexes"][0] == "CREATE INDEX `idx_mine` ON `websites` (`domain`)"
    visitors = next(c for c in plan.collections if c["name"] == "visitors")
    website_field = next(f for f in visitors["fields"] if f["name"] == "website")
    assert website_field["collectionId"] == "abc123"


def test_plan_adds_the_session_fields_of_the_0_54_schema_to_an_older_dashboard() -> None:
    # What the official client script reports (/collect): a dashboard set up before 0.54
    # lacks these fields; skopos setup adds them, so the SDK can fill them.
    applied = plan_schema(load_schema(), []).collections
    sessions = next(c for c in applied if c["name"] == "sessions")
    reported = {"devicePixelRatio", "connectionType", "scriptVersion", "state"}
    sessions["fields"] = [f for f in sessions["fields"] if f["name"] not in reported]
    plan = plan_schema(load_schema(), applied)
    merged = next(c for c in plan.collections if c["name"] == "sessions")
    assert {(f["name"], f["type"]) for f in merged["fields"]} >= {(n, "text") for n in reported}
    assert not plan.conflicts


def test_plan_of_an_up_to_date_server_is_empty() -> None:
    first = plan_schema(load_schema(), [])
    again = plan_schema(load_schema(), first.collections)
    assert not again.changes
    assert not again.conflicts


def test_equivalent_index_under_another_name_is_not_added_twice() -> None:
    applied = plan_schema(load_schema(), []).collections
    visitors = next(c for c in applied if c["name"] == "visitors")
    visitors["indexes"] = [
        "CREATE UNIQUE INDEX other_name ON visitors (visitorId, website)"
        if "idx_skopos_visitors_site_visitor" in sql
        else sql
        for sql in visitors["indexes"]
    ]
    assert not plan_schema(load_schema(), applied).changes


def test_type_conflicts_are_reported_not_fixed() -> None:
    events = {
        "id": "e1",
        "name": "events",
        "type": "base",
        "fields": [{"id": "x", "name": "eventData", "type": "text"}],
        "indexes": [],
    }
    plan = plan_schema(load_schema(), [events])
    assert plan.conflicts == ["events.eventData is a text field; Skopos writes it as json"]
